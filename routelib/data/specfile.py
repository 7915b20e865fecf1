"""A dataset's spec: :class:`DatasetSpec`, read from a ``dataset.yaml`` (or one block of the
packaged ``paper_datasets.yaml``) with every error naming the file and line.

Keys of a ``dataset.yaml`` (the format is documented in ``docs/datasets.md``):

==================  ==========================================================================
``type``            ``mcq``, ``free_form`` or ``true_false`` (required)
``domain``          a name such as ``math`` or ``medical`` (required); ``math`` makes free-form
                    answers graded as numbers, any other domain as text
``eval_split``      the physical split scored (``<eval_split>.jsonl``; required)
``train_split``     a physical train/dev split; absent: ``train`` is carved out of the eval file
``group_by_story``  true: the carve-out keeps ids sharing the part before the last ``-`` together
``note``            free text (``description`` too)
``hub``             ``id``, optional ``config``, ``revision``, ``splits`` (routelib split -> hub
                    split) and ``fields`` (routelib field -> hub column: id, question, choices,
                    answer, context); the packaged specs name a built-in ``converter`` instead
==================  ==========================================================================
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from routelib.errors import RoutelibError

TASK_TYPES = ("mcq", "free_form", "true_false")
DOMAINS = ("math", "commonsense", "conversational", "problem_solving")  # the paper's four
LOGICAL_SPLITS = ("eval", "train")
SPEC_KEYS = ("type", "domain", "eval_split", "train_split", "group_by_story", "note",
             "description", "hub")
REQUIRED_KEYS = ("type", "domain", "eval_split")
HUB_KEYS = ("id", "config", "revision", "splits", "fields", "converter", "index_within", "note")
HUB_FIELDS = ("id", "question", "choices", "answer", "context")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # dataset and split names
DOMAIN_RE = re.compile(r"^[a-z][a-z0-9_]*$")
RESERVED_NAMES = ("all",)


class DataError(RoutelibError, ValueError):
    """Unknown dataset or split, a malformed dataset.yaml, or a malformed record."""


@dataclass(frozen=True)
class HubSpec:
    """Where a dataset lives on the Hugging Face hub and how its rows map to records."""
    id: str
    config: str | None = None
    revision: str | None = None
    splits: tuple[tuple[str, str], ...] = ()  # (routelib physical split, hub split)
    fields: tuple[tuple[str, str], ...] = ()  # (routelib field, hub column); generic rows
    converter: str | None = None              # a built-in converter (the paper's datasets)
    index_within: str | None = None           # restart the row index per value of this column
    note: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    type: str
    domain: str
    eval_split: str                 # physical split used for evaluation
    train_split: str | None = None  # physical train/dev split; None: carve one from eval_split
    note: str = ""
    group_by_story: bool = field(default=False)  # CoQA: keep a story's turns together
    name: str = ""
    hub: HubSpec | None = None
    folder: Path | None = field(default=None, compare=False)  # where its <split>.jsonl live
    origin: str = field(default="", compare=False)            # the file the spec was read from
    lines: dict = field(default_factory=dict, compare=False, repr=False)  # key -> line in origin

    @property
    def paper(self) -> bool:
        """One of the paper's 14 datasets (its spec ships with routelib)."""
        return self.origin.endswith("paper_datasets.yaml")

    def where(self, key: str) -> str:
        """``file:line`` of ``key`` in the spec's file (the file alone when unknown)."""
        line = self.lines.get(key)
        return f"{self.origin}:{line}" if line else self.origin


def utf8_error(path: Path, lineno: int, offset: int, exc: UnicodeDecodeError) -> DataError:
    """The one-line error for a non-UTF-8 byte: file:line, column and byte offset in the file."""
    byte = exc.object[exc.start]
    return DataError(f"{path}:{lineno}: byte 0x{byte:02x} at column {exc.start + 1} (byte offset "
                     f"{offset + exc.start} of the file) is not valid UTF-8; save it as UTF-8")


def read_yaml(path: Path) -> tuple[Any, dict]:
    """(value, {key path tuple: line}) of one YAML file; errors name the file and line."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = raw.rfind(b"\n", 0, exc.start) + 1
        lineno = raw.count(b"\n", 0, exc.start) + 1
        exc.object, exc.start = raw[start:], exc.start - start
        raise utf8_error(path, lineno, start, exc) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines = _lines(node, (), path)
        value = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DataError(f"{path}:{mark.line + 1 if mark else 1}: not valid YAML ({what})") from None
    finally:
        loader.dispose()
    return value, lines


def _lines(node, prefix: tuple, path: Path) -> dict:
    out = {prefix: node.start_mark.line + 1} if node is not None else {}
    if isinstance(node, yaml.MappingNode):
        for knode, vnode in node.value:
            key = prefix + (str(knode.value),)
            if key in out:
                raise DataError(f"{path}:{knode.start_mark.line + 1}: duplicate key "
                                f"{knode.value!r}")
            sub = _lines(vnode, key, path)
            sub[key] = knode.start_mark.line + 1
            out.update(sub)
    return out


class _Check:
    """Validation helpers bound to one file and its line map."""

    def __init__(self, path, lines: dict, prefix: tuple = ()):
        self.path, self.lines, self.prefix = path, lines, prefix

    def at(self, *key: str) -> str:
        full = self.prefix + key
        while full and full not in self.lines:
            full = full[:-1]
        return f"{self.path}:{self.lines.get(full, 1)}"

    def fail(self, key, message: str) -> DataError:
        return DataError(f"{self.at(*([key] if key else []))}: {message}")

    def mapping(self, value, keys: tuple, required: tuple, what: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(None, f"{what} must be a mapping of {', '.join(keys)}; got "
                                  f"{type(value).__name__}")
        for k in value:
            if k not in keys:
                raise self.fail(str(k), f"unknown key {k!r} in {what}; known: {', '.join(keys)}")
        missing = [k for k in required if value.get(k) is None]
        if missing:
            raise self.fail(None, f"{what} is missing key(s) {missing}")
        return value

    def text(self, value: dict, key: str, pattern: re.Pattern | None = None,
             hint: str = "") -> str | None:
        v = value.get(key)
        if v is None:
            return None
        if not isinstance(v, str) or not v.strip() or (pattern and not pattern.match(v)):
            raise self.fail(key, f"{key} {v!r} is not {hint or 'a non-empty string'}")
        return v

    def pairs(self, value: dict, key: str, allowed: tuple | None) -> tuple:
        v = value.get(key) or {}
        if not isinstance(v, dict):
            raise self.fail(key, f"{key} must be a mapping, got {type(v).__name__}")
        for k, col in v.items():
            if allowed is not None and k not in allowed:
                raise self.fail(key, f"unknown key {k!r} in {key}; known: {', '.join(allowed)}")
            if not isinstance(col, str) or not col:
                raise _Check(self.path, self.lines, self.prefix + (key,)).fail(
                    str(k), f"{key}.{k} must be a name, got {col!r}")
        return tuple((str(k), c) for k, c in v.items())


def parse_spec(value: Any, lines: dict, path: Path, name: str, *, packaged: bool = False,
               prefix: tuple = ()) -> DatasetSpec:
    """Validate one spec mapping (``lines`` from :func:`read_yaml`, keys under ``prefix``)."""
    c = _Check(path, lines, prefix)
    c.mapping(value, SPEC_KEYS, REQUIRED_KEYS, "a dataset spec")
    if value["type"] not in TASK_TYPES:
        raise c.fail("type", f"type {value['type']!r} is not one of {', '.join(TASK_TYPES)}")
    c.text(value, "domain", DOMAIN_RE, "a domain name (lowercase letters, digits, _; the "
                                       f"paper's: {', '.join(DOMAINS)})")
    split_hint = "a split name (letters, digits, _ . + -)"
    ev = c.text(value, "eval_split", NAME_RE, split_hint)
    tr = c.text(value, "train_split", NAME_RE, split_hint)
    if ev == "train" or tr == "eval" or ev == tr:
        raise c.fail("train_split" if tr else "eval_split",
                     f"eval_split {ev!r} and train_split {tr!r}: the eval split may not be "
                     "'train', the train split may not be 'eval', and they must differ")
    for key in ("note", "description"):
        c.text(value, key)
    if not isinstance(value.get("group_by_story", False), bool):
        raise c.fail("group_by_story", "group_by_story must be true or false")
    spec = DatasetSpec(value["type"], value["domain"], ev, tr, note=value.get("note") or "",
                       group_by_story=value.get("group_by_story", False), name=name,
                       origin=str(path),
                       lines={k[-1]: n for k, n in lines.items() if k[:-1] == prefix and k})
    if value.get("hub") is not None:
        spec = _with_hub(spec, value["hub"], _Check(path, lines, prefix + ("hub",)), packaged)
    return spec


def _with_hub(spec: DatasetSpec, value: Any, c: _Check, packaged: bool) -> DatasetSpec:
    from dataclasses import replace
    c.mapping(value, HUB_KEYS, ("id",), "hub")
    hub_id, converter = c.text(value, "id"), c.text(value, "converter")
    if converter and not packaged:
        raise c.fail("converter", "hub.converter is for the packaged paper datasets; map the "
                                  "hub columns with hub.fields instead")
    fields = c.pairs(value, "fields", HUB_FIELDS)
    if not converter:
        need = ("question", "answer") + (("choices",) if spec.type == "mcq" else ())
        missing = [f for f in need if f not in dict(fields)]
        if missing:
            raise c.fail("fields" if fields else None,
                         f"hub.fields is missing {missing} (hub column names for them)")
    physical = tuple(x for x in (spec.eval_split, spec.train_split) if x)
    splits = c.pairs(value, "splits", physical) or tuple((s, s) for s in physical)
    for key in ("config", "revision", "index_within", "note"):
        c.text(value, key)
    return replace(spec, hub=HubSpec(hub_id, value.get("config"), value.get("revision"), splits,
                                     fields, converter, value.get("index_within"),
                                     value.get("note") or ""))


def read_spec(path: Path, name: str) -> DatasetSpec:
    """The spec of the dataset folder holding ``path`` (its ``dataset.yaml``)."""
    value, lines = read_yaml(path)
    if value is None:
        raise DataError(f"{path}:1: empty dataset.yaml; it needs at least "
                        f"{', '.join(REQUIRED_KEYS)}")
    return parse_spec(value, lines, path, name)


def read_packaged(path: Path) -> dict[str, DatasetSpec]:
    """The paper's datasets from the packaged file: one spec block per dataset name, in order."""
    value, lines = read_yaml(path)
    if not isinstance(value, dict):
        raise DataError(f"{path}:1: expected a mapping of dataset name -> spec")
    return {name: parse_spec(block, lines, path, name, packaged=True, prefix=(name,))
            for name, block in value.items()}
