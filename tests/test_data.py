"""routelib.data: loading local JSONL splits, logical splits, the carved holdout, subsampling,
validation errors and configuration errors (hand-made files from conftest's ``data_dir``)."""
from __future__ import annotations

import hashlib
import json
import os
import random
import re

import pytest

from routelib import data
from routelib.config import ConfigError
from routelib.data import DataError

# captured before the autouse fixtures run: the real dataset directory (the Makefile sets it)
REAL_DATA_DIR = os.environ.get("ROUTELIB_DATA_DIR")

ALL_14 = ["gsm8k", "aqua", "multiarith", "svamp", "boolq", "commonsenseqa", "hellaswag",
          "openbookqa", "piqa", "siqa", "truthfulqa", "winogrande", "coqa", "mmlu"]
PIQA_TRAIN = [f"piqa-validation-{i:04d}" for i in (4, 11, 13, 14, 17)]
PIQA_EVAL = [f"piqa-validation-{i:04d}" for i in range(20) if i not in (4, 11, 13, 14, 17)]


def ids(records):
    return [r.id for r in records]


def docstring_rule_in_train(group: str) -> bool:
    """The module docstring's rule, written out independently of data.in_holdout."""
    digest = hashlib.sha256(f"50:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < 0.3 * 2**64


# ------------------------------------------------------------------------- physical splits


def test_load_physical_split_builds_records(data_dir):
    recs = data.load("gsm8k", "train", data_dir=data_dir)
    assert ids(recs) == ["gsm8k-train-0", "gsm8k-train-1", "gsm8k-train-2"]
    assert recs[1] == data.Record(
        id="gsm8k-train-1", dataset="gsm8k", type="free_form", domain="math",
        question="gsm8k train question 1?", context=None, choices=None, answer="2",
        answer_text="2", aliases=(), subject=None)


def test_load_mcq_record_keeps_choices_as_tuple(data_dir):
    rec = data.load("commonsenseqa", "validation", data_dir=data_dir)[3]
    assert rec.choices == ("red", "green", "blue", "yellow", "black")
    assert (rec.answer, rec.answer_text) == (2, "blue")
    assert rec.to_dict()["choices"] == ["red", "green", "blue", "yellow", "black"]


def test_load_reads_data_dir_from_environment(use_data_dir):
    recs = data.load("boolq", "validation")
    assert [(r.question, r.answer) for r in recs] == [
        ("is the sky blue", True), ("is water dry?", False), ("can penguins fly", False),
        ("is paris in france?", True)]
    assert recs[1].context == "Water is a liquid and it is wet."


def test_explicit_data_dir_wins_over_environment(data_dir, tmp_path, monkeypatch, write_jsonl):
    other = tmp_path / "other"
    write_jsonl(other / "gsm8k" / "train.jsonl",
                [json.loads(line) for line in
                 (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:1]])
    monkeypatch.setenv("ROUTELIB_DATA_DIR", str(data_dir))
    assert len(data.load("gsm8k", "train")) == 3
    assert len(data.load("gsm8k", "train", data_dir=other)) == 1


# ------------------------------------------------------------------------- logical splits


def test_eval_and_train_of_a_dataset_with_a_train_split_are_its_files(data_dir):
    ev = data.load("gsm8k", "eval", data_dir=data_dir)
    # no carving: gsm8k-test-2..4 would fall in the holdout, but gsm8k ships a train split
    assert ids(ev) == [f"gsm8k-test-{i}" for i in range(5)]
    assert ids(ev) == ids(data.load("gsm8k", "test", data_dir=data_dir))
    assert ids(data.load("gsm8k", "train", data_dir=data_dir)) == [
        "gsm8k-train-0", "gsm8k-train-1", "gsm8k-train-2"]


def test_train_of_boolq_is_the_train_nopassage_file(data_dir):
    with pytest.raises(DataError, match=re.escape(str(data_dir / "boolq" / "train_nopassage.jsonl"))
                       + r" does not exist \(dataset 'boolq', split 'train_nopassage'\)"):
        data.load("boolq", "train", data_dir=data_dir)


def test_eval_only_dataset_is_carved_by_id(data_dir):
    ev = data.load("piqa", "eval", data_dir=data_dir)
    tr = data.load("piqa", "train", data_dir=data_dir)
    assert ids(tr) == PIQA_TRAIN
    assert ids(ev) == PIQA_EVAL
    # disjoint, and together exactly the file
    assert not set(ids(ev)) & set(ids(tr))
    full = data.load("piqa", "validation", data_dir=data_dir)
    assert sorted(ids(ev) + ids(tr)) == ids(full)
    assert len(full) == 20
    # the docstring's sha256 rule, computed here independently
    assert ids(tr) == [r.id for r in full if docstring_rule_in_train(r.id)]


def test_carved_partition_depends_only_on_the_id(data_dir, tmp_path):
    lines = (data_dir / "piqa" / "validation.jsonl").read_text().splitlines(keepends=True)
    random.Random(1).shuffle(lines)
    shuffled = tmp_path / "shuffled"
    (shuffled / "piqa").mkdir(parents=True)
    (shuffled / "piqa" / "validation.jsonl").write_text("".join(lines))
    ev = data.load("piqa", "eval", data_dir=shuffled)
    tr = data.load("piqa", "train", data_dir=shuffled)
    assert ids(ev) != PIQA_EVAL  # really shuffled: returned in the copy's file order
    assert sorted(ids(ev)) == PIQA_EVAL
    assert sorted(ids(tr)) == PIQA_TRAIN
    # a subset (the first 12 lines of the original) keeps every item on its side
    subset = tmp_path / "subset"
    (subset / "piqa").mkdir(parents=True)
    (subset / "piqa" / "validation.jsonl").write_text(
        "".join((data_dir / "piqa" / "validation.jsonl").read_text().splitlines(True)[:12]))
    assert ids(data.load("piqa", "train", data_dir=subset)) == [
        "piqa-validation-0004", "piqa-validation-0011"]


def test_coqa_holdout_keeps_each_story_on_one_side(data_dir):
    ev = data.load("coqa", "eval", data_dir=data_dir)
    tr = data.load("coqa", "train", data_dir=data_dir)
    assert ids(tr) == ["coqa-storyF-1", "coqa-storyF-2", "coqa-storyF-3"]
    assert ids(ev) == ["coqa-storyA-1", "coqa-storyA-2", "coqa-storyA-3",
                       "coqa-storyB-1", "coqa-storyB-2"]
    assert {data.holdout_group(r) for r in tr} == {"coqa-storyF"}
    assert {data.holdout_group(r) for r in ev} == {"coqa-storyA", "coqa-storyB"}
    # by item id alone, the turns of storyA would be split across the two parts
    assert [docstring_rule_in_train(f"coqa-storyA-{t}") for t in (1, 2, 3)] == [True, True, False]


def test_has_train_split_and_physical_splits():
    assert data.has_train_split("gsm8k") and data.has_train_split("mmlu")
    assert not data.has_train_split("piqa") and not data.has_train_split("coqa")
    assert data.physical_splits("boolq") == ("validation", "train_nopassage")
    assert data.physical_splits("winogrande") == ("validation",)


# ------------------------------------------------------------------------- subsampling


def test_limit_is_deterministic_in_file_order_and_nested(data_dir):
    # random.Random(50).shuffle(range(5)) == [4, 0, 1, 2, 3]
    three = data.load("gsm8k", "eval", limit=3, data_dir=data_dir)
    assert ids(three) == ["gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-4"]
    assert ids(data.load("gsm8k", "eval", limit=3, data_dir=data_dir)) == ids(three)
    two = data.load("gsm8k", "eval", limit=2, data_dir=data_dir)
    assert ids(two) == ["gsm8k-test-0", "gsm8k-test-4"]
    four = data.load("gsm8k", "eval", limit=4, data_dir=data_dir)
    assert set(ids(two)) < set(ids(three)) < set(ids(four))


def test_limit_applies_after_carving(data_dir):
    # the 15 eval items, permuted by Random(50): the first three positions are 9, 6, 8 ->
    # eval items #6, #8, #9 = piqa ids 7, 9, 10
    assert ids(data.load("piqa", "eval", limit=3, data_dir=data_dir)) == [
        "piqa-validation-0007", "piqa-validation-0009", "piqa-validation-0010"]


@pytest.mark.parametrize("limit", [5, 6, 1000, None])
def test_limit_at_or_above_size_returns_everything(data_dir, limit):
    assert ids(data.load("gsm8k", "eval", limit=limit, data_dir=data_dir)) == [
        f"gsm8k-test-{i}" for i in range(5)]


def test_limit_zero_returns_nothing(data_dir):
    assert data.load("gsm8k", "eval", limit=0, data_dir=data_dir) == []


def test_negative_limit_raises(data_dir):
    with pytest.raises(DataError, match="limit must be >= 0, got -1"):
        data.load("gsm8k", "eval", limit=-1, data_dir=data_dir)


def test_another_seed_gives_another_subset(data_dir):
    # random.Random(2).shuffle(range(5)) == [2, 1, 3, 4, 0]
    assert ids(data.load("gsm8k", "eval", limit=2, seed=2, data_dir=data_dir)) == [
        "gsm8k-test-1", "gsm8k-test-2"]


# ------------------------------------------------------------------------- unknown names


def test_unknown_dataset_lists_known_ones(data_dir):
    with pytest.raises(DataError, match="dataset 'nope' is not known; known: "
                       + ", ".join(ALL_14) + "$"):
        data.load("nope", data_dir=data_dir)


@pytest.mark.parametrize("name, known", [
    ("mmlu", "eval, train, test, dev"),
    ("piqa", "eval, train, validation"),
    ("boolq", "eval, train, validation, train_nopassage"),
])
def test_unknown_split_lists_known_ones(data_dir, name, known):
    with pytest.raises(DataError, match=f"split 'dev2' of dataset '{name}' is not known; "
                                        f"known: {known}$"):
        data.load(name, "dev2", data_dir=data_dir)


def test_unknown_source_lists_known_ones(data_dir):
    with pytest.raises(DataError, match="source 'web' is not known; known: local, hub"):
        data.load("gsm8k", "eval", source="web", data_dir=data_dir)


def test_missing_file_names_path(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "mmlu" / "test.jsonl"))
                       + ".*check ROUTELIB_DATA_DIR"):
        data.load("mmlu", data_dir=tmp_path)


# ------------------------------------------------------------------------- malformed files


def _bad_file(tmp_path, write_jsonl, record_dict, bad_line: str):
    """gsm8k/test.jsonl with a good line 1, a blank line 2, and ``bad_line`` as line 3."""
    path = write_jsonl(tmp_path / "bad" / "gsm8k" / "test.jsonl", [record_dict("math")])
    path.write_text(path.read_text() + "\n" + bad_line + "\n")
    return path


@pytest.mark.parametrize("make_bad, message", [
    (lambda rd: '{"id": "x", ', r"not valid JSON"),
    (lambda rd: json.dumps([1, 2]), r"expected a JSON object, got list"),
    (lambda rd: json.dumps({k: v for k, v in rd("math").items() if k != "answer_text"}),
     re.escape("missing key(s) ['answer_text']")),
    (lambda rd: json.dumps(rd("mcq", dataset="gsm8k", type="mcq", domain="math")),
     re.escape("type/domain 'mcq'/'math' do not match gsm8k's 'free_form'/'math'")),
    (lambda rd: json.dumps(rd("math", dataset="gsmk8")), "dataset 'gsmk8' is not known"),
    (lambda rd: json.dumps(rd("mcq", answer=5, answer_text="x")),
     re.escape("mcq answer 5 is not an index into 5 choices")),
    (lambda rd: json.dumps(rd("mcq", answer=True, answer_text="library")),
     re.escape("mcq answer True is not an index into 5 choices")),
    (lambda rd: json.dumps(rd("mcq", answer_text="bank")), "answer_text differs from choices"),
    (lambda rd: json.dumps(rd("true_false", answer="yes")),
     re.escape("true_false answer 'yes' is not a bool")),
    (lambda rd: json.dumps(rd("math", answer="  ")), "free_form answer '  ' is not a non-empty"),
    (lambda rd: json.dumps(rd("math", question=" ")), "empty question"),
    (lambda rd: json.dumps(rd("math", aliases="18")), "aliases must be a list of strings"),
])
def test_malformed_line_names_file_and_line(tmp_path, write_jsonl, record_dict, make_bad,
                                            message):
    path = _bad_file(tmp_path, write_jsonl, record_dict, make_bad(record_dict))
    with pytest.raises(DataError, match=re.escape(f"{path}:3: ") + message):
        data.load("gsm8k", "test", data_dir=tmp_path / "bad")


def test_duplicate_id_in_a_file_raises(tmp_path, write_jsonl, record_dict):
    path = write_jsonl(tmp_path / "gsm8k" / "test.jsonl",
                       [record_dict("math", id="g-1"), record_dict("math", id="g-1")])
    with pytest.raises(DataError, match=re.escape(f"{path}:2")):
        data.load("gsm8k", data_dir=tmp_path)


# ------------------------------------------------------------------------- configuration


def test_unset_data_dir_raises_config_error(monkeypatch):
    monkeypatch.delenv("ROUTELIB_DATA_DIR", raising=False)
    with pytest.raises(ConfigError, match=r"ROUTELIB_DATA_DIR is not set: point it at a "
                                          r"directory of <dataset>/<split>\.jsonl files.*"
                                          r"source='hub'"):
        data.load("gsm8k")


def test_data_dir_that_is_not_a_directory_raises(monkeypatch, tmp_path):
    monkeypatch.setenv("ROUTELIB_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="is not a directory"):
        data.load("gsm8k")


def test_cache_dir_is_per_test(fresh_cache_dir):
    from routelib import config
    assert config.cache_dir() == fresh_cache_dir
    assert os.environ["ROUTELIB_CACHE_DIR"] == str(fresh_cache_dir)


# ------------------------------------------------------------------------- iter_datasets


def test_iter_datasets():
    assert data.iter_datasets("all") == ALL_14
    assert data.iter_datasets(None) == ALL_14
    assert data.iter_datasets(["all"]) == ALL_14
    assert data.iter_datasets("gsm8k") == ["gsm8k"]
    assert data.iter_datasets(["coqa", "gsm8k"]) == ["coqa", "gsm8k"]
    with pytest.raises(DataError, match="dataset 'nope' is not known; known: gsm8k, aqua"):
        data.iter_datasets(["gsm8k", "nope"])


def test_iter_datasets_accepts_a_generator():
    assert data.iter_datasets(n for n in ["gsm8k", "piqa"]) == ["gsm8k", "piqa"]


# ------------------------------------------------------------------------- the real data

REAL_EVAL_SIZES = {"gsm8k": 1319, "aqua": 254, "svamp": 300, "boolq": 3270,
                   "commonsenseqa": 1221, "openbookqa": 500, "mmlu": 14042}
REAL_FILE_SIZES = {"multiarith": 600, "hellaswag": 1000, "piqa": 1838, "siqa": 1954,
                   "truthfulqa": 817, "winogrande": 1267, "coqa": 7735}


@pytest.mark.skipif(not REAL_DATA_DIR, reason="ROUTELIB_DATA_DIR is not set")
def test_real_datasets_have_the_known_sizes():
    assert set(REAL_EVAL_SIZES) | set(REAL_FILE_SIZES) == set(ALL_14)
    for name in ALL_14:
        ev = data.load(name, "eval", data_dir=REAL_DATA_DIR)
        assert len({r.id for r in ev}) == len(ev), name
        if name in REAL_EVAL_SIZES:
            assert len(ev) == REAL_EVAL_SIZES[name], name
        else:
            tr = data.load(name, "train", data_dir=REAL_DATA_DIR)
            assert not {r.id for r in ev} & {r.id for r in tr}, name
            assert len(ev) + len(tr) == REAL_FILE_SIZES[name], name
            assert 0.2 < len(tr) / REAL_FILE_SIZES[name] < 0.4, name
