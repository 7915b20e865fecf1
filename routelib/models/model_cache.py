"""The dequantized model cache: a GGUF model's weights, config and tokenizer as a transformers
directory ``<model dir>/<name>-<sha12>/safetensors/``, built once (transformers dequantizes GGUF
in 30-95 s here) and verified at every load.

``routelib_meta.json`` records the GGUF's sha256 and the sha256 of **every** file of the folder
(weights, ``config.json``, ``generation_config.json``, the tokenizer files, the chat template),
and a checksum of its own content. At load every recorded file is hashed again; a missing,
truncated or altered file, or a damaged ``routelib_meta.json`` (not JSON, or not matching its
checksum), is logged as a warning naming the file and the folder is **rebuilt automatically**
from the (sha256-verified) GGUF: the cache holds derived data only. If the rebuilt folder still
does not verify, a :class:`~routelib.models.spec.ModelError` names it and says to delete it.

A folder built before file hashes were recorded (a ``routelib_meta.json`` without ``files``)
is checked as far as it can be (weights hash, every JSON file parses) and then has its file
hashes recorded, keeping the keys older routelib versions read.

Builds hold an exclusive lock (``fcntl.flock`` on ``<name>-<sha12>/.build.lock``) and write to
a per-process temporary folder that replaces the old one, so two processes never build into the
same folder and a reader never sees a half-written one.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from routelib.models import weights
from routelib.models.spec import ModelError, ModelSpec

log = logging.getLogger(__name__)

META_NAME = "routelib_meta.json"
WEIGHTS_NAME = "model.safetensors"


def local_dir(spec: ModelSpec) -> Path:
    """The verified transformers directory of a GGUF spec, built (or rebuilt) when needed."""
    cache = weights.cache_root(spec) / "safetensors"
    if check(cache, spec) is None:
        return cache
    with _build_lock(cache.parent):
        problem = check(cache, spec)  # another process may have built it meanwhile
        if problem is None:
            return cache
        if cache.exists():
            log.warning("%s; rebuilding %s from its GGUF", problem, cache)
        build(spec, cache)
    problem = check(cache, spec)
    if problem is not None:
        raise ModelError(f"{problem} right after rebuilding it; delete {cache.parent} and retry")
    return cache


def _checksum(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: weights.sha256_file(p) for p in sorted(folder.iterdir())
            if p.is_file() and p.name != META_NAME and not p.name.startswith(".")}


def _read_meta(cache: Path) -> tuple[dict | None, str | None]:
    """(meta, problem): meta None with a problem when it is absent or damaged."""
    path = cache / META_NAME
    if not path.is_file():
        return None, f"{path} is missing"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None, f"{path} is damaged (not valid JSON)"
    if not isinstance(meta, dict):
        return None, f"{path} is damaged (not a JSON object)"
    if "checksum" in meta and meta["checksum"] != _checksum(meta):
        return None, f"{path} is damaged (its checksum does not match its content)"
    return meta, None


def check(cache: Path, spec: ModelSpec) -> str | None:
    """None when the folder verifies, else what is wrong with it (naming the file)."""
    meta, problem = _read_meta(cache)
    if problem:
        return problem
    if meta.get("gguf_sha256") != spec.sha256:
        return f"{cache / META_NAME} was built from another GGUF"
    weights_path = cache / WEIGHTS_NAME
    if not weights_path.is_file():
        return f"{weights_path} is missing"
    if "files" not in meta:
        return _upgrade(cache, meta)
    for name, digest in meta["files"].items():
        path = cache / name
        if not path.is_file():
            return f"{path} is missing"
        if weights.sha256_file(path) != digest:
            return f"{path} is truncated or altered (sha256 does not match {META_NAME})"
    if meta["files"].get(WEIGHTS_NAME) != meta.get("safetensors_sha256"):
        return f"{cache / META_NAME} is damaged (two different weight hashes)"
    return None


def _upgrade(cache: Path, meta: dict) -> str | None:
    """A folder from before file hashes: check what can be checked, then record the hashes."""
    if weights.sha256_file(cache / WEIGHTS_NAME) != meta.get("safetensors_sha256"):
        return f"{cache / WEIGHTS_NAME} is truncated or altered (sha256 does not match {META_NAME})"
    for path in sorted(cache.glob("*.json")):
        if path.name == META_NAME:
            continue
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            return f"{path} is damaged (not valid JSON)"
    _write_meta(cache, {**meta, "files": _file_hashes(cache)})
    return None


def _write_meta(folder: Path, meta: dict) -> None:
    meta = {k: v for k, v in meta.items() if k != "checksum"}
    meta["checksum"] = _checksum(meta)
    tmp = folder / f".{META_NAME}.{os.getpid()}.partial"
    try:
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(folder / META_NAME)
    except OSError as exc:  # a read-only cache still verified; it just is not upgraded
        log.warning("could not record file hashes in %s: %s", folder / META_NAME, exc)


@contextmanager
def _build_lock(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(folder / ".build.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def dequantize(spec: ModelSpec):
    """``(model, tokenizer)`` of a GGUF spec, dequantized to float32 by transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path = weights.gguf_file(spec)
    log.info("dequantizing %s from GGUF (30-95 s, once)", spec.name)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                 dtype=torch.float32)
    return model, tok


def build(spec: ModelSpec, cache: Path) -> None:
    """Dequantize the GGUF once and save weights, config and tokenizer as safetensors, with
    the hash of every file in ``routelib_meta.json``."""
    from safetensors.torch import save_model
    t0 = time.perf_counter()
    model, tok = dequantize(spec)
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
    model.config.save_pretrained(tmp)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    files = _file_hashes(tmp)
    _write_meta(tmp, {"gguf_sha256": spec.sha256, "safetensors_sha256": files[WEIGHTS_NAME],
                      "built_s": round(time.perf_counter() - t0, 1), "files": files})
    shutil.rmtree(cache, ignore_errors=True)
    tmp.replace(cache)
