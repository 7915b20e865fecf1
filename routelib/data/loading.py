"""Reading a dataset split: local JSONL files or the Hugging Face hub, the eval/train carve-out
and the deterministic subsample (the rules are in :mod:`routelib.data.schema`'s docstring; where
a dataset's files are, in :mod:`routelib.data.registry`'s)."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Iterable

from routelib import config
from routelib.data.registry import DataDir, registry, roots, spec
from routelib.data.schema import HOLDOUT_FRACTION, DatasetSpec, DataError, Record, in_holdout, \
    read_jsonl, resolve_split


def local_path(s: DatasetSpec, split: str, data_dir: DataDir = None) -> Path:
    """The ``<split>.jsonl`` file of dataset ``s``; a missing one raises naming what to fix."""
    if s.folder is None:
        searched = roots(data_dir)
        if not searched:
            raise config.ConfigError(config.NO_DATA_DIR)
        path = searched[0] / s.name / f"{split}.jsonl"
    else:
        path = s.folder / f"{split}.jsonl"
    if path.is_file():
        return path
    key = "eval_split" if split == s.eval_split else "train_split"
    if s.lines.get(key) and not s.paper:  # a dataset folder's dataset.yaml names the split
        raise DataError(f"{s.where(key)}: {key} {split!r} of dataset {s.name!r}: {path} does "
                        f"not exist")
    also = ""
    if s.folder is None and len(searched) > 1:
        also = f"; searched the roots {', '.join(map(str, searched))}"
    raise DataError(f"{path} does not exist (dataset {s.name!r}, split {split!r}); check "
                    f"ROUTELIB_DATA_DIR, ROUTELIB_DATA_PATH or --data-dir{also}")


def _load_physical(s: DatasetSpec, split: str, source: str, data_dir: DataDir
                   ) -> tuple[list[Record], str]:
    if source == "local":
        path = local_path(s, split, data_dir)
        return read_jsonl(path, s), str(path)
    if source == "hub":
        from routelib.data import hub  # imported lazily: it needs the `datasets` package
        return hub.load_hub(s.name, split, spec=s), f"hub {s.hub.id if s.hub else s.name}"
    raise DataError(f"source {source!r} is not known; known: local, hub")


def _carve(records: list[Record], part: str, s: DatasetSpec, where: str) -> list[Record]:
    """The carved ``part`` of an eval-only dataset's records (in file order); an empty part
    raises rather than yield a NaN accuracy later."""
    out = [r for r in records if in_holdout(r, s=s) == (part == "train")]
    if not out:
        raise DataError(f"{where}: none of its {len(records)} records falls in the carved "
                        f"{part!r} part ({HOLDOUT_FRACTION:.0%} of the ids go to 'train', by a "
                        f"hash of the id); add records, or name a train_split in dataset.yaml")
    return out


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
         source: str = "local", data_dir: DataDir = None) -> list[Record]:
    """Records of one dataset split.

    ``split`` is ``"eval"``, ``"train"`` or a physical split name; ``limit`` subsamples
    deterministically (see the module docstring); ``source`` is ``"local"`` (the dataset's
    folder under the data roots, :mod:`routelib.data.registry`) or ``"hub"`` (Hugging Face
    ``datasets``, through the spec's ``hub:`` block). ``data_dir`` (one root or several)
    replaces the roots of ``ROUTELIB_DATA_DIR`` / ``ROUTELIB_DATA_PATH``.
    """
    s = spec(name, data_dir)
    physical, part = resolve_split(s, split)
    records, where = _load_physical(s, physical, source, data_dir)
    if part is not None:
        records = _carve(records, part, s, where)
    return subsample(records, limit, seed)


def iter_datasets(names: Iterable[str] | str | None = None, data_dir: DataDir = None
                  ) -> list[str]:
    """Validate dataset names; None or ``"all"``: every registered dataset (the paper's 14, then
    the dataset folders of the data roots; :func:`routelib.data.registry.registry`)."""
    if names is None:
        return list(registry(data_dir))
    out = [names] if isinstance(names, str) else list(names)
    if out == ["all"]:
        return list(registry(data_dir))
    for n in out:
        spec(n, data_dir)
    return out
