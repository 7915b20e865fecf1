"""Weight files and their identities: streamed sha256, a digest cache, directory content hashes,
embedded GGUF files (located inside PyPI packages without running their code, assembled from
chunks, verified) and the few GGUF header fields routelib reads.

Digests of files outside the package data (a user's GGUF file, a local directory's
``*.safetensors``) are cached in ``<model dir>/digests.json`` keyed by the file's absolute path,
size and modification time (ns), so resolving the same model again does not re-read gigabytes;
any change to a file's size or mtime recomputes its digest.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

from routelib import config
from routelib.models.spec import ModelError, ModelSpec

DIGESTS_NAME = "digests.json"
WEIGHT_GLOB = "*.safetensors"
_memo: dict[tuple, str] = {}


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _digest_store() -> Path:
    return config.model_dir() / DIGESTS_NAME


def _read_store(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # absent or damaged: digests are recomputed, never trusted from a bad file


def cached_sha256(path: Path) -> str:
    """sha256 of ``path``, reused while its absolute path, size and mtime are unchanged."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _memo:
        return _memo[key]
    store_path = _digest_store()
    entry = _read_store(store_path).get(key[0])
    if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        digest = entry["sha256"]
    else:
        digest = sha256_file(path)
        store = _read_store(store_path)  # re-read: another process may have added entries
        store[key[0]] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        tmp = store_path.with_name(f".{DIGESTS_NAME}.{os.getpid()}.partial")
        try:
            tmp.write_text(json.dumps(store, indent=0, sort_keys=True))
            tmp.replace(store_path)
        except OSError:
            pass  # a read-only model dir: the digest is still memoized in this process
    _memo[key] = digest
    return digest


def weight_files(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).glob(WEIGHT_GLOB) if p.is_file())


def dir_sha256(directory: Path) -> str:
    """Content hash of a directory's weights: sha256 over the sorted ``*.safetensors`` file
    names, each followed by that file's own (cached) sha256."""
    files = weight_files(directory)
    if not files:
        raise ModelError(f"{directory}: no *.safetensors weight files")
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}\x00{cached_sha256(p)}\n".encode())
    return h.hexdigest()


def package_file(package: str, relpath: str) -> Path:
    found = importlib.util.find_spec(package)  # locates the package without running its code
    if found is None or not found.origin:
        raise ModelError(f"package {package!r} is not installed (pip install the model's "
                         f"packages: `make setup` does this)")
    path = Path(found.origin).parent / relpath
    if not path.is_file():
        raise ModelError(f"{path} is missing from package {package!r}")
    return path


def cache_root(spec: ModelSpec) -> Path:
    """``<model dir>/<name>-<sha12>/``: the assembled GGUF (if chunked) and its safetensors."""
    return config.model_dir() / f"{spec.name}-{spec.sha256[:12]}"


def gguf_file(spec: ModelSpec) -> Path:
    """The verified GGUF file of a GGUF spec: the user's file at ``spec.path``, else the
    embedded one (assembled into the model cache if chunked)."""
    if spec.kind != "gguf":
        raise ModelError(f"model {spec.name!r} ({spec.display}) has no GGUF file")
    if spec.path:
        path = Path(spec.path)
        digest = cached_sha256(path)
    else:
        path = _assemble(spec)
        digest = sha256_file(path)
    if digest != spec.sha256:
        fix = f"reinstall {' '.join(spec.packages)} or delete the file" if spec.packages \
            else "the file changed since it was resolved; resolve it again"
        raise ModelError(f"{path}: sha256 {digest} does not match the expected {spec.sha256}; "
                         f"{fix}")
    if spec.gguf_general_name:
        got = gguf_fields(path, "general.name")["general.name"]
        if got != spec.gguf_general_name:
            raise ModelError(f"{path}: GGUF general.name is {got!r}, expected "
                             f"{spec.gguf_general_name!r}")
    return path


def _assemble(spec: ModelSpec) -> Path:
    parts = [package_file(pkg, rel) for pkg, rel in spec.chunks]
    if len(parts) == 1:
        return parts[0]
    path = cache_root(spec) / spec.gguf_name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
        with open(tmp, "wb") as out:
            for p in parts:
                with open(p, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
        tmp.replace(path)
    return path


def gguf_fields(path: Path, *keys: str) -> dict[str, str | None]:
    """String fields of a GGUF header (e.g. ``general.name``), None where absent."""
    try:
        from gguf import GGUFReader
        fields = GGUFReader(path).fields
    except (ValueError, OSError, IndexError, KeyError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise ModelError(f"{path}: not a readable GGUF file ({type(exc).__name__}: {first})") \
            from None
    out: dict[str, str | None] = {}
    for key in keys:
        field = fields.get(key)
        out[key] = bytes(field.parts[field.data[0]]).decode() if field is not None else None
    return out
