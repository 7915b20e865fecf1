"""A model directory vLLM can load, made from routelib's model cache.

routelib's dequantized GGUF cache (:mod:`routelib.models.weights`) loads in transformers but not
as is in vLLM: the tied embedding is stored only as ``lm_head.weight`` (vLLM then leaves
``embed_tokens`` unloaded) and ``config.json`` keeps the GGUF ``quantization_config``.
:func:`prepare_model_dir` makes a directory of links to the cached files with both fixed;
transformers' logits are unchanged by either. Needs safetensors, not vLLM.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from routelib import config

PREPARED_MARKER = "routelib_vllm.json"


def _safetensors_keys(path: Path) -> set[str]:
    from safetensors import safe_open
    keys: set[str] = set()
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), "pt") as fh:
            keys.update(fh.keys())
    return keys


def _source_fingerprint(src: Path) -> str:
    meta = src / "routelib_meta.json"
    if meta.is_file():  # routelib's dequantized cache records the weights' hash
        return "sha256:" + str(json.loads(meta.read_text()).get("safetensors_sha256"))
    h = hashlib.sha256()
    for f in sorted(src.glob("*.safetensors")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return "stat:" + h.hexdigest()[:16]


def _tied_embedding(src: Path):
    from safetensors import safe_open
    for f in sorted(src.glob("*.safetensors")):
        with safe_open(str(f), "pt") as fh:
            if "lm_head.weight" in fh.keys():
                return fh.get_tensor("lm_head.weight")
    raise FileNotFoundError(f"no lm_head.weight in {src}")


def prepare_model_dir(src: Path, dest: Path) -> Path:
    """A directory vLLM loads the model of ``src`` from: ``src`` itself when it needs nothing,
    else ``dest`` with links to ``src``'s files and two fixes for routelib's dequantized GGUF
    cache: the tied embedding, stored only as ``lm_head.weight``, is saved again as
    ``model.embed_tokens.weight``, and the GGUF ``quantization_config`` is dropped from
    ``config.json``. Rebuilt when ``src``'s weights change; built in ``dest.partial`` and
    renamed, so an interrupted build leaves nothing half-made under ``dest``."""
    src, dest = Path(src), Path(dest)
    cfg = json.loads((src / "config.json").read_text())
    quant = (cfg.get("quantization_config") or {}).get("quant_method") == "gguf"
    keys = _safetensors_keys(src)
    embed_missing = ("lm_head.weight" in keys and not any(k.endswith("embed_tokens.weight")
                                                          for k in keys))
    if not quant and not embed_missing:
        return src
    marker = dest / PREPARED_MARKER
    want = {"source": str(src.resolve()), "fingerprint": _source_fingerprint(src), "version": 1}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in src.iterdir():
        if f.name not in ("config.json", "routelib_meta.json"):
            (tmp / f.name).symlink_to(f.resolve())
    cfg.pop("quantization_config", None)
    (tmp / "config.json").write_text(json.dumps(cfg, indent=1))
    if embed_missing:
        from safetensors.torch import save_file
        save_file({"model.embed_tokens.weight": _tied_embedding(src).contiguous()},
                  str(tmp / "embed_tokens.safetensors"), metadata={"format": "pt"})
    (tmp / PREPARED_MARKER).write_text(json.dumps(want, indent=1))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    return dest


def prepared_root() -> Path:
    """Where vLLM-ready copies of embedded models go: ``ROUTELIB_VLLM_MODEL_DIR``, else
    ``<model cache>/vllm``."""
    value = os.environ.get("ROUTELIB_VLLM_MODEL_DIR")
    return Path(value).expanduser() if value else config.model_dir() / "vllm"
