"""Shared fixtures: a small hand-made JSONL data directory, record builders and a fresh cache.

Every test gets its own ``ROUTELIB_CACHE_DIR`` (autouse), so nothing is written to the
repository's ``data_cache/``. ``ROUTELIB_DATA_DIR`` is left alone unless a test asks for
``use_data_dir`` (tests that need it unset delete it themselves).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test`: one worker per core, one thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest

from routelib import data

# the defaults of one record per kind; ``record_dict(kind, **overrides)`` starts from these
_KINDS = {
    "math": dict(dataset="gsm8k", type="free_form", domain="math",
                 question="Tom has 9 apples and buys 9 more. How many apples does he have?",
                 answer="18", answer_text="18"),
    "mcq": dict(dataset="commonsenseqa", type="mcq", domain="commonsense",
                question="Where do you borrow books?",
                choices=["bank", "library", "department store", "mall", "new york"],
                answer=1, answer_text="library"),
    "true_false": dict(dataset="boolq", type="true_false", domain="commonsense",
                       question="is the sky blue", context="The sky is blue on a clear day.",
                       answer=True, answer_text="true"),
    "coqa": dict(dataset="coqa", type="free_form", domain="conversational",
                 question="what is the cat called?",
                 context="Tom has a cat called Felix. Felix likes fish.",
                 answer="Felix", answer_text="Felix", aliases=["felix the cat"]),
}


def _record_dict(kind: str = "math", **overrides) -> dict:
    d = {"id": f"{kind}-1", "context": None, "choices": None, "aliases": [], "subject": None}
    d.update(_KINDS[kind])
    d.update(overrides)
    if d["type"] == "mcq" and "answer_text" not in overrides and isinstance(d["answer"], int) \
            and 0 <= d["answer"] < len(d["choices"]):
        d["answer_text"] = d["choices"][d["answer"]]
    if d["type"] == "true_false" and "answer_text" not in overrides:
        d["answer_text"] = "true" if d["answer"] else "false"
    return d


@pytest.fixture
def record_dict():
    """``record_dict(kind="math"|"mcq"|"true_false"|"coqa", **overrides) -> dict`` (schema)."""
    return _record_dict


@pytest.fixture
def make_record():
    """``make_record(kind=..., **overrides) -> data.Record``, validated by record_from_dict."""
    return lambda kind="math", **overrides: data.record_from_dict(_record_dict(kind, **overrides))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---- contents of the hand-made data directory ----------------------------------------------
GSM8K_TEST_ANSWERS = ["18", "3", "42", "42", "7"]   # the fake backend answers 42 by default
CSQA_CHOICES = [
    ["bank", "library", "department store", "mall", "new york"],
    ["sky", "ocean", "desert", "forest", "city"],
    ["run", "sleep", "eat", "swim", "fly"],
    ["red", "green", "blue", "yellow", "black"],
    ["cat", "dog", "fish", "bird", "horse"],
    ["spoon", "fork", "knife", "plate", "cup"],
]
CSQA_ANSWERS = [1, 3, 0, 2, 4, 1]
BOOLQ = [  # (question, passage, answer)
    ("is the sky blue", "The sky is blue on a clear day.", True),
    ("is water dry?", "Water is a liquid and it is wet.", False),
    ("can penguins fly", "Penguins are birds that cannot fly.", False),
    ("is paris in france?", "Paris is the capital of France.", True),
]
# CoQA: story -> number of turns; with seed 50, storyF falls in the carved "train" part and
# storyA / storyB in "eval" (sha256("50:coqa-storyX") checked by hand)
COQA_STORIES = {"storyA": 3, "storyB": 2, "storyF": 3}
PIQA_N = 20
# sha256("50:piqa-validation-NNNN") < 0.3 * 2**64 for exactly these indices
PIQA_TRAIN_IDX = [4, 11, 13, 14, 17]


def gsm8k_rows(split: str, answers: list[str]) -> list[dict]:
    return [_record_dict("math", id=f"gsm8k-{split}-{i}", question=f"gsm8k {split} question {i}?",
                         answer=a, answer_text=a) for i, a in enumerate(answers)]


def csqa_rows() -> list[dict]:
    return [_record_dict("mcq", id=f"commonsenseqa-validation-{i}", question=f"csqa question {i}?",
                         choices=c, answer=a) for i, (c, a) in enumerate(zip(CSQA_CHOICES,
                                                                            CSQA_ANSWERS))]


def boolq_rows() -> list[dict]:
    return [_record_dict("true_false", id=f"boolq-validation-{i}", question=q, context=p, answer=a)
            for i, (q, p, a) in enumerate(BOOLQ)]


def coqa_rows() -> list[dict]:
    rows = []
    for story, n in COQA_STORIES.items():
        text = f"This is {story}."
        context = text
        for t in range(1, n + 1):
            q, a = f"{story} question {t}?", f"answer {t} of {story}"
            rows.append(_record_dict("coqa", id=f"coqa-{story}-{t}", question=q, context=context,
                                     answer=a, answer_text=a, aliases=[]))
            context = (f"{text}\n\nQ: {q}\nA: {a}" if t == 1 else f"{context}\nQ: {q}\nA: {a}")
    return rows


def piqa_rows() -> list[dict]:
    rows = []
    for i in range(PIQA_N):
        choices = [f"solution {i} one", f"solution {i} two"]
        rows.append(_record_dict("mcq", dataset="piqa", id=f"piqa-validation-{i:04d}",
                                 question=f"piqa goal {i}?", choices=choices, answer=i % 2))
    return rows


def build_data_dir(root: Path) -> Path:
    write_jsonl(root / "gsm8k" / "test.jsonl", gsm8k_rows("test", GSM8K_TEST_ANSWERS))
    write_jsonl(root / "gsm8k" / "train.jsonl", gsm8k_rows("train", ["1", "2", "3"]))
    write_jsonl(root / "commonsenseqa" / "validation.jsonl", csqa_rows())
    write_jsonl(root / "boolq" / "validation.jsonl", boolq_rows())
    write_jsonl(root / "coqa" / "test.jsonl", coqa_rows())
    write_jsonl(root / "piqa" / "validation.jsonl", piqa_rows())
    return root


@pytest.fixture(name="write_jsonl")
def write_jsonl_fixture():
    """``write_jsonl(path, rows) -> path``: one JSON object per line, parents created."""
    return write_jsonl


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """A small data directory: gsm8k test(5)/train(3), commonsenseqa validation(6), boolq
    validation(4), coqa test (8 turns of 3 stories), piqa validation(20)."""
    return build_data_dir(tmp_path / "datasets")


@pytest.fixture
def use_data_dir(data_dir, monkeypatch) -> Path:
    monkeypatch.setenv("ROUTELIB_DATA_DIR", str(data_dir))
    return data_dir


@pytest.fixture(autouse=True)
def fresh_cache_dir(tmp_path_factory, monkeypatch) -> Path:
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("ROUTELIB_CACHE_DIR", str(path))
    return path


class _LocksHeld:
    """Another process holding ``flock`` on every ``paths`` (as a long job filling those cache
    folders would) until the block ends; ``still_held()``: that process has not exited."""

    def __init__(self, paths):
        import subprocess
        import sys
        self.paths = [str(p) for p in paths]
        assert self.paths, "no lock files to hold"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import fcntl, sys, time\n"
             "fhs = [open(p, 'a') for p in sys.argv[1:]]\n"
             "[fcntl.flock(f, fcntl.LOCK_EX) for f in fhs]\n"
             "print('held', flush=True); time.sleep(60)", *self.paths],
            stdout=subprocess.PIPE, text=True)

    def __enter__(self):
        assert self.proc.stdout.readline().strip() == "held"
        return self

    def still_held(self) -> bool:
        return self.proc.poll() is None

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def locks_held_elsewhere():
    """``with locks_held_elsewhere(paths) as held: ...`` (:class:`_LocksHeld`)."""
    return _LocksHeld
