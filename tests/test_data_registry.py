"""The open dataset registry: dataset folders (dataset.yaml + <split>.jsonl) under the data roots,
root precedence, and one-line errors naming file and line (docs/datasets.md)."""
from __future__ import annotations

import json
import re

import pytest

from routelib import data
from routelib.config import ConfigError
from routelib.data import DataError

ALL_14 = ["gsm8k", "aqua", "multiarith", "svamp", "boolq", "commonsenseqa", "hellaswag",
          "openbookqa", "piqa", "siqa", "truthfulqa", "winogrande", "coqa", "mmlu"]
MED_IDS = [f"med-{i:03d}" for i in range(12)]
# sha256("50:med-NNN") < 0.3 * 2**64 for exactly these (the carve-out rule, computed by hand)
MED_TRAIN = ["med-005", "med-009", "med-011"]
MED_EVAL = [i for i in MED_IDS if i not in MED_TRAIN]
MED_YAML = """\
type: mcq
domain: medical
eval_split: test
note: twelve hand-made questions
"""


@pytest.fixture(autouse=True)
def no_roots(monkeypatch):
    """Each test states its roots: neither variable leaks in from the environment."""
    monkeypatch.delenv("ROUTELIB_DATA_DIR", raising=False)
    monkeypatch.delenv("ROUTELIB_DATA_PATH", raising=False)


def med_rows(n: int = 12, tag: str = "") -> list[dict]:
    """``n`` mcq records; every third omits ``dataset``, every fourth ``type`` and ``domain``."""
    rows = []
    for i in range(n):
        choices = [f"option {i} a{tag}", f"option {i} b", f"option {i} c"]
        row = {"id": f"med-{i:03d}", "dataset": "med", "type": "mcq", "domain": "medical",
               "question": f"medical question {i}?{tag}", "context": None, "choices": choices,
               "answer": i % 3, "answer_text": choices[i % 3], "aliases": [], "subject": None}
        if i % 3 == 0:
            del row["dataset"]
        if i % 4 == 0:
            del row["type"], row["domain"]
        rows.append(row)
    return rows


def make_dataset(root, name="med", yaml_text=MED_YAML, splits=None):
    """``<root>/<name>/dataset.yaml`` and ``<split>.jsonl`` files; returns the folder."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.yaml").write_text(yaml_text, encoding="utf-8")
    for split, rows in (splits if splits is not None else {"test": med_rows()}).items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows),
                                               encoding="utf-8")
    return folder


def ids(records):
    return [r.id for r in records]


# ------------------------------------------------------------------------- a dataset folder


def test_a_dataset_folder_loads_with_fields_from_its_yaml(tmp_path, monkeypatch):
    folder = make_dataset(tmp_path / "mine")
    monkeypatch.setenv("ROUTELIB_DATA_PATH", str(tmp_path / "mine"))
    full = data.load("med", "test")
    assert ids(full) == MED_IDS
    assert {(r.dataset, r.type, r.domain) for r in full} == {("med", "mcq", "medical")}
    assert full[4] == data.Record("med-004", "med", "mcq", "medical", "medical question 4?", None,
                                  ("option 4 a", "option 4 b", "option 4 c"), 1, "option 4 b")
    s = data.spec("med")
    assert (s.name, s.type, s.domain, s.eval_split, s.train_split) == (
        "med", "mcq", "medical", "test", None)
    assert s.folder == folder and s.origin == str(folder / "dataset.yaml")
    assert s.note == "twelve hand-made questions"
    assert not data.has_train_split("med")
    assert data.physical_splits("med") == ("test",)


def test_a_dataset_without_train_split_gets_the_carve_out(tmp_path):
    ev = data.load("med", "eval", data_dir=make_dataset(tmp_path).parent)
    tr = data.load("med", "train", data_dir=tmp_path)
    assert ids(tr) == MED_TRAIN and ids(ev) == MED_EVAL


def test_a_dataset_folder_subsamples_deterministically(tmp_path):
    make_dataset(tmp_path)
    # random.Random(50).shuffle(range(9)) == [6, 0, 8, 3, 1, 5, 2, 4, 7]
    three = data.load("med", "eval", limit=3, data_dir=tmp_path)
    assert ids(three) == ["med-000", "med-007", "med-010"]
    assert ids(data.load("med", "eval", limit=3, data_dir=tmp_path)) == ids(three)
    assert ids(data.load("med", "eval", limit=2, data_dir=tmp_path)) == ["med-000", "med-007"]


def test_a_dataset_with_a_train_split_reads_its_file(tmp_path):
    yaml_text = MED_YAML + "train_split: dev\n"
    make_dataset(tmp_path, yaml_text=yaml_text,
                 splits={"test": med_rows(), "dev": med_rows(2, tag=" (dev)")})
    assert ids(data.load("med", "eval", data_dir=tmp_path)) == MED_IDS
    assert [r.question for r in data.load("med", "train", data_dir=tmp_path)] == [
        "medical question 0? (dev)", "medical question 1? (dev)"]
    assert data.spec("med", tmp_path).train_split == "dev"


def test_a_folder_dataset_is_listed_after_the_paper_ones(tmp_path, monkeypatch, data_dir):
    make_dataset(tmp_path / "mine")
    make_dataset(tmp_path / "mine", "alpha")
    monkeypatch.setenv("ROUTELIB_DATA_DIR", str(data_dir))
    monkeypatch.setenv("ROUTELIB_DATA_PATH", str(tmp_path / "mine"))
    assert data.iter_datasets() == ALL_14 + ["alpha", "med"]
    assert data.iter_datasets("all") == ALL_14 + ["alpha", "med"]
    assert data.iter_datasets(["med", "gsm8k"]) == ["med", "gsm8k"]
    reg = data.registry()
    assert list(reg) == ALL_14 + ["alpha", "med"] and reg["med"].domain == "medical"
    assert reg.roots == (data_dir, tmp_path / "mine")
    assert reg["gsm8k"].folder == data_dir / "gsm8k" and reg["aqua"].folder is None
    # without the roots only the paper's 14 are known
    assert data.iter_datasets(data_dir=data_dir) == ALL_14


def test_record_from_dict_accepts_a_registered_folder_dataset(tmp_path, monkeypatch):
    row = med_rows()[1]
    with pytest.raises(DataError, match="^<dict>: dataset 'med' is not known; known: gsm8k"):
        data.record_from_dict(row)
    make_dataset(tmp_path)
    monkeypatch.setenv("ROUTELIB_DATA_PATH", str(tmp_path))
    assert data.record_from_dict(row).dataset == "med"
    with pytest.raises(DataError, match=re.escape(
            "<dict>: type/domain 'mcq'/'math' do not match med's 'mcq'/'medical'")):
        data.record_from_dict({**row, "domain": "math"})


# ------------------------------------------------------------------------- roots and precedence


def test_two_roots_with_the_same_name_first_root_wins(tmp_path, monkeypatch):
    make_dataset(tmp_path / "a", splits={"test": med_rows(tag=" from a")})
    make_dataset(tmp_path / "b", yaml_text=MED_YAML.replace("twelve", "other"),
                 splits={"test": med_rows(tag=" from b")})
    monkeypatch.setenv("ROUTELIB_DATA_PATH", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert data.load("med", "test")[0].question == "medical question 0? from a"
    assert data.spec("med").note == "twelve hand-made questions"
    assert data.registry().shadowed == [tmp_path / "b" / "med"]
    monkeypatch.setenv("ROUTELIB_DATA_PATH", f"{tmp_path / 'b'}:{tmp_path / 'a'}")
    assert data.load("med", "test")[0].question == "medical question 0? from b"
    # a data_dir list replaces the environment's roots, in its order
    assert data.load("med", "test", data_dir=[tmp_path / "a", tmp_path / "b"])[0].question == \
        "medical question 0? from a"


def test_data_dir_comes_before_data_path(tmp_path, monkeypatch):
    make_dataset(tmp_path / "a", splits={"test": med_rows(tag=" from a")})
    make_dataset(tmp_path / "b", splits={"test": med_rows(tag=" from b")})
    monkeypatch.setenv("ROUTELIB_DATA_DIR", str(tmp_path / "b"))
    monkeypatch.setenv("ROUTELIB_DATA_PATH", str(tmp_path / "a"))
    assert data.roots() == (tmp_path / "b", tmp_path / "a")
    assert data.load("med", "test")[0].question == "medical question 0? from b"


def test_data_dir_alone_still_works(data_dir, monkeypatch):
    monkeypatch.setenv("ROUTELIB_DATA_DIR", str(data_dir))
    assert data.roots() == (data_dir,)
    assert ids(data.load("gsm8k", "train")) == ["gsm8k-train-0", "gsm8k-train-1", "gsm8k-train-2"]
    assert data.iter_datasets() == ALL_14
    assert data.spec("piqa").folder == data_dir / "piqa"


def test_a_paper_folder_found_on_the_data_path(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("ROUTELIB_DATA_PATH", f"{tmp_path / 'empty'}:{data_dir}")
    (tmp_path / "empty").mkdir()
    assert len(data.load("piqa", "validation")) == 20
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "empty" / "mmlu" / "test.jsonl"))
                       + " does not exist .*; searched the roots "):
        data.load("mmlu")


def test_a_data_path_entry_that_is_not_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTELIB_DATA_PATH", f"::{tmp_path / 'missing'}")
    with pytest.raises(ConfigError, match="^data root '.*missing' .* is not a directory$"):
        data.load("med")


def test_no_roots_at_all_raises_config_error():
    with pytest.raises(ConfigError, match="ROUTELIB_DATA_DIR is not set.*ROUTELIB_DATA_PATH"):
        data.load("gsm8k")
    assert data.iter_datasets() == ALL_14  # listing the specs needs no data


def test_a_folder_without_dataset_yaml_is_not_a_dataset(tmp_path):
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "test.jsonl").write_text(json.dumps(med_rows(1)[0]) + "\n")
    assert data.iter_datasets(data_dir=tmp_path) == ALL_14
    with pytest.raises(DataError, match=re.escape(f"({tmp_path / 'loose'}: no dataset.yaml)")):
        data.load("loose", data_dir=tmp_path)


# ------------------------------------------------------------------------- one-line errors


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg and isinstance(err.value, DataError)
    return msg


@pytest.mark.parametrize("yaml_text, line, message", [
    (MED_YAML + "evl_split: dev\n", 5, "unknown key 'evl_split' in a dataset spec; known: type,"),
    (MED_YAML.replace("type: mcq", "type: multiple_choice"), 1,
     "type 'multiple_choice' is not one of mcq, free_form, true_false"),
    (MED_YAML.replace("domain: medical", "domain: Medical QA"), 2,
     "domain 'Medical QA' is not a domain name"),
    ("type: mcq\ndomain: medical\n", 1, re.escape("a dataset spec is missing key(s) "
                                                  "['eval_split']")),
    (MED_YAML + "train_split: test\n", 5, "eval_split 'test' and train_split 'test'"),
    (MED_YAML + "type: free_form\n", 5, "duplicate key 'type'"),
    ("type: [mcq\ndomain: medical\n", 2, r"not valid YAML \("),
    ("- type: mcq\n", 1, "a dataset spec must be a mapping of type, domain"),
    ("", 1, "empty dataset.yaml"),
    (MED_YAML + "hub:\n  id: org/med\n  fields: {question: q, answer: a}\n", 7,
     re.escape("hub.fields is missing ['choices']")),
    (MED_YAML + "hub:\n  id: org/med\n  converter: gsm8k\n", 7,
     "hub.converter is for the packaged paper datasets"),
    (MED_YAML + "hub:\n  id: org/med\n  splits: {dev: validation}\n"
     "  fields: {question: q, answer: a, choices: c}\n", 7,
     "unknown key 'dev' in splits; known: test"),
    (MED_YAML + "group_by_story: maybe\n", 5, "group_by_story must be true or false"),
])
def test_a_bad_dataset_yaml_names_file_and_line(tmp_path, yaml_text, line, message):
    folder = make_dataset(tmp_path, yaml_text=yaml_text)
    with pytest.raises(DataError) as err:
        data.load("med", data_dir=tmp_path)
    assert re.match(re.escape(f"{folder / 'dataset.yaml'}:{line}: ") + message, one_line(err))
    with pytest.raises(DataError, match=re.escape(f"{folder / 'dataset.yaml'}:{line}: ")):
        data.registry(tmp_path)  # listing reads every dataset.yaml: the same error


def test_a_missing_split_file_names_the_yaml_line(tmp_path):
    folder = make_dataset(tmp_path, yaml_text=MED_YAML.replace("test", "dev") + "train_split: tr\n",
                          splits={"test": med_rows()})
    with pytest.raises(DataError) as err:
        data.load("med", data_dir=tmp_path)
    assert one_line(err) == (f"{folder / 'dataset.yaml'}:3: eval_split 'dev' of dataset 'med': "
                             f"{folder / 'dev.jsonl'} does not exist")
    (folder / "dev.jsonl").write_text((folder / "test.jsonl").read_text())
    with pytest.raises(DataError, match=re.escape(f"{folder / 'dataset.yaml'}:5: train_split 'tr' "
                                                  f"of dataset 'med': {folder / 'tr.jsonl'} ")):
        data.load("med", "train", data_dir=tmp_path)


def _jsonl_error(tmp_path, content: bytes):
    folder = make_dataset(tmp_path, splits={})
    (folder / "test.jsonl").write_bytes(content)
    with pytest.raises(DataError) as err:
        data.load("med", data_dir=tmp_path)
    return folder / "test.jsonl", one_line(err)


def _lines(rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def test_a_record_line_that_is_not_json(tmp_path):
    path, msg = _jsonl_error(tmp_path, _lines(med_rows(4)) + b'{"id": "med-004", \n')
    assert msg.startswith(f"{path}:5: not valid JSON (Expecting property name")


def test_a_non_utf8_byte_names_line_column_and_offset(tmp_path):
    good = _lines(med_rows(3))
    bad = json.dumps(med_rows(4)[3]).encode().replace(b"medical question", b"m\xe9dical question")
    path, msg = _jsonl_error(tmp_path, good + bad + b"\n")
    column = bad.index(b"\xe9") + 1
    assert msg == (f"{path}:4: byte 0xe9 at column {column} (byte offset "
                   f"{len(good) + column - 1} of the file) is not valid UTF-8; save it as UTF-8")


def test_a_non_utf8_byte_in_dataset_yaml(tmp_path):
    folder = make_dataset(tmp_path, yaml_text="")
    (folder / "dataset.yaml").write_bytes(MED_YAML.encode() + b"description: caf\xe9\n")
    with pytest.raises(DataError) as err:
        data.spec("med", tmp_path)
    offset = len(MED_YAML.encode()) + len(b"description: caf")
    assert one_line(err) == (f"{folder / 'dataset.yaml'}:5: byte 0xe9 at column 17 (byte offset "
                             f"{offset} of the file) is not valid UTF-8; save it as UTF-8")


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_an_empty_dataset_file_is_refused(tmp_path, content):
    path, msg = _jsonl_error(tmp_path, content)
    assert msg == f"{path}: no records (the file is empty); a split needs at least one"


def test_an_empty_carved_part_is_refused(tmp_path):
    # sha256("50:solo-0") falls in the eval part: the carved train part would be empty
    row = {**med_rows(1)[0], "id": "solo-0"}
    folder = make_dataset(tmp_path, splits={"test": [row]})
    assert ids(data.load("med", "eval", data_dir=tmp_path)) == ["solo-0"]
    with pytest.raises(DataError) as err:
        data.load("med", "train", data_dir=tmp_path)
    assert one_line(err).startswith(f"{folder / 'test.jsonl'}: none of its 1 records falls in "
                                    "the carved 'train' part")


@pytest.mark.parametrize("change, message", [
    ({"type": "free_form"}, "type/domain 'free_form'/'medical' do not match med's 'mcq'/'medical'"),
    ({"dataset": "gsm8k"}, "dataset 'gsm8k' is not 'med', the dataset this file belongs to "
                           "(omit the field to take the folder's name)"),
    ({"answer": 3}, "mcq answer 3 is not an index into 3 choices"),
])
def test_a_bad_record_names_file_and_line(tmp_path, change, message):
    rows = med_rows(3)
    rows[1].update(change)
    path, msg = _jsonl_error(tmp_path, _lines(rows))
    assert msg == f"{path}:2: {message}"


def test_a_yaml_for_a_paper_name_must_agree_with_the_shipped_spec(tmp_path, data_dir):
    yaml_text = "type: mcq\ndomain: commonsense\neval_split: validation\n"
    (data_dir / "piqa" / "dataset.yaml").write_text(yaml_text)
    assert data.spec("piqa", data_dir).origin == str(data_dir / "piqa" / "dataset.yaml")
    assert data.spec("piqa", data_dir).hub == data.DATASETS["piqa"].hub  # the shipped hub block
    assert len(data.load("piqa", "validation", data_dir=data_dir)) == 20
    (data_dir / "piqa" / "dataset.yaml").write_text(yaml_text.replace("validation", "test"))
    with pytest.raises(DataError) as err:
        data.load("piqa", data_dir=data_dir)
    assert one_line(err) == (f"{data_dir / 'piqa' / 'dataset.yaml'}:3: piqa is one of the paper's "
                             "datasets, whose eval_split is 'validation', not 'test'; name the "
                             "folder otherwise for other data")


def test_a_folder_named_all_is_refused(tmp_path):
    make_dataset(tmp_path, "all")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'all' / 'dataset.yaml'}: the "
                                                  "folder name 'all' cannot name a dataset")):
        data.registry(tmp_path)


def test_the_paper_specs_ship_as_package_data():
    import tomllib
    from pathlib import Path
    root = Path(data.__file__).resolve().parents[2]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    assert "paper_datasets.yaml" in pyproject["tool"]["setuptools"]["package-data"]["routelib.data"]
    assert any(d.startswith("pyyaml") for d in pyproject["project"]["dependencies"])
    assert (root / "routelib" / "data" / "paper_datasets.yaml").is_file()


def test_the_example_of_docs_datasets_md_loads(tmp_path):
    """The dataset.yaml and the record shown in docs/datasets.md are a working dataset."""
    from pathlib import Path
    page = (Path(data.__file__).resolve().parents[2] / "docs" / "datasets.md").read_text()
    yaml_text = re.search(r"```yaml\n(.*?)```", page, re.S).group(1)
    record = re.search(r"```json\n(.*?)```", page, re.S).group(1)
    folder = tmp_path / "medqa"
    folder.mkdir()
    (folder / "dataset.yaml").write_text(yaml_text)
    (folder / "test.jsonl").write_text(record)
    (folder / "dev.jsonl").write_text(record)
    s = data.spec("medqa", tmp_path)
    assert (s.type, s.domain, s.eval_split, s.train_split) == ("mcq", "medical", "test", "dev")
    assert dict(s.hub.splits) == {"test": "validation", "dev": "train"}
    [rec] = data.load("medqa", "eval", data_dir=tmp_path)
    assert (rec.dataset, rec.answer_text, rec.type) == ("medqa", "heart", "mcq")
