"""Where routelib reads data and keeps its cache, and the project-wide seed.

Everything that touches the file system asks this module, so one environment variable moves it:

- ``ROUTELIB_DATA_DIR``: a directory of ``<dataset>/<split>.jsonl`` files in the schema of
  :mod:`routelib.data` (the Makefile and CI point it at ``../shared/datasets``).
- ``ROUTELIB_DATA_PATH``: more data roots, colon-separated, searched after ``ROUTELIB_DATA_DIR``
  (the CLI's repeatable ``--data-dir`` prepends to it); each holds dataset folders
  ``<name>/dataset.yaml`` + ``<split>.jsonl`` (``docs/datasets.md``). First root wins.
- ``ROUTELIB_CACHE_DIR``: where result tables go. Default: the repository's ``data_cache/``
  when routelib runs from a checkout, else ``./data_cache``.
- ``ROUTELIB_MODEL_DIR``: where assembled GGUF files and dequantized safetensors go (large, not
  committed). Default: ``data_cache/models`` of the checkout, else ``<cache>/models``; it does
  not follow ``ROUTELIB_CACHE_DIR``, so a scratch result cache reuses the model cache.
"""
from __future__ import annotations

import os
from pathlib import Path

from routelib.errors import RoutelibError

SEED = 50  # the paper's seed, used wherever randomness enters
LIMIT = 200  # evaluation items per dataset: the committed reference run and every default
JUDGE_LIMIT = 100  # items per free-form dataset the committed LLM-judge comparison grades

_REPO_ROOT = Path(__file__).resolve().parents[1]


class ConfigError(RoutelibError, RuntimeError):
    """A required setting (directory, environment variable) is missing or wrong."""


NO_DATA_DIR = (
    "ROUTELIB_DATA_DIR is not set: point it at a directory of <dataset>/<split>.jsonl "
    "files (e.g. export ROUTELIB_DATA_DIR=../shared/datasets), add data roots with "
    "ROUTELIB_DATA_PATH or --data-dir, or load from the Hugging Face hub with source='hub'."
)


def data_dir() -> Path:
    """The local dataset directory, from ``ROUTELIB_DATA_DIR``."""
    value = os.environ.get("ROUTELIB_DATA_DIR")
    if not value:
        raise ConfigError(NO_DATA_DIR)
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(f"ROUTELIB_DATA_DIR={value!r} is not a directory")
    return path


def data_roots() -> list[Path]:
    """The data roots in search order: ``ROUTELIB_DATA_DIR`` (when set), then each entry of
    ``ROUTELIB_DATA_PATH`` (``os.pathsep``-separated: ``:`` on POSIX; empty entries skipped).
    Empty when neither is set; an entry that is not a directory raises :class:`ConfigError`."""
    roots = [data_dir()] if os.environ.get("ROUTELIB_DATA_DIR") else []
    for entry in os.environ.get("ROUTELIB_DATA_PATH", "").split(os.pathsep):
        if not entry:
            continue
        path = Path(entry).expanduser()
        if not path.is_dir():
            raise ConfigError(f"data root {entry!r} (ROUTELIB_DATA_PATH or --data-dir) is not a "
                              "directory")
        roots.append(path)
    return list(dict.fromkeys(roots))


def cache_dir() -> Path:
    """Root of routelib's on-disk cache (created on first use)."""
    value = os.environ.get("ROUTELIB_CACHE_DIR")
    if value:
        path = Path(value).expanduser()
    elif (_REPO_ROOT / "data_cache").is_dir():
        path = _REPO_ROOT / "data_cache"
    else:
        path = Path.cwd() / "data_cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_dir() -> Path:
    """Root of the (large, git-ignored) model cache."""
    value = os.environ.get("ROUTELIB_MODEL_DIR")
    if value:
        path = Path(value).expanduser()
    elif (_REPO_ROOT / "data_cache").is_dir():
        path = _REPO_ROOT / "data_cache" / "models"
    else:
        path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---- defaults of the command line (and of whatever else wants the same ones) ----------------
REFERENCE_SLMS = ("smollm2-135m", "gemma3-270m")  # the SLMs of the committed reference run
REFERENCE_LLM = "qwen2.5-coder-0.5b"  # its LLM tier (a stand-in) and its judge
TRAIN_LIMIT = 1000  # train-split items per dataset the probes learn from (issue 16; all the
# split has where it is smaller; see docs/uq.md)
BATCH_SIZE = 16  # sequences per forward pass of a local model
CHUNK_SIZE = 16  # items per saved cache part (an interruption loses at most one)
N_BOOT = 1000  # bootstrap resamples of the AUROC intervals
ROUTE_RATIO = 0.3  # the routing ratio `route` takes its threshold from by default
CALIBRATION_BINS = 30  # M of Algorithm 1: equal-width confidence bins of a calibration set
CALIBRATION_FRACTION = 0.10  # the share of each bin drawn into the calibration set
# an OpenAI-compatible endpoint (the LLM tier of `route`, the judge of `judge`)
ENDPOINT_MODEL = "gpt-4o-mini"  # the model name sent to the endpoint
ENDPOINT_KEY_ENV = "OPENAI_API_KEY"  # the environment variable holding the key
ENDPOINT_TIMEOUT_S = 30.0  # per HTTP request
ENDPOINT_RETRIES = 2  # on 408/409/429/5xx, timeouts and connection errors
ENDPOINT_CONCURRENCY = 4  # requests in flight at most
