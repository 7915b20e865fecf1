"""Records: the schema every dataset's JSONL lines follow, their validation, and the carve-out.

Which datasets exist and where their files are is :mod:`routelib.data.registry`'s business (the
paper's 14 and any dataset folder ``<root>/<name>/dataset.yaml``; ``docs/datasets.md``).

Schema (one record per question; the same for every dataset):

=============  ==============================================================================
``id``         stable string, unique within a dataset
``dataset``    the dataset's name (may be omitted in a file: then the folder's name)
``type``       ``"mcq"``, ``"free_form"`` or ``"true_false"`` (may be omitted: the spec's)
``domain``     the paper's ``"math"``, ``"commonsense"``, ``"conversational"``,
               ``"problem_solving"``, or a user dataset's own (may be omitted: the spec's)
``question``   the question text (CoQA: the current turn only)
``context``    CoQA: story and earlier turns; BoolQ: the passage; else ``None``
``choices``    list of option strings for MCQ, else ``None``
``answer``     MCQ: 0-based index into ``choices``; free-form: gold string; true/false: bool
``answer_text``MCQ: ``choices[answer]``; free-form: ``answer``; true/false: ``"true"``/``"false"``
``aliases``    other acceptable gold strings (CoQA, TruthfulQA), else ``[]``
``subject``    MMLU subject, else ``None``
=============  ==============================================================================

Splits. Each dataset has a *logical* ``"eval"`` and ``"train"`` split (plus its physical split
names, e.g. ``"validation"``). Where the source has a train/dev split it is ``"train"``; where it
has none (MultiArith, HellaSwag, PIQA, Social IQa, TruthfulQA, WinoGrande, CoQA, and any dataset
folder whose ``dataset.yaml`` names no ``train_split``) routelib carves
a fixed, disjoint part out of the evaluation file: an item goes to ``"train"`` when
``sha256("50:<group>")`` falls in the lowest :data:`HOLDOUT_FRACTION` of the hash range, where
``<group>`` is the item id (for CoQA, or any spec with ``group_by_story``, the id up to its last
``-``: the story, so no story is split across the two parts).
``"eval"`` is then the rest. The assignment depends only on the id, so it is the same for any
subset, order or copy of the data, and an item scored in ``"eval"`` is never trained on.

Subsampling. ``limit=k`` takes the first ``k`` items of one fixed permutation of the split
(``random.Random(seed).shuffle``), returned in file order; so the 100-item subset is contained in
the 200-item one and cached results carry over when a run grows.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from routelib import config
from routelib.data.registry import DATASETS, PAPER_DATASETS, registry, roots, spec
from routelib.data.specfile import DOMAINS, LOGICAL_SPLITS, TASK_TYPES, DataError, DatasetSpec, \
    HubSpec, utf8_error

__all__ = ["DATASETS", "DOMAINS", "HOLDOUT_FRACTION", "LOGICAL_SPLITS", "PAPER_DATASETS",
           "RECORD_KEYS", "TASK_TYPES", "DataError", "DatasetSpec", "HubSpec", "Record",
           "has_train_split", "holdout_group", "in_holdout", "physical_splits", "read_jsonl",
           "record_from_dict", "registry", "resolve_split", "roots", "spec"]

RECORD_KEYS = ("id", "dataset", "type", "domain", "question", "context", "choices", "answer",
               "answer_text", "aliases", "subject")
FROM_SPEC = ("dataset", "type", "domain")  # keys a record in a dataset's file may omit
HOLDOUT_FRACTION = 0.3  # share of an eval-only dataset carved out as its "train" part


@dataclass(frozen=True)
class Record:
    id: str
    dataset: str
    type: str
    domain: str
    question: str
    context: str | None
    choices: tuple[str, ...] | None
    answer: Any
    answer_text: str
    aliases: tuple[str, ...] = ()
    subject: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["choices"] = list(self.choices) if self.choices is not None else None
        d["aliases"] = list(self.aliases)
        return d


def physical_splits(name: str | DatasetSpec) -> tuple[str, ...]:
    s = name if isinstance(name, DatasetSpec) else spec(name)
    return tuple(x for x in (s.eval_split, s.train_split) if x)


def resolve_split(s: DatasetSpec, split: str) -> tuple[str, str | None]:
    """Map a split name to (physical split, carved part ``"eval"``/``"train"`` or None)."""
    if split == "eval":
        return s.eval_split, (None if s.train_split else "eval")
    if split == "train":
        return (s.train_split, None) if s.train_split else (s.eval_split, "train")
    if split in physical_splits(s):
        return split, None
    known = ", ".join(dict.fromkeys(LOGICAL_SPLITS + physical_splits(s)))
    raise DataError(f"split {split!r} of dataset {s.name!r} is not known; known: {known}")


def has_train_split(name: str) -> bool:
    """True when the source ships a train/dev split; else "train" is carved from the eval file."""
    return spec(name).train_split is not None


def holdout_group(record: Record, s: DatasetSpec | None = None) -> str:
    if (s or spec(record.dataset)).group_by_story:
        return record.id.rsplit("-", 1)[0]
    return record.id


def in_holdout(record: Record, seed: int = config.SEED, s: DatasetSpec | None = None) -> bool:
    """Whether an item of an eval-only dataset belongs to its carved-out "train" part."""
    digest = hashlib.sha256(f"{seed}:{holdout_group(record, s)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < HOLDOUT_FRACTION


def _spec_of(d: dict, s: DatasetSpec | None, where: str) -> DatasetSpec:
    name = d["dataset"]
    if s is None:
        if not isinstance(name, str):
            raise DataError(f"{where}: dataset {name!r} is not a name")
        try:
            return spec(name)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
    if name != s.name:
        raise DataError(f"{where}: dataset {name!r} is not {s.name!r}, the dataset this file "
                        f"belongs to (omit the field to take the folder's name)")
    return s


def _check_answer(d: dict, where: str) -> None:
    choices, answer = d["choices"], d["answer"]
    if d["type"] == "mcq":
        if not isinstance(choices, list) or len(choices) < 2:
            raise DataError(f"{where}: an mcq record needs a list of >= 2 choices")
        if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
            raise DataError(f"{where}: mcq answer {answer!r} is not an index into {len(choices)} choices")
        if d["answer_text"] != choices[answer]:
            raise DataError(f"{where}: answer_text differs from choices[answer]")
    elif d["type"] == "true_false":
        if not isinstance(answer, bool):
            raise DataError(f"{where}: true_false answer {answer!r} is not a bool")
    elif not isinstance(answer, str) or not answer.strip():
        raise DataError(f"{where}: free_form answer {answer!r} is not a non-empty string")


def record_from_dict(d: dict, where: str = "<dict>", spec: DatasetSpec | None = None) -> Record:
    """Validate one schema dict and build a :class:`Record`; errors name ``where``.

    With ``spec`` (the dataset the dict was read for) ``dataset``, ``type`` and ``domain`` may be
    omitted and are then the spec's; without it ``dataset`` must name a registered dataset."""
    if not isinstance(d, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(d).__name__}")
    if spec is not None:
        d = {**dict(zip(FROM_SPEC, (spec.name, spec.type, spec.domain))), **d}
    missing = [k for k in RECORD_KEYS if k not in d]
    if missing:
        raise DataError(f"{where}: missing key(s) {missing}")
    s = _spec_of(d, spec, where)
    if (d["type"], d["domain"]) != (s.type, s.domain):
        raise DataError(f"{where}: type/domain {d['type']!r}/{d['domain']!r} do not match "
                        f"{s.name}'s {s.type!r}/{s.domain!r}")
    if not isinstance(d["aliases"], list) or not all(isinstance(a, str) for a in d["aliases"]):
        raise DataError(f"{where}: aliases must be a list of strings")
    if d["context"] is not None and not isinstance(d["context"], str):
        raise DataError(f"{where}: context must be a string or null")
    if not isinstance(d["question"], str) or not d["question"].strip():
        raise DataError(f"{where}: empty question")
    _check_answer(d, where)
    choices = d["choices"]
    return Record(
        id=str(d["id"]), dataset=s.name, type=d["type"], domain=d["domain"],
        question=d["question"], context=d["context"],
        choices=tuple(choices) if choices is not None else None, answer=d["answer"],
        answer_text=str(d["answer_text"]), aliases=tuple(d["aliases"] or ()),
        subject=d["subject"],
    )


def _lines(path: Path):
    """(line number, text) of each non-blank line; a non-UTF-8 byte raises naming its offset."""
    offset = 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise utf8_error(path, lineno, offset, exc) from None
            offset += len(raw)
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
            if line.strip():
                yield lineno, line


def read_jsonl(path: Path, spec: DatasetSpec | None = None) -> list[Record]:
    """Read and validate one JSONL file of dataset ``spec`` (None: each line names its
    dataset); a malformed line raises naming file and line, an empty file raises too."""
    records, seen = [], set()
    for lineno, line in _lines(path):
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        rec = record_from_dict(obj, where, spec)
        if rec.id in seen:
            raise DataError(f"{where}: duplicate id {rec.id!r}")
        seen.add(rec.id)
        records.append(rec)
    if not records:
        raise DataError(f"{path}: no records (the file is empty); a split needs at least one")
    return records
