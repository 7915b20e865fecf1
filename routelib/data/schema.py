"""The paper's 14 datasets as :class:`Record` lists, from a local JSONL directory or the HF hub.

Schema (one record per question; the same for every dataset):

=============  ==============================================================================
``id``         stable string, unique within a dataset
``dataset``    one of :data:`DATASETS`
``type``       ``"mcq"``, ``"free_form"`` or ``"true_false"``
``domain``     ``"math"``, ``"commonsense"``, ``"conversational"`` or ``"problem_solving"``
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
has none (MultiArith, HellaSwag, PIQA, Social IQa, TruthfulQA, WinoGrande, CoQA) routelib carves
a fixed, disjoint part out of the evaluation file: an item goes to ``"train"`` when
``sha256("50:<group>")`` falls in the lowest :data:`HOLDOUT_FRACTION` of the hash range, where
``<group>`` is the item id (for CoQA the story id, so no story is split across the two parts).
``"eval"`` is then the rest. The assignment depends only on the id, so it is the same for any
subset, order or copy of the data, and an item scored in ``"eval"`` is never trained on.

Subsampling. ``limit=k`` takes the first ``k`` items of one fixed permutation of the split
(``random.Random(seed).shuffle``), returned in file order; so the 100-item subset is contained in
the 200-item one and cached results carry over when a run grows.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from routelib import config
from routelib.errors import RoutelibError

TASK_TYPES = ("mcq", "free_form", "true_false")
DOMAINS = ("math", "commonsense", "conversational", "problem_solving")
RECORD_KEYS = ("id", "dataset", "type", "domain", "question", "context", "choices", "answer",
               "answer_text", "aliases", "subject")
HOLDOUT_FRACTION = 0.3  # share of an eval-only dataset carved out as its "train" part


class DataError(RoutelibError, ValueError):
    """Unknown dataset or split, or a malformed record."""


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


@dataclass(frozen=True)
class DatasetSpec:
    type: str
    domain: str
    eval_split: str                 # physical split used for evaluation
    train_split: str | None = None  # physical train/dev split; None: carve one from eval_split
    note: str = ""
    group_by_story: bool = field(default=False)  # CoQA: keep a story's turns together


DATASETS: dict[str, DatasetSpec] = {
    "gsm8k": DatasetSpec("free_form", "math", "test", "train"),
    "aqua": DatasetSpec("mcq", "math", "test", "validation"),
    "multiarith": DatasetSpec("free_form", "math", "test"),
    "svamp": DatasetSpec("free_form", "math", "test", "train"),
    "boolq": DatasetSpec("true_false", "commonsense", "validation", "train_nopassage",
                         note="the local train split has no passages"),
    "commonsenseqa": DatasetSpec("mcq", "commonsense", "validation", "train"),
    "hellaswag": DatasetSpec("mcq", "commonsense", "validation"),
    "openbookqa": DatasetSpec("mcq", "commonsense", "test", "train"),
    "piqa": DatasetSpec("mcq", "commonsense", "validation"),
    "siqa": DatasetSpec("mcq", "commonsense", "validation"),
    "truthfulqa": DatasetSpec("mcq", "commonsense", "validation"),
    "winogrande": DatasetSpec("mcq", "commonsense", "validation"),
    "coqa": DatasetSpec("free_form", "conversational", "test", group_by_story=True),
    "mmlu": DatasetSpec("mcq", "problem_solving", "test", "dev"),
}
LOGICAL_SPLITS = ("eval", "train")


def spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"dataset {name!r} is not known; known: {', '.join(DATASETS)}") from None


def physical_splits(name: str) -> tuple[str, ...]:
    s = spec(name)
    return tuple(x for x in (s.eval_split, s.train_split) if x)


def _resolve(name: str, split: str) -> tuple[str, str | None]:
    """Map a split name to (physical split, holdout part or None)."""
    s = spec(name)
    if split == "eval":
        return s.eval_split, (None if s.train_split else "eval")
    if split == "train":
        return (s.train_split, None) if s.train_split else (s.eval_split, "train")
    if split in physical_splits(name):
        return split, None
    known = ", ".join(dict.fromkeys(LOGICAL_SPLITS + physical_splits(name)))
    raise DataError(f"split {split!r} of dataset {name!r} is not known; known: {known}")


def has_train_split(name: str) -> bool:
    """True when the source ships a train/dev split; else "train" is carved from the eval file."""
    return spec(name).train_split is not None


def holdout_group(record: Record) -> str:
    if spec(record.dataset).group_by_story:
        return record.id.rsplit("-", 1)[0]
    return record.id


def in_holdout(record: Record, seed: int = config.SEED) -> bool:
    """Whether an item of an eval-only dataset belongs to its carved-out "train" part."""
    digest = hashlib.sha256(f"{seed}:{holdout_group(record)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < HOLDOUT_FRACTION


def record_from_dict(d: dict, where: str = "<dict>") -> Record:
    """Validate one schema dict and build a :class:`Record`; errors name ``where``."""
    if not isinstance(d, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(d).__name__}")
    missing = [k for k in RECORD_KEYS if k not in d]
    if missing:
        raise DataError(f"{where}: missing key(s) {missing}")
    name = d["dataset"]
    if not isinstance(name, str) or name not in DATASETS:
        raise DataError(f"{where}: dataset {name!r} is not known; known: {', '.join(DATASETS)}")
    s = DATASETS[name]
    if (d["type"], d["domain"]) != (s.type, s.domain):
        raise DataError(f"{where}: type/domain {d['type']!r}/{d['domain']!r} do not match "
                        f"{name}'s {s.type!r}/{s.domain!r}")
    if not isinstance(d["aliases"], list) or not all(isinstance(a, str) for a in d["aliases"]):
        raise DataError(f"{where}: aliases must be a list of strings")
    if d["context"] is not None and not isinstance(d["context"], str):
        raise DataError(f"{where}: context must be a string or null")
    if not isinstance(d["question"], str) or not d["question"].strip():
        raise DataError(f"{where}: empty question")
    choices = d["choices"]
    answer = d["answer"]
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
    return Record(
        id=str(d["id"]), dataset=name, type=d["type"], domain=d["domain"], question=d["question"],
        context=d["context"], choices=tuple(choices) if choices is not None else None,
        answer=answer, answer_text=str(d["answer_text"]), aliases=tuple(d["aliases"] or ()),
        subject=d["subject"],
    )


def read_jsonl(path: Path) -> list[Record]:
    """Read and validate one JSONL file; a malformed line raises naming file and line."""
    records, seen = [], set()
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
            rec = record_from_dict(obj, where)
            if rec.id in seen:
                raise DataError(f"{where}: duplicate id {rec.id!r}")
            seen.add(rec.id)
            records.append(rec)
    return records
