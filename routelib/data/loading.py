"""Reading a dataset split: local JSONL files or the Hugging Face hub, the eval/train carve-out
and the deterministic subsample (the rules are in :mod:`routelib.data.schema`'s docstring)."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Iterable

from routelib import config
from routelib.data.schema import DATASETS, DataError, Record, _resolve, in_holdout, read_jsonl, spec


def _load_physical(name: str, split: str, source: str, data_dir: Path | None) -> list[Record]:
    if source == "local":
        root = Path(data_dir) if data_dir is not None else config.data_dir()
        path = root / name / f"{split}.jsonl"
        if not path.is_file():
            raise DataError(f"{path} does not exist (dataset {name!r}, split {split!r}); "
                            f"check ROUTELIB_DATA_DIR")
        return read_jsonl(path)
    if source == "hub":
        from routelib.data import hub  # imported lazily: it needs the `datasets` package
        return hub.load_hub(name, split)
    raise DataError(f"source {source!r} is not known; known: local, hub")


def subsample(records: list[Record], limit: int | None, seed: int = config.SEED) -> list[Record]:
    """The first ``limit`` items of a fixed permutation, in their original order."""
    if limit is None or limit >= len(records):
        return list(records)
    if limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    return [records[i] for i in sorted(order[:limit])]


def load(name: str, split: str = "eval", limit: int | None = None, seed: int = config.SEED,
         source: str = "local", data_dir: str | Path | None = None) -> list[Record]:
    """Records of one dataset split.

    ``split`` is ``"eval"``, ``"train"`` or a physical split name; ``limit`` subsamples
    deterministically (see the module docstring); ``source`` is ``"local"`` (the JSONL directory
    of ``ROUTELIB_DATA_DIR`` or ``data_dir``) or ``"hub"`` (Hugging Face ``datasets``).
    """
    physical, part = _resolve(name, split)
    records = _load_physical(name, physical, source, Path(data_dir) if data_dir else None)
    if part == "train":
        records = [r for r in records if in_holdout(r)]
    elif part == "eval":
        records = [r for r in records if not in_holdout(r)]
    return subsample(records, limit, seed)


def iter_datasets(names: Iterable[str] | None = None) -> list[str]:
    """Validate dataset names (all 14 when ``names`` is None or ``"all"``)."""
    if names is None:
        return list(DATASETS)
    out = [names] if isinstance(names, str) else list(names)
    if out == ["all"]:
        return list(DATASETS)
    for n in out:
        spec(n)
    return out
