"""Models: the registry of known models, the one resolver of model references (a registered name,
a Hugging Face id, a local directory or a ``.gguf`` file) and their weights
(:mod:`.registry`, :mod:`.spec`, :mod:`.weights`, :mod:`.model_cache`, :mod:`.hub`), the backends
that run them (:mod:`.backend` for the protocol and batching, :mod:`.transformers_backend`,
:mod:`.openai_backend` for endpoints, :mod:`.fake` for tests) and the one place that makes a
backend (:mod:`.factory`). The names below are the registry's API."""
from routelib.models.registry import (DEFAULT_LLM, EMBEDDED, MODELS, answer_styles, device,
                                      get_spec, gguf_path, load, local_dir, model_id, resolve,
                                      save_answer_styles, sha256_file)
from routelib.models.spec import ModelError, ModelSpec
