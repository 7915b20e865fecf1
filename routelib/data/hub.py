"""Load the 14 datasets from the Hugging Face hub as routelib :class:`~routelib.data.Record` lists.

:data:`HUB_SOURCES` maps each dataset to its hub id, config, splits and a converter that turns one
hub row into schema dicts as ``shared/datasets/README.md`` describes for the local JSONL files
(same question text, choice order, answer encoding, id pattern); each dict is then validated by
:func:`routelib.data.record_from_dict`, like a local line. Where the hub is not the local copy:

- MultiArith: the hub's 420/180 split differs from the local 600-item file; hub ``test`` is used.
- BoolQ ``train_nopassage`` is hub ``train`` with the passage dropped, to mirror the local file.
- TruthfulQA: MC1 options shuffled with ``random.Random("truthfulqa-<row>")`` as locally; the
  hub's multiple_choice config has no "Correct Answers", so ``aliases`` is ``[]``.
- CoQA: the hub has no test set, so routelib ``test`` is hub ``validation`` (the dev set), ids
  ``coqa-hub-<row>-<turn>``, no additional answers (``aliases`` is ``[]``).
- PIQA, Social IQa: their repos hold loading scripts, which ``datasets`` >= 4 no longer runs; PIQA
  is read from the parquet export (``refs/convert/parquet``, config ``default``), Social IQa from
  ``lighteval/siqa``, a parquet copy of ``allenai/social_i_qa`` (lm-evaluation-harness #3943).
- MMLU: ``<row>`` in ``mmlu-<subject>-<split>-<row>`` counts within the subject, as the CSVs do.
- Row-index ids (``gsm8k-test-00000``) follow the local pattern; they match local ids only where
  the local file keeps the source's row order.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from routelib.data import schema as data
from routelib.data.schema import DataError, Record


@dataclass(frozen=True)
class HubSource:
    path: str                   # hub dataset id
    config: str | None          # hub config name
    splits: dict[str, str]      # routelib physical split -> hub split
    convert: Callable[[dict, int, str], list]  # (row, index, routelib split) -> dicts
    note: str = ""
    index_within: str | None = None  # restart the row index for each value of this column
    revision: str | None = None      # hub revision; None: the default branch


def _field(row: dict, key: str) -> Any:
    if key not in row or row[key] is None:
        raise DataError(f"row has no field {key!r}")
    return row[key]


def _index_of(value: Any, labels: list, key: str) -> int:
    if value not in labels:
        raise DataError(f"field {key!r}: {value!r} is not one of {list(labels)}")
    return list(labels).index(value)


def _plain_number(value: Any, key: str) -> str:
    """A number as a plain string: no commas, no trailing ``.0`` (5.0 -> "5", 2.5 -> "2.5")."""
    text = str(value).replace(",", "").strip()
    try:
        num = float(text)
    except ValueError:
        raise DataError(f"field {key!r}: {value!r} is not a number") from None
    return str(int(num)) if num.is_integer() else repr(num)


def _record(name: str, id_: str, question: str, answer: Any, *, choices: list | None = None,
            context: str | None = None, subject: str | None = None) -> dict:
    """One schema dict; hub sources carry no extra gold strings, so ``aliases`` is empty."""
    s = data.DATASETS[name]
    if s.type == "mcq":
        answer_text = choices[answer]
    elif s.type == "true_false":
        answer_text = "true" if answer else "false"
    else:
        answer_text = answer
    return {"id": id_, "dataset": name, "type": s.type, "domain": s.domain, "question": question,
            "context": context, "choices": choices, "answer": answer, "answer_text": answer_text,
            "aliases": [], "subject": subject}


def convert_gsm8k(row: dict, index: int, split: str) -> list[dict]:
    solution = _field(row, "answer")
    if "####" not in solution:
        raise DataError("field 'answer' has no '####' final answer")
    gold = solution.split("####")[-1].replace(",", "").strip()
    return [_record("gsm8k", f"gsm8k-{split}-{index:05d}", _field(row, "question"), gold)]


def convert_aqua(row: dict, index: int, split: str) -> list[dict]:
    options = list(_field(row, "options"))
    letters = [o.split(")", 1)[0].strip() for o in options]
    choices = [o.split(")", 1)[1].strip() if ")" in o else o.strip() for o in options]
    answer = _index_of(_field(row, "correct"), letters, "correct")
    return [_record("aqua", f"aqua-{split}-{index:04d}", _field(row, "question"), answer,
                    choices=choices)]


def convert_multiarith(row: dict, index: int, split: str) -> list[dict]:
    gold = _plain_number(_field(row, "final_ans"), "final_ans")
    return [_record("multiarith", f"multiarith-hub-{index}", _field(row, "question"), gold)]


def convert_svamp(row: dict, index: int, split: str) -> list[dict]:
    question = " ".join(f"{_field(row, 'Body')} {_field(row, 'Question')}".split())
    gold = _plain_number(_field(row, "Answer"), "Answer")
    return [_record("svamp", f"svamp-{_field(row, 'ID')}", question, gold)]


def convert_boolq(row: dict, index: int, split: str) -> list[dict]:
    answer = _field(row, "answer")  # record_from_dict checks that it is a bool
    context = _field(row, "passage") if split == "validation" else None
    hub_split = "train" if split == "train_nopassage" else split
    return [_record("boolq", f"boolq-{hub_split}-{index:04d}", _field(row, "question"), answer,
                    context=context)]


def _lettered(row: dict) -> tuple[list[str], int]:
    """Choice texts and answer index of a ``{choices: {label, text}, answerKey}`` row."""
    choices = _field(row, "choices")
    answer = _index_of(_field(row, "answerKey"), _field(choices, "label"), "answerKey")
    return list(_field(choices, "text")), answer


def convert_commonsenseqa(row: dict, index: int, split: str) -> list[dict]:
    choices, answer = _lettered(row)
    return [_record("commonsenseqa", f"csqa-{_field(row, 'id')}", _field(row, "question"),
                    answer, choices=choices)]


def convert_hellaswag(row: dict, index: int, split: str) -> list[dict]:
    endings = list(_field(row, "endings"))
    answer = _index_of(str(_field(row, "label")), [str(i) for i in range(len(endings))], "label")
    question = f"{_field(row, 'activity_label')}: {_field(row, 'ctx')}"
    return [_record("hellaswag", f"hellaswag-val-{_field(row, 'ind')}", question, answer,
                    choices=endings)]


def convert_openbookqa(row: dict, index: int, split: str) -> list[dict]:
    choices, answer = _lettered(row)
    return [_record("openbookqa", f"openbookqa-{split}-{index:05d}", _field(row, "question_stem"),
                    answer, choices=choices)]


def convert_piqa(row: dict, index: int, split: str) -> list[dict]:
    answer = _index_of(_field(row, "label"), [0, 1], "label")
    return [_record("piqa", f"piqa-{split}-{index:04d}", _field(row, "goal"), answer,
                    choices=[_field(row, "sol1"), _field(row, "sol2")])]


def convert_siqa(row: dict, index: int, split: str) -> list[dict]:
    answer = _index_of(str(_field(row, "label")), ["1", "2", "3"], "label")
    question = f"{_field(row, 'context')} {_field(row, 'question')}"
    choices = [_field(row, k) for k in ("answerA", "answerB", "answerC")]
    return [_record("siqa", f"siqa-{split}-{index:05d}", question, answer, choices=choices)]


def convert_truthfulqa(row: dict, index: int, split: str) -> list[dict]:
    mc1 = _field(row, "mc1_targets")
    options, labels = list(_field(mc1, "choices")), list(_field(mc1, "labels"))
    if len(options) != len(labels) or labels.count(1) != 1:
        raise DataError("field 'mc1_targets' needs one label per choice and exactly one label 1")
    order = list(range(len(options)))
    random.Random(f"truthfulqa-{index}").shuffle(order)
    choices = [options[j] for j in order]
    answer = order.index(labels.index(1))
    return [_record("truthfulqa", f"truthfulqa-{index:03d}", _field(row, "question"), answer,
                    choices=choices)]


def convert_winogrande(row: dict, index: int, split: str) -> list[dict]:
    answer = _index_of(str(_field(row, "answer")), ["1", "2"], "answer")
    return [_record("winogrande", f"winogrande-{split}-{index:04d}", _field(row, "sentence"),
                    answer, choices=[_field(row, "option1"), _field(row, "option2")])]


def convert_coqa(row: dict, index: int, split: str) -> list[dict]:
    story = _field(row, "story")
    questions = list(_field(row, "questions"))
    answers = list(_field(_field(row, "answers"), "input_text"))
    if len(questions) != len(answers):
        raise DataError(f"field 'answers': {len(answers)} answers for {len(questions)} questions")
    out, turns = [], []
    for t, (q, a) in enumerate(zip(questions, answers), 1):
        context = story + "\n\n" + "\n".join(turns) if turns else story
        out.append(_record("coqa", f"coqa-hub-{index}-{t}", q, a, context=context))
        turns.append(f"Q: {q}\nA: {a}")
    return out


def convert_mmlu(row: dict, index: int, split: str) -> list[dict]:
    subject = _field(row, "subject")
    choices = list(_field(row, "choices"))
    answer = _index_of(_field(row, "answer"), list(range(len(choices))), "answer")
    return [_record("mmlu", f"mmlu-{subject}-{split}-{index:04d}", _field(row, "question"),
                    answer, choices=choices, subject=subject)]


HUB_SOURCES: dict[str, HubSource] = {
    "gsm8k": HubSource("openai/gsm8k", "main", {"test": "test", "train": "train"}, convert_gsm8k,
                       "gold = text after '####', commas removed"),
    "aqua": HubSource("deepmind/aqua_rat", "raw", {"test": "test", "validation": "validation"},
                      convert_aqua, "option prefixes 'A)'..'E)' stripped"),
    "multiarith": HubSource("ChilleD/MultiArith", None, {"test": "test"}, convert_multiarith,
                            "hub test is 180 items of a 420/180 split, not the local 600"),
    "svamp": HubSource("ChilleD/SVAMP", None, {"test": "test", "train": "train"}, convert_svamp,
                       "question = Body + ' ' + Question"),
    "boolq": HubSource("google/boolq", None, {"validation": "validation",
                       "train_nopassage": "train"}, convert_boolq, "train: passage dropped"),
    "commonsenseqa": HubSource("tau/commonsense_qa", None, {"validation": "validation",
                               "train": "train"}, convert_commonsenseqa, "ids keep the source id"),
    "hellaswag": HubSource("Rowan/hellaswag", None, {"validation": "validation"},
                           convert_hellaswag, "full 10,042 validation items (local: 1,000)"),
    "openbookqa": HubSource("allenai/openbookqa", "main", {"test": "test", "train": "train"},
                            convert_openbookqa, "question = question_stem"),
    "piqa": HubSource("ybisk/piqa", "default", {"validation": "validation"}, convert_piqa,
                      "main holds a loading script: read the parquet export",
                      revision="refs/convert/parquet"),
    "siqa": HubSource("lighteval/siqa", None, {"validation": "validation"}, convert_siqa,
                      "parquet copy of allenai/social_i_qa (whose main holds a script)"),
    "truthfulqa": HubSource("truthfulqa/truthful_qa", "multiple_choice", {"validation":
                            "validation"}, convert_truthfulqa, "MC1, shuffled; no aliases"),
    "winogrande": HubSource("allenai/winogrande", "winogrande_xl", {"validation": "validation"},
                            convert_winogrande, "answer '1'/'2' -> 0/1"),
    "coqa": HubSource("stanfordnlp/coqa", None, {"test": "validation"}, convert_coqa,
                      "the hub has no test set: routelib 'test' is the hub validation (dev) set"),
    "mmlu": HubSource("cais/mmlu", "all", {"test": "test", "dev": "dev"}, convert_mmlu,
                      "row index counted within each subject", index_within="subject"),
}


def load_hub(name: str, split: str, loader: Callable | None = None) -> list[Record]:
    """Records of one physical split of dataset ``name`` from the hub.

    ``loader(path, config, split=hub_split)`` (plus ``revision=`` where the source pins one)
    returns the hub rows; it defaults to ``datasets.load_dataset`` (tests pass a fake one).
    """
    src = HUB_SOURCES.get(name)
    if src is None:
        raise DataError(f"dataset {name!r} has no hub source; known: {', '.join(HUB_SOURCES)}")
    if split not in src.splits:
        raise DataError(f"split {split!r} of dataset {name!r} has no hub mapping; "
                        f"available: {', '.join(src.splits)}")
    hub_split = src.splits[split]
    if loader is None:
        import datasets  # imported lazily: only hub loading needs it
        loader = datasets.load_dataset
    extra = {"revision": src.revision} if src.revision else {}
    rows = loader(src.path, src.config, split=hub_split, **extra)
    records, seen = [], Counter()
    for i, row in enumerate(rows):
        where = f"hub {src.path} {hub_split} row {i}"
        key = row.get(src.index_within) if src.index_within else None
        try:
            dicts = src.convert(row, seen[key], split)
        except (DataError, TypeError, AttributeError, IndexError) as exc:
            raise DataError(f"{where}: {exc}") from None
        seen[key] += 1
        records.extend(data.record_from_dict(d, where=where) for d in dicts)
    return records
