"""Hugging Face hub models: the commit a revision resolves to, and a snapshot of that commit.

Results of a hub model are keyed by the commit sha its revision resolves to, never by a branch
name such as ``main`` (which moves). :func:`commit_sha` asks the hub
(``huggingface_hub.HfApi().model_info(repo_id, revision=...).sha``); offline it falls back to
the ref the local Hugging Face cache recorded for that revision
(``<HF_HUB_CACHE>/models--<org>--<name>/refs/<revision>``); a revision that already is a
40-hex-digit commit sha is used as given, without any lookup. Lookups are memoized per process.
"""
from __future__ import annotations

import re
from pathlib import Path

from routelib.models.spec import ModelError

SHA_RE = re.compile(r"[0-9a-f]{40}")
_memo: dict[tuple[str, str], str] = {}


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _cached_ref(repo_id: str, revision: str) -> str | None:
    """The commit the local Hugging Face cache holds for ``revision``, if any."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    ref = (Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs"
           / revision)
    try:
        sha = ref.read_text().strip()
    except OSError:
        return None
    return sha if SHA_RE.fullmatch(sha) else None


def commit_sha(repo_id: str, revision: str | None = None) -> str:
    """The commit sha ``revision`` (default ``main``) of hub model ``repo_id`` resolves to."""
    rev = revision or "main"
    if SHA_RE.fullmatch(rev):
        return rev
    if (repo_id, rev) in _memo:
        return _memo[(repo_id, rev)]
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ModelError(f"hub model {repo_id}@{rev}: huggingface_hub is not installed "
                         f"(pip install huggingface_hub)") from None
    try:
        sha = HfApi().model_info(repo_id, revision=rev).sha
    except Exception as exc:  # offline, unknown repo or revision, gated, HTTP error: all alike
        sha = _cached_ref(repo_id, rev)
        if sha is None:
            raise ModelError(
                f"hub model {repo_id}@{rev}: could not resolve the revision to a commit "
                f"({_first_line(exc)}); check the id, the network and HF_TOKEN, or pass a local "
                f"directory or .gguf file instead") from None
    if not isinstance(sha, str) or not SHA_RE.fullmatch(sha):
        raise ModelError(f"hub model {repo_id}@{rev}: the hub answered commit {sha!r}, not a "
                         f"40-digit sha")
    _memo[(repo_id, rev)] = sha
    return sha


def snapshot(repo_id: str, sha: str) -> Path:
    """A local directory holding commit ``sha`` of ``repo_id`` (downloaded if needed)."""
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(repo_id, revision=sha))
    except Exception as exc:
        raise ModelError(f"hub model {repo_id}@{sha[:12]}: could not download it "
                         f"({_first_line(exc)})") from None
