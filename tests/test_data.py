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


BAD_FILES = {"math": ("gsm8k", "test"), "mcq": ("commonsenseqa", "validation"),
             "true_false": ("boolq", "validation")}


def _bad_file(tmp_path, write_jsonl, record_dict, bad_line: str, kind: str = "math"):
    """<dataset>/<split>.jsonl of a ``kind`` record with a good line 1, a blank line 2, and
    ``bad_line`` as line 3."""
    name, split = BAD_FILES[kind]
    path = write_jsonl(tmp_path / "bad" / name / f"{split}.jsonl", [record_dict(kind)])
    path.write_text(path.read_text() + "\n" + bad_line + "\n")
    return path


@pytest.mark.parametrize("kind, make_bad, message", [
    ("math", lambda rd: '{"id": "x", ', r"not valid JSON \(Expecting property name"),
    ("math", lambda rd: json.dumps([1, 2]), r"expected a JSON object, got list"),
    ("math", lambda rd: json.dumps({k: v for k, v in rd("math").items() if k != "answer_text"}),
     re.escape("missing key(s) ['answer_text']")),
    ("math", lambda rd: json.dumps(rd("mcq", dataset="gsm8k", type="mcq", domain="math")),
     re.escape("type/domain 'mcq'/'math' do not match gsm8k's 'free_form'/'math'")),
    ("math", lambda rd: json.dumps(rd("math", dataset="gsmk8")),
     re.escape("dataset 'gsmk8' is not 'gsm8k', the dataset this file belongs to")),
    # at 9020538 a gsm8k file could hold records of another dataset; now refused
    ("math", lambda rd: json.dumps(rd("mcq")),
     re.escape("dataset 'commonsenseqa' is not 'gsm8k', the dataset this file belongs to")),
    ("mcq", lambda rd: json.dumps(rd("mcq", answer=5, answer_text="x")),
     re.escape("mcq answer 5 is not an index into 5 choices")),
    ("mcq", lambda rd: json.dumps(rd("mcq", answer=True, answer_text="library")),
     re.escape("mcq answer True is not an index into 5 choices")),
    ("mcq", lambda rd: json.dumps(rd("mcq", answer_text="bank")),
     "answer_text differs from choices"),
    ("true_false", lambda rd: json.dumps(rd("true_false", answer="yes")),
     re.escape("true_false answer 'yes' is not a bool")),
    ("math", lambda rd: json.dumps(rd("math", answer="  ")),
     "free_form answer '  ' is not a non-empty"),
    ("math", lambda rd: json.dumps(rd("math", question=" ")), "empty question"),
    ("math", lambda rd: json.dumps(rd("math", aliases="18")), "aliases must be a list of strings"),
])
def test_malformed_line_names_file_and_line(tmp_path, write_jsonl, record_dict, kind, make_bad,
                                            message):
    path = _bad_file(tmp_path, write_jsonl, record_dict, make_bad(record_dict), kind)
    name, split = BAD_FILES[kind]
    with pytest.raises(DataError, match="^" + re.escape(f"{path}:3: ") + message) as err:
        data.load(name, split, data_dir=tmp_path / "bad")
    assert "\n" not in str(err.value)


def test_a_paper_record_may_omit_dataset_type_and_domain(tmp_path, write_jsonl, record_dict):
    row = {k: v for k, v in record_dict("math").items() if k not in ("dataset", "type", "domain")}
    write_jsonl(tmp_path / "gsm8k" / "test.jsonl", [row])
    [rec] = data.load("gsm8k", "test", data_dir=tmp_path)
    assert (rec.dataset, rec.type, rec.domain) == ("gsm8k", "free_form", "math")
    assert rec == data.record_from_dict(record_dict("math"))


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


# Recorded from commit 9020538 (before the open dataset registry), with ROUTELIB_DATA_DIR at
# ../shared/datasets: per dataset and logical split, (len, ids, records) of load(limit=200) and
# (len, ids) of the whole split; ids = sha256 of the item ids joined by "\n", records = sha256 of
# the records' to_dict() as sorted-key JSON joined by "\n", each cut to 16 hex digits.
RECORDED_9020538 = {
    ('gsm8k', 'eval'): (200, '39c3974a1e84b118', '6289d538a84c526f', 1319, '3bbae59bd77f9e45'),
    ('gsm8k', 'train'): (200, 'f68edcdc4f117db1', 'bc9a7038a73da8f1', 2000, '53ad44a581a45615'),
    ('aqua', 'eval'): (200, 'f4e890225573f97b', 'eca23e369fb76fdd', 254, 'f1f275c93938ec64'),
    ('aqua', 'train'): (200, '5ab1a8ad6f64fa20', '903fb47d65e31be9', 254, 'baa6d8feb25ca152'),
    ('multiarith', 'eval'): (200, '0dd82bb5617256ff', '89be4da4c7f60359', 407, '8cb10b85685be38b'),
    ('multiarith', 'train'): (193, '1717675de870dbe0', '2677ef7614a14868', 193, '1717675de870dbe0'),
    ('svamp', 'eval'): (200, '5f0159f4a1522345', '92608f35597aeb53', 300, '1e8b4233e2979a67'),
    ('svamp', 'train'): (200, '96c6d6b36ef4b27e', 'da5276dfcf92aa65', 700, '249027a9bd866982'),
    ('boolq', 'eval'): (200, '503298d545fbe86c', '60c99b73cded2ad4', 3270, '531155c1b3b50741'),
    ('boolq', 'train'): (200, '78acbba352cdf6a6', 'de87f953a26f6df8', 2000, '550a7c0dc4327011'),
    ('commonsenseqa', 'eval'): (200, 'a8098d000cbca2e5', '91a5e2de81edae44', 1221, '4c232dfa556ace05'),
    ('commonsenseqa', 'train'): (200, '4a336b0c357ad6e5', 'ef8b51d0b0c442a6', 2000, '7e84c97c373a60ce'),
    ('hellaswag', 'eval'): (200, '3cee908abcc27f70', '740a31c93e585cad', 708, '431ae530b958b0e5'),
    ('hellaswag', 'train'): (200, '3c532a548831f331', '9adc6767e22b7ce0', 292, '04b791b431fa14da'),
    ('openbookqa', 'eval'): (200, '0314c66bfbfe50a1', '248093385bb79594', 500, '68876e540d40429b'),
    ('openbookqa', 'train'): (200, '9d5d90e5fdd18be9', 'e3b3e364a78504ae', 2000, '5c20aabf4a8aeafc'),
    ('piqa', 'eval'): (200, '58e33afa351909c8', '37e0a6d9bee51e42', 1296, '554437495d012957'),
    ('piqa', 'train'): (200, '4a3cb5dee0b06591', 'dd77343f3db891de', 542, 'c561e4230db78c33'),
    ('siqa', 'eval'): (200, 'cf04c21af6b3e93a', '42d51d6082a05775', 1357, 'e4f46ec2756aa692'),
    ('siqa', 'train'): (200, 'b4b00b7dce1fa644', '1639610e21b418f6', 597, 'da0f619c0c32813d'),
    ('truthfulqa', 'eval'): (200, '5516a9e3319dfe94', '100268025545c4c4', 588, '49d9dd8cd9381c9e'),
    ('truthfulqa', 'train'): (200, '8958876ccc41ed0b', '164c9910da6c4992', 229, '59582269ba5fc4ce'),
    ('winogrande', 'eval'): (200, 'add12bf56d99812c', '6ebee6f8b21f0be4', 867, '0c4897c12b079fa0'),
    ('winogrande', 'train'): (200, 'b36ac4df9593f3a1', '76dfb4119c6e82fd', 400, '6044b565e759b211'),
    ('coqa', 'eval'): (200, '0cf2ba1dd31b542e', '1bef64762b259760', 5504, '91928b0c9244c2d6'),
    ('coqa', 'train'): (200, '822966b2117db82e', 'd7642d90be701e69', 2231, '8519b2cd5c909a7e'),
    ('mmlu', 'eval'): (200, 'c09b809c744e054d', 'd1cfa4c435b2f7e5', 14042, 'ae2b513e11aca1cf'),
    ('mmlu', 'train'): (200, '3f522a6f6c52c3a9', '008ea4be289f3dfc', 285, '563335d2402a2b44'),
}
# data.DATASETS at commit 9020538: (type, domain, eval_split, train_split, note, group_by_story)
SPECS_9020538 = {
    "gsm8k": ("free_form", "math", "test", "train", "", False),
    "aqua": ("mcq", "math", "test", "validation", "", False),
    "multiarith": ("free_form", "math", "test", None, "", False),
    "svamp": ("free_form", "math", "test", "train", "", False),
    "boolq": ("true_false", "commonsense", "validation", "train_nopassage",
              "the local train split has no passages", False),
    "commonsenseqa": ("mcq", "commonsense", "validation", "train", "", False),
    "hellaswag": ("mcq", "commonsense", "validation", None, "", False),
    "openbookqa": ("mcq", "commonsense", "test", "train", "", False),
    "piqa": ("mcq", "commonsense", "validation", None, "", False),
    "siqa": ("mcq", "commonsense", "validation", None, "", False),
    "truthfulqa": ("mcq", "commonsense", "validation", None, "", False),
    "winogrande": ("mcq", "commonsense", "validation", None, "", False),
    "coqa": ("free_form", "conversational", "test", None, "", True),
    "mmlu": ("mcq", "problem_solving", "test", "dev", "", False),
}


def _digest(records, body: bool = False) -> str:
    text = "\n".join(json.dumps(r.to_dict(), sort_keys=True) if body else r.id for r in records)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_paper_specs_are_those_of_9020538():
    assert list(data.DATASETS) == list(SPECS_9020538) == list(data.PAPER_DATASETS) == ALL_14
    for name, s in data.DATASETS.items():
        assert (s.type, s.domain, s.eval_split, s.train_split, s.note, s.group_by_story) == \
            SPECS_9020538[name], name
        assert s.name == name and s.origin.endswith("paper_datasets.yaml")


@pytest.mark.skipif(not REAL_DATA_DIR, reason="ROUTELIB_DATA_DIR is not set")
@pytest.mark.parametrize("name", ALL_14)
def test_paper_datasets_load_as_at_9020538(name, monkeypatch):
    monkeypatch.setenv("ROUTELIB_DATA_DIR", REAL_DATA_DIR)
    monkeypatch.delenv("ROUTELIB_DATA_PATH", raising=False)
    for split in ("eval", "train"):
        sub, full = data.load(name, split, limit=200), data.load(name, split)
        got = (len(sub), _digest(sub), _digest(sub, body=True), len(full), _digest(full))
        assert got == RECORDED_9020538[(name, split)], (name, split)
