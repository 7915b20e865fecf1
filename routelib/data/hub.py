"""Load datasets from the Hugging Face hub as routelib :class:`~routelib.data.Record` lists,
through the ``hub:`` block of their spec (:mod:`routelib.data.specfile`).

The paper's 14: their packaged specs name the hub id, config, splits and one converter of
:data:`CONVERTERS` that turns a hub row into schema dicts as ``shared/datasets/README.md``
describes for the local JSONL files (same question text, choice order, answer encoding, id
pattern); :data:`HUB_SOURCES` is that table, built from the specs. A user's dataset maps hub
columns to record fields instead (``hub.fields``: id, question, choices, answer, context;
:func:`convert_fields`). Each dict is then validated by :func:`routelib.data.record_from_dict`,
like a local line. Where the hub is not the local copy of a paper dataset:

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
from routelib.data.registry import spec as find_spec
from routelib.data.schema import DatasetSpec, DataError, Record


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
            context: str | None = None, subject: str | None = None,
            spec: DatasetSpec | None = None) -> dict:
    """One schema dict; hub sources carry no extra gold strings, so ``aliases`` is empty."""
    s = spec or data.DATASETS[name]
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


def _mcq_answer(value: Any, choices: list, key: str) -> int:
    """A 0-based index, its digit string, a letter ``A``.. or the text of one choice."""
    index = value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            index = int(text)
        elif len(text) == 1 and text.isalpha() and text not in choices:
            index = ord(text.upper()) - ord("A")
        elif choices.count(text) == 1:
            index = choices.index(text)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(choices):
        raise DataError(f"field {key!r}: {value!r} is not a 0-based index, letter or text of "
                        f"one of {len(choices)} choices")
    return index


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _generic_answer(kind: str, value: Any, choices: list | None, key: str) -> Any:
    if kind == "mcq":
        return _mcq_answer(value, choices, key)
    if kind == "true_false":
        text = str(value).strip().lower()
        if isinstance(value, bool) or text in _TRUE + _FALSE:
            return value if isinstance(value, bool) else text in _TRUE
        raise DataError(f"field {key!r}: {value!r} is not true/false, yes/no or 1/0")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _plain_number(value, key)
    return str(value).strip()


def convert_fields(spec: DatasetSpec) -> Callable[[dict, int, str], list]:
    """A converter for a user dataset: its ``hub.fields`` name the hub column of each field
    (``choices``: a list, or ``{text: [...]}``; no ``id``: ``<name>-<split>-<row>``)."""
    cols = dict(spec.hub.fields)

    def convert(row: dict, index: int, split: str) -> list[dict]:
        choices = None
        if "choices" in cols:
            raw = _field(row, cols["choices"])
            choices = list(raw["text"] if isinstance(raw, dict) and "text" in raw else raw)
        answer = _generic_answer(spec.type, _field(row, cols["answer"]), choices, cols["answer"])
        id_ = str(_field(row, cols["id"])) if "id" in cols else f"{spec.name}-{split}-{index:05d}"
        context = row.get(cols["context"]) if "context" in cols else None
        return [_record(spec.name, id_, _field(row, cols["question"]), answer, choices=choices,
                        context=context, spec=spec)]
    return convert


CONVERTERS: dict[str, Callable[[dict, int, str], list]] = {
    "gsm8k": convert_gsm8k, "aqua": convert_aqua, "multiarith": convert_multiarith,
    "svamp": convert_svamp, "boolq": convert_boolq, "commonsenseqa": convert_commonsenseqa,
    "hellaswag": convert_hellaswag, "openbookqa": convert_openbookqa, "piqa": convert_piqa,
    "siqa": convert_siqa, "truthfulqa": convert_truthfulqa, "winogrande": convert_winogrande,
    "coqa": convert_coqa, "mmlu": convert_mmlu,
}


def hub_source(spec: DatasetSpec) -> HubSource:
    """The :class:`HubSource` of a spec's ``hub:`` block."""
    h = spec.hub
    if h is None:
        raise DataError(f"dataset {spec.name!r} has no hub source; add a hub: block (id, "
                        f"splits, fields) to {spec.origin or 'its dataset.yaml'}")
    if h.converter is not None and h.converter not in CONVERTERS:
        raise DataError(f"{spec.where('hub')}: hub converter {h.converter!r} is not known; "
                        f"known: {', '.join(CONVERTERS)}")
    convert = CONVERTERS[h.converter] if h.converter else convert_fields(spec)
    return HubSource(h.id, h.config, dict(h.splits), convert, h.note, h.index_within, h.revision)


HUB_SOURCES: dict[str, HubSource] = {n: hub_source(s) for n, s in data.DATASETS.items()}


def load_hub(name: str, split: str, loader: Callable | None = None,
             spec: DatasetSpec | None = None) -> list[Record]:
    """Records of one physical split of dataset ``name`` (spec ``spec``, default: the
    registry's) from the hub.

    ``loader(path, config, split=hub_split)`` (plus ``revision=`` where the source pins one)
    returns the hub rows; it defaults to ``datasets.load_dataset`` (tests pass a fake one).
    """
    spec = spec or find_spec(name)
    src = hub_source(spec)
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
        records.extend(data.record_from_dict(d, where=where, spec=spec) for d in dicts)
    return records
