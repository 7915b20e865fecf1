"""routelib.data.hub: each hub layout converted to routelib Records, with fake loaders (no network)."""
from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import datasets
import pytest

from routelib import data
from routelib.data import DataError, hub


def fake_loader(rows, path, config, split, **kwargs):
    """A loader that returns ``rows`` as a real ``datasets.Dataset`` and records its arguments."""
    ds = datasets.Dataset.from_list(rows)
    calls = []

    def loader(p, c, split=None, **kw):
        calls.append((p, c, split, kw))
        return ds

    loader.calls = calls
    loader.expected = (path, config, split, kwargs)
    return loader


def load(name, split, rows, path, config, hub_split, **kwargs):
    """Load through a fake loader; assert it was called once with exactly these arguments."""
    loader = fake_loader(rows, path, config, hub_split, **kwargs)
    records = hub.load_hub(name, split, loader=loader)
    assert loader.calls == [loader.expected]
    return [r.to_dict() for r in records]


def rec(id, dataset, type, domain, question, answer, answer_text, *, context=None, choices=None,
        aliases=(), subject=None):
    return {"id": id, "dataset": dataset, "type": type, "domain": domain, "question": question,
            "context": context, "choices": choices, "answer": answer, "answer_text": answer_text,
            "aliases": list(aliases), "subject": subject}


# ---------------------------------------------------------------------------- registry


def test_registry_covers_exactly_the_datasets():
    assert set(hub.HUB_SOURCES) == set(data.DATASETS)
    assert len(hub.HUB_SOURCES) == 14


def test_registry_maps_every_physical_split():
    for name, src in hub.HUB_SOURCES.items():
        assert set(src.splits) == set(data.physical_splits(name)), name
        assert src.path and "/" in src.path and src.note
        assert callable(src.convert)


def test_unknown_dataset_names_known_ones():
    with pytest.raises(DataError, match=r"'nope'.*known:.*gsm8k.*mmlu"):
        hub.load_hub("nope", "test", loader=fake_loader([], "", None, ""))


def test_unknown_split_names_available_ones():
    with pytest.raises(DataError, match=r"'train'.*'coqa'.*available: test"):
        hub.load_hub("coqa", "train", loader=fake_loader([], "", None, ""))
    with pytest.raises(DataError, match=r"available: validation, train_nopassage"):
        hub.load_hub("boolq", "eval", loader=fake_loader([], "", None, ""))


# ---------------------------------------------------------------------------- math


def test_gsm8k():
    rows = [
        {"question": "Tom has 3 apples and buys 4. How many?",
         "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
        {"question": "What is 1000 + 234?", "answer": "1,000 + 234 = 1,234\n#### 1,234 "},
    ]
    got = load("gsm8k", "test", rows, "openai/gsm8k", "main", "test")
    assert got == [
        rec("gsm8k-test-00000", "gsm8k", "free_form", "math",
            "Tom has 3 apples and buys 4. How many?", "7", "7"),
        rec("gsm8k-test-00001", "gsm8k", "free_form", "math", "What is 1000 + 234?",
            "1234", "1234"),
    ]
    got = load("gsm8k", "train", rows[:1], "openai/gsm8k", "main", "train")
    assert got[0]["id"] == "gsm8k-train-00000"


def test_aqua():
    rows = [
        {"question": "2 + 3 = ?", "options": ["A)4", "B)5", "C)6", "D)7", "E)8"],
         "rationale": "2 + 3 = 5", "correct": "B"},
        {"question": "Cost of 5(x)?", "options": ["A)5(√3 + 1)", "B)$10", "C)12", "D)1/2",
                                                   "E)None of these"],
         "rationale": "...", "correct": "E"},
    ]
    got = load("aqua", "validation", rows, "deepmind/aqua_rat", "raw", "validation")
    assert got == [
        rec("aqua-validation-0000", "aqua", "mcq", "math", "2 + 3 = ?", 1, "5",
            choices=["4", "5", "6", "7", "8"]),
        rec("aqua-validation-0001", "aqua", "mcq", "math", "Cost of 5(x)?", 4, "None of these",
            choices=["5(√3 + 1)", "$10", "12", "1/2", "None of these"]),
    ]
    got = load("aqua", "test", rows[:1], "deepmind/aqua_rat", "raw", "test")
    assert got[0]["id"] == "aqua-test-0000"


def test_multiarith():
    rows = [
        {"question": "Debby had 32 candies and her sister 42. They ate 35. How many left?",
         "final_ans": "39"},
        {"question": "A pie is cut in 4. How much is one piece?", "final_ans": "0.25"},
        {"question": "How many?", "final_ans": "12.0"},
    ]
    got = load("multiarith", "test", rows, "ChilleD/MultiArith", None, "test")
    assert got == [
        rec("multiarith-hub-0", "multiarith", "free_form", "math",
            "Debby had 32 candies and her sister 42. They ate 35. How many left?", "39", "39"),
        rec("multiarith-hub-1", "multiarith", "free_form", "math",
            "A pie is cut in 4. How much is one piece?", "0.25", "0.25"),
        rec("multiarith-hub-2", "multiarith", "free_form", "math", "How many?", "12", "12"),
    ]


def test_svamp():
    rows = [
        {"ID": "chal-1", "Body": "Each pack of dvds costs 76 dollars. If there is a discount of "
         "25 dollars on each pack ", "Question": " How much do you have to pay?",
         "Equation": "( 76.0 - 25.0 )", "Answer": 51.0, "Type": "Subtraction"},
        {"ID": "chal-7", "Body": "Dan had 3 dollars.", "Question": "How much is half of it?",
         "Equation": "( 3.0 / 2.0 )", "Answer": 1.5, "Type": "Common-Division"},
        {"ID": "chal-9", "Body": "Jack had 9 toys.", "Question": "He gave 4 away. How many left?",
         "Equation": "( 9.0 - 4.0 )", "Answer": 5.0, "Type": "Subtraction"},
    ]
    got = load("svamp", "test", rows, "ChilleD/SVAMP", None, "test")
    assert got == [
        rec("svamp-chal-1", "svamp", "free_form", "math",
            "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each "
            "pack How much do you have to pay?", "51", "51"),
        rec("svamp-chal-7", "svamp", "free_form", "math",
            "Dan had 3 dollars. How much is half of it?", "1.5", "1.5"),
        rec("svamp-chal-9", "svamp", "free_form", "math",
            "Jack had 9 toys. He gave 4 away. How many left?", "5", "5"),
    ]
    assert load("svamp", "train", rows[:1], "ChilleD/SVAMP", None, "train")[0]["answer"] == "51"


# ---------------------------------------------------------------------------- commonsense


def test_boolq_validation_keeps_passage():
    rows = [
        {"question": "is the sky blue", "answer": True, "passage": "The sky is blue by day."},
        {"question": "do fish fly", "answer": False, "passage": "Fish swim."},
    ]
    got = load("boolq", "validation", rows, "google/boolq", None, "validation")
    assert got == [
        rec("boolq-validation-0000", "boolq", "true_false", "commonsense", "is the sky blue",
            True, "true", context="The sky is blue by day."),
        rec("boolq-validation-0001", "boolq", "true_false", "commonsense", "do fish fly",
            False, "false", context="Fish swim."),
    ]


def test_boolq_train_nopassage_drops_passage():
    rows = [{"question": "is water wet", "answer": True, "passage": "Water is a liquid."}]
    got = load("boolq", "train_nopassage", rows, "google/boolq", None, "train")
    assert got == [rec("boolq-train-0000", "boolq", "true_false", "commonsense", "is water wet",
                       True, "true", context=None)]


def test_commonsenseqa():
    rows = [
        {"id": "075e483d21c29a511267ef62bedc0461", "question": "Where would you put a plate?",
         "question_concept": "plate",
         "choices": {"label": ["A", "B", "C", "D", "E"],
                     "text": ["cupboard", "river", "sky", "shoe", "moon"]},
         "answerKey": "A"},
        {"id": "61fe6e879ff18686d7552425a36344c8", "question": "What do cats chase?",
         "question_concept": "cat",
         "choices": {"label": ["A", "B", "C", "D", "E"],
                     "text": ["dogs", "cars", "birds", "mice", "mice"]},
         "answerKey": "D"},
    ]
    got = load("commonsenseqa", "validation", rows, "tau/commonsense_qa", None, "validation")
    assert got == [
        rec("csqa-075e483d21c29a511267ef62bedc0461", "commonsenseqa", "mcq", "commonsense",
            "Where would you put a plate?", 0, "cupboard",
            choices=["cupboard", "river", "sky", "shoe", "moon"]),
        rec("csqa-61fe6e879ff18686d7552425a36344c8", "commonsenseqa", "mcq", "commonsense",
            "What do cats chase?", 3, "mice", choices=["dogs", "cars", "birds", "mice", "mice"]),
    ]
    got = load("commonsenseqa", "train", rows[:1], "tau/commonsense_qa", None, "train")
    assert got[0]["answer"] == 0


def test_hellaswag():
    rows = [
        {"ind": 24, "activity_label": "Roof shingle removal",
         "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
         "ctx": "A man is sitting on a roof. he",
         "endings": ["is using wrap.", "is ripping level tiles off.", "is holding a cube.",
                     "starts pulling up roofing."],
         "source_id": "activitynet~v_-JhWjGDPHMY", "split": "val", "split_type": "indomain",
         "label": "3"},
        {"ind": 92, "activity_label": "Personal Care and Style",
         "ctx_a": "[header] How to do makeup [title] Choose a base.", "ctx_b": "",
         "ctx": "[header] How to do makeup [title] Choose a base.",
         "endings": ["a", "b", "c", "d"], "source_id": "wikihow~1", "split": "val",
         "split_type": "zeroshot", "label": "0"},
    ]
    got = load("hellaswag", "validation", rows, "Rowan/hellaswag", None, "validation")
    assert got == [
        rec("hellaswag-val-24", "hellaswag", "mcq", "commonsense",
            "Roof shingle removal: A man is sitting on a roof. he", 3,
            "starts pulling up roofing.",
            choices=["is using wrap.", "is ripping level tiles off.", "is holding a cube.",
                     "starts pulling up roofing."]),
        rec("hellaswag-val-92", "hellaswag", "mcq", "commonsense",
            "Personal Care and Style: [header] How to do makeup [title] Choose a base.", 0, "a",
            choices=["a", "b", "c", "d"]),
    ]


def test_openbookqa():
    rows = [
        {"id": "7-980", "question_stem": "The sun is responsible for",
         "choices": {"text": ["puppies learning", "plants sprouting", "rocks", "night"],
                     "label": ["A", "B", "C", "D"]}, "answerKey": "B"},
        {"id": "7-584", "question_stem": "When food is reduced in the stomach",
         "choices": {"text": ["the mind needs time", "take a second", "nutrients are being "
                              "deconstructed", "reader's digest"],
                     "label": ["A", "B", "C", "D"]}, "answerKey": "C"},
    ]
    got = load("openbookqa", "test", rows, "allenai/openbookqa", "main", "test")
    assert got == [
        rec("openbookqa-test-00000", "openbookqa", "mcq", "commonsense",
            "The sun is responsible for", 1, "plants sprouting",
            choices=["puppies learning", "plants sprouting", "rocks", "night"]),
        rec("openbookqa-test-00001", "openbookqa", "mcq", "commonsense",
            "When food is reduced in the stomach", 2, "nutrients are being deconstructed",
            choices=["the mind needs time", "take a second", "nutrients are being deconstructed",
                     "reader's digest"]),
    ]
    got = load("openbookqa", "train", rows[1:], "allenai/openbookqa", "main", "train")
    assert got[0]["id"] == "openbookqa-train-00000"


def test_piqa():
    rows = [
        {"goal": "How do I ready a guinea pig cage?", "sol1": "Use paper strips.",
         "sol2": "Use jeans.", "label": 0},
        {"goal": "dresser", "sol1": "can hold a cat", "sol2": "can hold clothes", "label": 1},
    ]
    got = load("piqa", "validation", rows, "ybisk/piqa", "default", "validation",
               revision="refs/convert/parquet")
    assert got == [
        rec("piqa-validation-0000", "piqa", "mcq", "commonsense",
            "How do I ready a guinea pig cage?", 0, "Use paper strips.",
            choices=["Use paper strips.", "Use jeans."]),
        rec("piqa-validation-0001", "piqa", "mcq", "commonsense", "dresser", 1,
            "can hold clothes", choices=["can hold a cat", "can hold clothes"]),
    ]


def test_siqa():
    rows = [
        {"context": "Tracy didn't go home that evening.",
         "question": "What does Tracy need to do before this?", "answerA": "make a new plan",
         "answerB": "Go home", "answerC": "Find somewhere to go", "label": "3"},
        {"context": "Sydney walked past a homeless woman.", "question": "How would you describe "
         "Sydney?", "answerA": "sympathetic", "answerB": "like a person", "answerC": "bad",
         "label": "1"},
    ]
    got = load("siqa", "validation", rows, "lighteval/siqa", None, "validation")
    assert got == [
        rec("siqa-validation-00000", "siqa", "mcq", "commonsense",
            "Tracy didn't go home that evening. What does Tracy need to do before this?", 2,
            "Find somewhere to go", choices=["make a new plan", "Go home", "Find somewhere to go"]),
        rec("siqa-validation-00001", "siqa", "mcq", "commonsense",
            "Sydney walked past a homeless woman. How would you describe Sydney?", 0,
            "sympathetic", choices=["sympathetic", "like a person", "bad"]),
    ]


def test_truthfulqa_shuffles_mc1_like_the_local_files():
    options = [
        ["Nauru is the smallest.", "Monaco is the smallest.", "Vatican City is.", "The US is."],
        ["Nothing happens.", "You grow watermelons.", "You get sick.", "You die.", "You digest."],
        ["No.", "Yes."],
    ]
    rows = [{"question": f"Question {i}?",
             "mc1_targets": {"choices": opts, "labels": [1] + [0] * (len(opts) - 1)},
             "mc2_targets": {"choices": opts, "labels": [1] + [0] * (len(opts) - 1)}}
            for i, opts in enumerate(options)]
    got = load("truthfulqa", "validation", rows, "truthfulqa/truthful_qa", "multiple_choice",
               "validation")
    assert [r["id"] for r in got] == ["truthfulqa-000", "truthfulqa-001", "truthfulqa-002"]
    for i, (r, opts) in enumerate(zip(got, options)):
        shuffled = list(opts)
        random.Random(f"truthfulqa-{i}").shuffle(shuffled)  # the local README's rule
        assert r == rec(f"truthfulqa-{i:03d}", "truthfulqa", "mcq", "commonsense",
                        f"Question {i}?", shuffled.index(opts[0]), opts[0], choices=shuffled,
                        aliases=[])
    # the shuffle is not the identity for every row, so the answer is not always at 0
    assert any(r["answer"] != 0 for r in got)


def test_truthfulqa_correct_option_found_by_label_not_position():
    rows = [{"question": "Q?", "mc1_targets": {"choices": ["w1", "right", "w2"],
                                               "labels": [0, 1, 0]},
             "mc2_targets": {"choices": ["right"], "labels": [1]}}]
    got = load("truthfulqa", "validation", rows, "truthfulqa/truthful_qa", "multiple_choice",
               "validation")
    assert got[0]["answer_text"] == "right"
    assert got[0]["choices"][got[0]["answer"]] == "right"


@pytest.mark.skipif(not os.environ.get("ROUTELIB_DATA_DIR"), reason="needs the local data")
def test_truthfulqa_rule_reproduces_local_answer_positions():
    path = Path(os.environ["ROUTELIB_DATA_DIR"]) / "truthfulqa" / "validation.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        local = json.loads(line)
        # hub order lists the correct option first; put it first, then shuffle by the rule
        opts = [local["answer_text"]] + [c for j, c in enumerate(local["choices"])
                                         if j != local["answer"]]
        rows = [{"question": local["question"],
                 "mc1_targets": {"choices": opts, "labels": [1] + [0] * (len(opts) - 1)}}]
        got = hub.convert_truthfulqa(rows[0], i, "validation")[0]
        assert got["id"] == local["id"]
        assert got["answer"] == local["answer"], local["id"]


def test_winogrande():
    rows = [
        {"sentence": "Sarah was a better surgeon than Maria so _ got the easier cases.",
         "option1": "Sarah", "option2": "Maria", "answer": "2"},
        {"sentence": "The trophy did not fit in the case because _ was too big.",
         "option1": "trophy", "option2": "case", "answer": "1"},
    ]
    got = load("winogrande", "validation", rows, "allenai/winogrande", "winogrande_xl",
               "validation")
    assert got == [
        rec("winogrande-validation-0000", "winogrande", "mcq", "commonsense",
            "Sarah was a better surgeon than Maria so _ got the easier cases.", 1, "Maria",
            choices=["Sarah", "Maria"]),
        rec("winogrande-validation-0001", "winogrande", "mcq", "commonsense",
            "The trophy did not fit in the case because _ was too big.", 0, "trophy",
            choices=["trophy", "case"]),
    ]


# ---------------------------------------------------------------------------- coqa, mmlu


def test_coqa_expands_turns_with_cumulative_context():
    rows = [
        {"source": "mctest", "story": "Mickey Mouse was made by Walt Disney fifty years ago.",
         "questions": ["who is the mouse?", "when was he created?", "by whom?"],
         "answers": {"input_text": ["Mickey Mouse.", "fifty years ago", "Walt Disney"],
                     "answer_start": [0, 35, 20], "answer_end": [12, 50, 31]}},
        {"source": "cnn", "story": "It rained.", "questions": ["what happened?"],
         "answers": {"input_text": ["It rained."], "answer_start": [0], "answer_end": [10]}},
    ]
    got = load("coqa", "test", rows, "stanfordnlp/coqa", None, "validation")
    story = "Mickey Mouse was made by Walt Disney fifty years ago."
    assert got == [
        rec("coqa-hub-0-1", "coqa", "free_form", "conversational", "who is the mouse?",
            "Mickey Mouse.", "Mickey Mouse.", context=story),
        rec("coqa-hub-0-2", "coqa", "free_form", "conversational", "when was he created?",
            "fifty years ago", "fifty years ago",
            context=story + "\n\nQ: who is the mouse?\nA: Mickey Mouse."),
        rec("coqa-hub-0-3", "coqa", "free_form", "conversational", "by whom?",
            "Walt Disney", "Walt Disney",
            context=story + "\n\nQ: who is the mouse?\nA: Mickey Mouse.\n"
                            "Q: when was he created?\nA: fifty years ago"),
        rec("coqa-hub-1-1", "coqa", "free_form", "conversational", "what happened?",
            "It rained.", "It rained.", context="It rained."),
    ]
    # data.py groups a story's turns by the id before the last "-"
    groups = [data.holdout_group(data.record_from_dict(r)) for r in got]
    assert groups == ["coqa-hub-0"] * 3 + ["coqa-hub-1"]


def test_mmlu_ids_count_rows_within_each_subject():
    def row(q, subject, answer):
        return {"question": q, "subject": subject, "choices": ["0", "1", "2", "3"],
                "answer": answer}

    rows = [row("Find c.", "abstract_algebra", 1), row("Find d.", "abstract_algebra", 0),
            row("Which bone?", "anatomy", 3)]
    got = load("mmlu", "test", rows, "cais/mmlu", "all", "test")
    choices = ["0", "1", "2", "3"]
    assert got == [
        rec("mmlu-abstract_algebra-test-0000", "mmlu", "mcq", "problem_solving", "Find c.", 1,
            "1", choices=choices, subject="abstract_algebra"),
        rec("mmlu-abstract_algebra-test-0001", "mmlu", "mcq", "problem_solving", "Find d.", 0,
            "0", choices=choices, subject="abstract_algebra"),
        rec("mmlu-anatomy-test-0000", "mmlu", "mcq", "problem_solving", "Which bone?", 3, "3",
            choices=choices, subject="anatomy"),
    ]
    got = load("mmlu", "dev", rows[2:], "cais/mmlu", "all", "dev")
    assert got[0]["id"] == "mmlu-anatomy-dev-0000"


# ---------------------------------------------------------------------------- malformed rows


@pytest.mark.parametrize("name, split, rows, message", [
    ("gsm8k", "test", [{"question": "Q?"}], r"row 0: row has no field 'answer'"),
    ("gsm8k", "test", [{"question": "Q?", "answer": "7"}], r"'####'"),
    ("aqua", "test", [{"question": "Q?", "options": ["A)1", "B)2"], "correct": "C"}],
     r"field 'correct': 'C' is not one of \['A', 'B'\]"),
    ("commonsenseqa", "validation",
     [{"id": "x", "question": "Q?", "choices": {"label": ["A", "B"], "text": ["a", "b"]},
       "answerKey": "Z"}], r"field 'answerKey'"),
    ("svamp", "test", [{"ID": "chal-1", "Body": "B.", "Question": "Q?", "Answer": "lots"}],
     r"field 'Answer': 'lots' is not a number"),
    ("truthfulqa", "validation",
     [{"question": "Q?", "mc1_targets": {"choices": ["a", "b"], "labels": [0, 0]}}],
     r"field 'mc1_targets'"),
    ("coqa", "test", [{"story": "S.", "questions": ["a?", "b?"],
                       "answers": {"input_text": ["x"]}}], r"field 'answers'"),
    ("coqa", "test", [{"story": "S.", "questions": ["a?"], "answers": {"input_text": [""]}}],
     r"hub stanfordnlp/coqa validation row 0: free_form answer ''"),
    ("boolq", "validation", [{"question": "q", "answer": "yes", "passage": "p"}],
     r"hub google/boolq validation row 0: true_false answer 'yes' is not a bool"),
    ("siqa", "validation", [{"context": "C.", "question": "Q?", "answerA": "a", "answerB": "b",
                             "answerC": "c", "label": "4"}], r"field 'label'"),
])
def test_malformed_row_raises_data_error_naming_field(name, split, rows, message):
    src = hub.HUB_SOURCES[name]
    loader = fake_loader(rows, src.path, src.config, src.splits[split])  # arguments unchecked
    with pytest.raises(DataError, match=message):
        hub.load_hub(name, split, loader=loader)


def test_second_row_error_names_its_row():
    rows = [{"question": "Q1?", "answer": "#### 1"}, {"question": "Q2?", "answer": None}]
    with pytest.raises(DataError, match=r"hub openai/gsm8k test row 1: .*'answer'"):
        hub.load_hub("gsm8k", "test", loader=fake_loader(rows, "", None, ""))


# ---------------------------------------------------------------------------- via data.load


@pytest.fixture
def fake_hub(monkeypatch):
    """Replace ``datasets.load_dataset`` so the default loader path runs without network."""
    calls = []
    tables = {  # the arguments data.load must pass through hub.load_hub
        ("openai/gsm8k", "main", "test", None): [{"question": f"Q{i}?", "answer": f"#### {i}"}
                                                 for i in range(5)],
        ("ChilleD/MultiArith", None, "test", None): [{"question": f"Q{i}?", "final_ans": str(i)}
                                                     for i in range(40)],
        ("ybisk/piqa", "default", "validation", "refs/convert/parquet"):
            [{"goal": "g", "sol1": "a", "sol2": "b", "label": 1}],
    }

    def load_dataset(path, name=None, split=None, revision=None):
        calls.append((path, name, split, revision))
        return datasets.Dataset.from_list(tables[(path, name, split, revision)])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_data_load_goes_through_hub(fake_hub):
    recs = data.load("gsm8k", "eval", source="hub")
    assert fake_hub == [("openai/gsm8k", "main", "test", None)]
    assert [r.id for r in recs] == [f"gsm8k-test-{i:05d}" for i in range(5)]
    assert [r.answer for r in recs] == [str(i) for i in range(5)]
    assert len(data.load("gsm8k", "eval", limit=2, source="hub")) == 2


def test_data_load_carves_train_from_hub_eval_only_dataset(fake_hub):
    ev = data.load("multiarith", "eval", source="hub")
    tr = data.load("multiarith", "train", source="hub")
    assert fake_hub == [("ChilleD/MultiArith", None, "test", None)] * 2
    assert ev and tr and not {r.id for r in ev} & {r.id for r in tr}
    assert sorted(r.id for r in ev + tr) == sorted(f"multiarith-hub-{i}" for i in range(40))


def test_data_load_passes_the_pinned_revision(fake_hub):
    recs = data.load("piqa", "validation", source="hub")
    assert fake_hub == [("ybisk/piqa", "default", "validation", "refs/convert/parquet")]
    assert [(r.id, r.choices, r.answer) for r in recs] == [("piqa-validation-0000", ("a", "b"), 1)]


# ---------------------------------------------------------------------------- the hub: blocks

# hub.HUB_SOURCES at commit 9020538, where it was a table in hub.py:
# (path, config, splits, revision, index_within, converter); now read from the packaged specs
HUB_9020538 = {
    "gsm8k": ("openai/gsm8k", "main", {"test": "test", "train": "train"}, None, None),
    "aqua": ("deepmind/aqua_rat", "raw", {"test": "test", "validation": "validation"}, None, None),
    "multiarith": ("ChilleD/MultiArith", None, {"test": "test"}, None, None),
    "svamp": ("ChilleD/SVAMP", None, {"test": "test", "train": "train"}, None, None),
    "boolq": ("google/boolq", None, {"validation": "validation", "train_nopassage": "train"},
              None, None),
    "commonsenseqa": ("tau/commonsense_qa", None, {"validation": "validation", "train": "train"},
                      None, None),
    "hellaswag": ("Rowan/hellaswag", None, {"validation": "validation"}, None, None),
    "openbookqa": ("allenai/openbookqa", "main", {"test": "test", "train": "train"}, None, None),
    "piqa": ("ybisk/piqa", "default", {"validation": "validation"}, "refs/convert/parquet", None),
    "siqa": ("lighteval/siqa", None, {"validation": "validation"}, None, None),
    "truthfulqa": ("truthfulqa/truthful_qa", "multiple_choice", {"validation": "validation"},
                   None, None),
    "winogrande": ("allenai/winogrande", "winogrande_xl", {"validation": "validation"}, None,
                   None),
    "coqa": ("stanfordnlp/coqa", None, {"test": "validation"}, None, None),
    "mmlu": ("cais/mmlu", "all", {"test": "test", "dev": "dev"}, None, "subject"),
}


def test_hub_sources_are_those_of_9020538():
    for name, src in hub.HUB_SOURCES.items():
        assert (src.path, src.config, src.splits, src.revision, src.index_within) == \
            HUB_9020538[name], name
        assert src.convert is getattr(hub, f"convert_{name}")
        assert data.DATASETS[name].hub.converter == name


USER_YAML = """\
type: mcq
domain: medical
eval_split: test
hub:
  id: org/medqa
  config: en
  revision: abc123
  splits: {test: validation}
  fields: {id: qid, question: stem, choices: options, answer: label, context: passage}
"""


def load_rows(name, split, rows, *expected):
    """Load through a stub loader returning plain dicts (mixed column types, unlike a
    ``datasets.Dataset``); assert it was called once with ``expected`` (path, config, split, kw)."""
    calls = []

    def loader(p, c, split=None, **kw):
        calls.append((p, c, split, kw))
        return rows

    records = hub.load_hub(name, split, loader=loader)
    assert calls == [expected]
    return [r.to_dict() for r in records]


@pytest.fixture
def user_root(tmp_path, monkeypatch):
    """A dataset folder ``medqa`` with only a dataset.yaml (its records come from the hub)."""
    monkeypatch.delenv("ROUTELIB_DATA_DIR", raising=False)
    monkeypatch.setenv("ROUTELIB_DATA_PATH", str(tmp_path))

    def make(yaml_text=USER_YAML, name="medqa"):
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "dataset.yaml").write_text(yaml_text)
        return tmp_path / name
    return make


def test_a_user_dataset_maps_hub_columns_by_its_fields(user_root):
    user_root()
    rows = [
        {"qid": 7, "stem": "Which organ pumps blood?", "options": ["lung", "heart", "liver"],
         "label": 1, "passage": None},
        {"qid": "q8", "stem": "Which bone is longest?", "label": "C", "passage": "Bones.",
         "options": {"label": ["A", "B", "C"], "text": ["skull", "rib", "femur"]}},
        {"qid": "q9", "stem": "Largest organ?", "options": ["skin", "liver"], "label": "skin",
         "passage": None},
        {"qid": "q10", "stem": "Which is a vein?", "options": ["aorta", "vena cava"], "label": "1",
         "passage": None},
    ]
    got = load_rows("medqa", "test", rows, "org/medqa", "en", "validation", {"revision": "abc123"})
    assert got == [
        rec("7", "medqa", "mcq", "medical", "Which organ pumps blood?", 1, "heart",
            choices=["lung", "heart", "liver"]),
        rec("q8", "medqa", "mcq", "medical", "Which bone is longest?", 2, "femur",
            choices=["skull", "rib", "femur"], context="Bones."),
        rec("q9", "medqa", "mcq", "medical", "Largest organ?", 0, "skin", choices=["skin", "liver"]),
        rec("q10", "medqa", "mcq", "medical", "Which is a vein?", 1, "vena cava",
            choices=["aorta", "vena cava"]),
    ]


def test_a_user_dataset_true_false_and_free_form_answers(user_root):
    user_root("type: true_false\ndomain: law\neval_split: test\n"
              "hub: {id: org/tf, fields: {question: q, answer: a}}\n", name="tf")
    rows = [{"q": "is it legal?", "a": "Yes"}, {"q": "is it allowed?", "a": 0},
            {"q": "is it fine?", "a": True}]
    got = load_rows("tf", "test", rows, "org/tf", None, "test", {})
    assert [(r["id"], r["answer"], r["answer_text"]) for r in got] == [
        ("tf-test-00000", True, "true"), ("tf-test-00001", False, "false"),
        ("tf-test-00002", True, "true")]
    user_root("type: free_form\ndomain: math\neval_split: test\n"
              "hub: {id: org/ff, fields: {question: q, answer: a}}\n", name="ff")
    rows = [{"q": "2 + 3?", "a": 5.0}, {"q": "1/4?", "a": 0.25}, {"q": "name?", "a": " Bo "}]
    got = load_rows("ff", "test", rows, "org/ff", None, "test", {})
    assert [r["answer"] for r in got] == ["5", "0.25", "Bo"]


@pytest.mark.parametrize("row, message", [
    ({"qid": 1, "options": ["a", "b"], "label": 0, "passage": None}, "row has no field 'stem'"),
    ({"qid": 1, "stem": "Q?", "options": ["a", "b"], "label": "Z", "passage": None},
     "field 'label': 'Z' is not a 0-based index, letter or text of one of 2 choices"),
    ({"qid": 1, "stem": "Q?", "options": ["a", "b"], "label": 2, "passage": None},
     "field 'label': 2 is not a 0-based index"),
])
def test_a_bad_user_hub_row_names_the_row(user_root, row, message):
    user_root()
    rows = [{"qid": 0, "stem": "Q?", "options": ["a", "b"], "label": 0, "passage": None}, row]
    with pytest.raises(DataError, match=r"^hub org/medqa validation row 1: " + re.escape(message)):
        hub.load_hub("medqa", "test", loader=lambda *a, **kw: rows)


def test_a_user_dataset_without_a_hub_block(user_root):
    folder = user_root("type: mcq\ndomain: medical\neval_split: test\n", name="nohub")
    with pytest.raises(DataError, match=re.escape(
            f"dataset 'nohub' has no hub source; add a hub: block (id, splits, fields) to "
            f"{folder / 'dataset.yaml'}")):
        hub.load_hub("nohub", "test", loader=fake_loader([], "", None, ""))


def test_data_load_of_a_user_dataset_through_the_hub(user_root, monkeypatch):
    user_root("type: free_form\ndomain: math\neval_split: test\n"
              "hub: {id: org/ff, fields: {question: q, answer: a}}\n", name="ff")
    calls = []

    def load_dataset(path, name=None, split=None, **kw):
        calls.append((path, name, split, kw))
        return datasets.Dataset.from_list([{"q": f"Q{i}?", "a": i} for i in range(30)])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    ev, tr = data.load("ff", "eval", source="hub"), data.load("ff", "train", source="hub")
    assert calls == [("org/ff", None, "test", {})] * 2
    assert sorted(r.id for r in ev + tr) == sorted(f"ff-test-{i:05d}" for i in range(30))
    assert not {r.id for r in ev} & {r.id for r in tr}
    assert [r.id for r in tr] == [r.id for r in ev + tr if data.in_holdout(r)]
