"""The dataset registry: which datasets exist, and where their files are.

A dataset is a folder ``<root>/<name>/`` holding ``dataset.yaml`` (:mod:`.specfile`) and
``<split>.jsonl`` files. The roots, in search order, are ``ROUTELIB_DATA_DIR``, then each entry of
``ROUTELIB_DATA_PATH`` (the CLI's ``--data-dir`` prepends to it); a ``data_dir`` argument replaces
them all. **The first root holding a dataset folder of a name wins**; later folders of that name
are shadowed (listed in :attr:`Registry.shadowed`).

The paper's 14 datasets (:data:`DATASETS`, in the paper's order) are entries of the same kind
whose specs ship with routelib (``paper_datasets.yaml``): for them a folder ``<root>/<name>/``
needs no ``dataset.yaml`` (``shared/datasets`` has none). A ``dataset.yaml`` in a folder named
after one of them must agree with the shipped spec, so cached results keyed by that name keep
meaning the same data; use another name for other data. ``all`` is not a dataset name.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Iterator, Sequence, Union

from routelib import config
from routelib.data.specfile import NAME_RE, RESERVED_NAMES, DataError, DatasetSpec, \
    read_packaged, read_spec

PAPER_FILE = Path(__file__).with_name("paper_datasets.yaml")
DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(read_packaged(PAPER_FILE))
PAPER_DATASETS: tuple[str, ...] = tuple(DATASETS)
SPEC_FILE = "dataset.yaml"
_AGREE = ("type", "domain", "eval_split", "train_split", "group_by_story")

DataDir = Union[str, Path, Sequence[Union[str, Path]], None]


def roots(data_dir: DataDir = None) -> tuple[Path, ...]:
    """The data roots in search order: ``data_dir`` (one path or several) when given, else
    :func:`routelib.config.data_roots` (``ROUTELIB_DATA_DIR``, then ``ROUTELIB_DATA_PATH``)."""
    if data_dir is None:
        return tuple(config.data_roots())
    if isinstance(data_dir, (str, Path)):
        data_dir = [data_dir]
    return tuple(dict.fromkeys(Path(d).expanduser() for d in data_dir))


@lru_cache(maxsize=512)
def _read(path: str, name: str, stamp: tuple) -> DatasetSpec:  # stamp: re-read when it changes
    return read_spec(Path(path), name)


def _agrees(found: DatasetSpec, shipped: DatasetSpec) -> DatasetSpec:
    for key in _AGREE:
        if getattr(found, key) != getattr(shipped, key):
            raise DataError(f"{found.where(key)}: {found.name} is one of the paper's datasets, "
                            f"whose {key} is {getattr(shipped, key)!r}, not "
                            f"{getattr(found, key)!r}; name the folder otherwise for other data")
    return found if found.hub else replace(found, hub=shipped.hub)


def folder_spec(root: Path, name: str) -> DatasetSpec | None:
    """The spec of ``<root>/<name>/`` when it is a dataset folder, else None."""
    folder = root / name
    if not folder.is_dir():
        return None
    path = folder / SPEC_FILE
    if path.is_file():
        if not NAME_RE.match(name) or name in RESERVED_NAMES:
            raise DataError(f"{path}: the folder name {name!r} cannot name a dataset (letters, "
                            f"digits, _ . + - ; not {', '.join(RESERVED_NAMES)})")
        st = path.stat()
        found = _read(str(path), name, (st.st_mtime_ns, st.st_size, st.st_ino))
        if name in DATASETS:
            found = _agrees(found, DATASETS[name])
        return replace(found, folder=folder)
    if name in DATASETS:
        return replace(DATASETS[name], folder=folder)
    return None


def spec(name: str, data_dir: DataDir = None) -> DatasetSpec:
    """The spec of dataset ``name``: from the first root holding its folder, else the shipped
    spec of a paper dataset (``folder`` None: its files are not found in any root)."""
    found = roots(data_dir)
    if isinstance(name, str) and NAME_RE.match(name):
        for root in found:
            s = folder_spec(root, name)
            if s is not None:
                return s
        if name in DATASETS:
            return DATASETS[name]
    known = ", ".join(Registry(found, strict=False))
    bare = [str(r / name) for r in found if isinstance(name, str) and NAME_RE.match(name)
            and (r / name).is_dir()]
    hint = f" ({', '.join(bare)}: no {SPEC_FILE})" if bare else ""
    raise DataError(f"dataset {name!r} is not known; known: {known}{hint}")


class Registry(Mapping):
    """Every dataset of ``roots`` (name -> :class:`DatasetSpec`): the paper's 14 first, in the
    paper's order, then the other folders in root order, by name within a root.

    ``strict``: a broken ``dataset.yaml`` raises :class:`DataError`; else it is left out."""

    def __init__(self, roots: Sequence[Path], strict: bool = True):
        self.roots = tuple(roots)
        self.shadowed: list[Path] = []  # dataset folders hidden by an earlier root's
        found: dict[str, DatasetSpec] = {}
        for root in (r for r in self.roots if r.is_dir()):
            for child in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
                try:
                    s = folder_spec(root, child.name)
                except DataError:
                    if strict:
                        raise
                    continue
                if s is None:
                    continue
                if child.name in found:
                    self.shadowed.append(child)
                else:
                    found[child.name] = s
        self._specs = {n: found.pop(n, DATASETS[n]) for n in DATASETS}
        self._specs.update(found)

    def __getitem__(self, name: str) -> DatasetSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise DataError(f"dataset {name!r} is not known; known: {', '.join(self)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"Registry({len(self)} datasets from {[str(r) for r in self.roots]})"


def registry(data_dir: DataDir = None) -> Registry:
    """All datasets of the data roots (see :class:`Registry`); reads every ``dataset.yaml``."""
    return Registry(roots(data_dir))
