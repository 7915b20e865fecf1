"""Models: the registry of known models and their weights (:mod:`.registry`), the backends that run
them (:mod:`.backend` for transformers, :mod:`.openai_backend` for endpoints, :mod:`.fake` for
tests) and the one place that makes a backend (:mod:`.factory`). The names below are the
registry's API."""
from routelib.models.registry import (EMBEDDED, MODELS, ModelError, ModelSpec, device, get_spec,
                                      gguf_path, load, local_dir, model_id, sha256_file)
