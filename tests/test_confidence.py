"""routelib.uq.confidence with the fake backend: the confidence table's columns, discards,
verbal numbers, refusals, cached-only reading and the probes' train/eval separation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from routelib.models.fake import FakeBackend
from routelib.uq import confidence, methods as uq, statcache, verbal


def fake(**kw):
    return FakeBackend(name="fake", **kw)


def test_confidence_table_counts_discards(use_data_dir):
    # the fake says "The answer is 42." with no number a verbal method could read as confidence
    table = confidence.confidence_table("fake", ["gsm8k"], ["perplexity", "verbal_2s"], limit=5,
                                        backend=fake(), progress=False)
    assert list(table.columns) == list(confidence.CONFIDENCE_COLUMNS)
    assert len(table) == 10
    v = table[table["method"] == "verbal_2s"]
    assert v["discarded"].all() and v["confidence"].isna().all()
    assert set(v["discard_reason"]) == {verbal.NO_NUMBER}
    p = table[table["method"] == "perplexity"]
    assert not p["discarded"].any() and (p["confidence"] > 0).all()
    summary = confidence.discard_summary(table)
    assert summary[["method", "items", "discarded", "rate", "reasons"]].values.tolist() == [
        ["verbal_2s", 5, 5, 1.0, f"{verbal.NO_NUMBER} (5)"]]
    # gsm8k answers in the fixture: 18, 3, 42, 42, 7; the fake answers 42
    assert p["correct"].tolist() == [False, False, True, True, False]


def test_verbal_numbers_are_read(use_data_dir):
    table = confidence.confidence_table(
        "fake", ["gsm8k"], ["verbal_1s"], limit=5, progress=False,
        backend=fake(respond=lambda p: "42\nConfidence: 80%" if "Confidence" in p else "42"))
    assert table["confidence"].tolist() == [0.8] * 5 and not table["discarded"].any()


def test_verbal_1s_is_graded_on_its_own_answer(use_data_dir):
    # gsm8k answers in the fixture: 18, 3, 42, 42, 7; the greedy answer is 42 (right on items
    # 3 and 4), the one-stage output answers 18 (right on item 1 only)
    def respond(p):
        return "18\nConfidence: 0 to 100" if "Confidence" in p else "The answer is 42."
    table = confidence.confidence_table("fake", ["gsm8k"], ["perplexity", "verbal_1s"], limit=5,
                                        progress=False, backend=fake(respond=respond))
    v = table[table["method"] == "verbal_1s"]
    p = table[table["method"] == "perplexity"]
    assert p["correct"].tolist() == [False, False, True, True, False]
    assert v["correct"].tolist() == [True, False, False, False, False]
    assert v["discarded"].all() and set(v["discard_reason"]) == {verbal.STATED_SCALE}


def test_unknown_method_or_dataset_is_refused(use_data_dir):
    with pytest.raises(KeyError, match="known: avg_token_prob"):
        confidence.confidence_table("fake", ["gsm8k"], ["entropy"], backend=fake())
    with pytest.raises(Exception, match="gsm8k"):
        confidence.confidence_table("fake", ["gsm9k"], ["perplexity"], backend=fake())


def test_cached_only_loads_no_model_and_lists_what_is_missing(use_data_dir):
    from routelib import models
    be = FakeBackend(name="smollm2-135m")
    be.model_id = models.model_id("smollm2-135m")  # a registered name, as a real run has
    confidence.confidence_table("smollm2-135m", ["gsm8k"], ["perplexity", "p_true"], limit=5,
                                backend=be, progress=False)
    table = confidence.confidence_table("smollm2-135m", ["gsm8k", "commonsenseqa"],
                                        ["perplexity", "p_true"], limit=5, cached_only=True,
                                        progress=False)
    assert set(table["dataset"]) == {"gsm8k"} and len(table) == 10
    assert table.attrs["missing"] == ["commonsenseqa"]


def test_probes_train_on_train_split_and_never_score_their_training_items(use_data_dir,
                                                                           fresh_cache_dir):
    # gsm8k train golds are 1, 2, 3: answering 2 to train question 1 only gives the probe the
    # labels [wrong, right, wrong]; eval golds are 18, 3, 42, 42, 7
    def respond(prompt):
        if "train question 1" in prompt:
            return "The answer is 2."
        return "The answer is 18." if "test question 0" in prompt else "The answer is 7."
    table = confidence.confidence_table("fake", ["gsm8k"], ["trained_probe"], limit=5,
                                        train_limit=5, backend=fake(respond=respond),
                                        progress=False)
    train = statcache.item_stats("fake", "gsm8k", [], split="train", limit=5,
                                 backend=fake(), progress=False)[1]
    assert train["correct"].tolist() == [False, True, False]
    assert not set(train["item_id"]) & set(table["item_id"])
    assert table["item_id"].tolist() == [f"gsm8k-test-{i}" for i in range(5)]
    assert table["correct"].tolist() == [True, False, False, False, True]
    assert not table["discarded"].any() and (table["discard_reason"] == "").all()
    assert ((table["confidence"] > 0) & (table["confidence"] < 1)).all()
    # the stored probe learned from the 3 train items (1 right), not from an eval item
    [meta] = (fresh_cache_dir / "probes" / "fake").glob("trained_probe__gsm8k__*/probe.json")
    import json
    fields = json.loads(meta.read_text())
    assert (fields["n_train"], fields["n_correct"]) == (3, 1)


def test_a_one_class_train_split_discards_the_probe_and_says_why(use_data_dir):
    # the fake answers 42: every gsm8k train item (golds 1, 2, 3) is wrong
    table = confidence.confidence_table("fake", ["gsm8k"], ["trained_probe"], limit=5,
                                        train_limit=5, backend=fake(), progress=False)
    assert len(table) == 5 and table["discarded"].all() and table["confidence"].isna().all()
    assert set(table["discard_reason"]) == {confidence.ONE_CLASS}


def _saved(slm: str, datasets, methods, limit: int = 8):
    import pandas as pd
    from routelib.columns import CONFIDENCE_COLUMNS
    rows = [{"slm": slm, "model_id": "fake:1", "dataset": d, "item_id": f"{d}-{i}",
             "method": m, "confidence": 0.1 * i, "correct": bool(i % 2), "discarded": False,
             "discard_reason": ""} for d in datasets for m in methods for i in range(3)]
    table = pd.DataFrame(rows)[list(CONFIDENCE_COLUMNS)]
    return confidence.save_table(table, confidence.table_path(slm, limit)), table


def test_load_table_reads_a_saved_table_of_other_datasets_as_it_is(use_data_dir):
    path, table = _saved("smollm2-135m", ["my_quiz", "gsm8k"], ["perplexity", "avg_token_prob"])
    got = confidence.load_table("smollm2-135m", limit=8)     # none named: the whole saved table
    assert got.attrs["source"] == str(path) and got.equals(table)
    one = confidence.load_table("smollm2-135m", ["my_quiz"], ["perplexity"], limit=8)
    assert len(one) == 3 and set(one["dataset"]) == {"my_quiz"}
    assert set(one["method"]) == {"perplexity"}
    # a method the saved table lacks: computed from the cache (nothing cached: named missing)
    other = confidence.load_table("smollm2-135m", ["gsm8k"], ["p_true"], limit=8)
    assert other.empty and other.attrs["missing"] == ["gsm8k"]
def _ood_respond(right_train: str):
    """gsm8k: the train item named ``right_train`` and eval item 0 answered right."""
    def respond(prompt):
        if right_train in prompt or "test question 0" in prompt:
            return "The answer is 1." if "train" in prompt else "The answer is 18."
        return "The answer is 2." if "train question 1" in prompt else "The answer is 7."
    return respond


def test_ood_pool_scores_every_dataset_with_each_targets_own_probe(use_data_dir, monkeypatch,
                                                                    tmp_path):
    from routelib import data
    from routelib.columns import OOD_POOL_COLUMNS
    monkeypatch.setattr(data, "DATASETS", {k: None for k in ("gsm8k", "piqa", "coqa")})
    names = ["gsm8k", "piqa", "coqa"]

    def pool_and_table(right_train, cache):
        monkeypatch.setenv("ROUTELIB_CACHE_DIR", str(tmp_path / cache))
        kw = dict(limit=5, train_limit=5, backend=fake(respond=_ood_respond(right_train)),
                  progress=False)
        return (confidence.ood_pool_table("fake", names, **kw),
                confidence.confidence_table("fake", names, ["ood_probe"], **kw))
    pool, table = pool_and_table("train question 0", "one")
    assert list(pool.columns) == list(OOD_POOL_COLUMNS)
    targets = [t for t in names if (pool["scored_by"] == t).any()]
    assert "gsm8k" in targets and len(targets) >= 2
    for t in targets:   # each target's probe scored every dataset's evaluation items
        block = pool[pool["scored_by"] == t]
        assert block.groupby("dataset").size().to_dict() == \
            table[table["method"] == "ood_probe"].groupby("dataset").size().to_dict()
        # its own block is its row in the confidence table (the same stored probe)
        own = block[block["dataset"] == t].set_index("item_id")["confidence"]
        rows = table[(table["dataset"] == t)].set_index("item_id")["confidence"]
        pd.testing.assert_series_equal(own, rows, check_names=False)
    # gsm8k's train labels change: the blocks of the probes that saw them change, gsm8k's own
    # (trained without gsm8k) does not
    pool2, _ = pool_and_table("train question 2", "two")
    g1 = pool[pool["scored_by"] == "gsm8k"].reset_index(drop=True)
    g2 = pool2[pool2["scored_by"] == "gsm8k"].reset_index(drop=True)
    pd.testing.assert_frame_equal(g1, g2)
    others = [t for t in targets if t != "gsm8k"]
    assert any(not np.allclose(pool.loc[pool["scored_by"] == t, "confidence"],
                               pool2.loc[pool2["scored_by"] == t, "confidence"]) for t in others)


def test_sample_discards_are_counted_from_the_cache(use_data_dir):
    from routelib import models
    be = FakeBackend(name="smollm2-135m")
    be.model_id = models.model_id("smollm2-135m")
    replies = iter(["", "", "", "", ""] + [" B", "x", " B", " C", ""] + [" A"] * 20)

    class Scripted(FakeBackend):
        def generate(self, requests):
            out = super().generate(requests)
            for gens in out:
                for g in gens:
                    if requests[0].temperature > 0:
                        g.text = next(replies)
            return out
    sb = Scripted(name="smollm2-135m")
    sb.model_id = be.model_id
    table = confidence.confidence_table("smollm2-135m", ["commonsenseqa"], ["jaccard_degree"],
                                        limit=3, backend=sb, progress=False)
    counts = confidence.sample_discards("smollm2-135m", ["commonsenseqa", "gsm8k"], limit=3)
    # gsm8k is not cached: left out; commonsenseqa's 3 items: 5 + 2 ("x", "") + 0 samples discarded,
    # the item with nothing usable discarded
    assert counts[["dataset", "items", "samples", "discarded_samples", "discarded_items"]] \
        .values.tolist() == [["commonsenseqa", 3, 15, 7, 1]]
    assert int(table["discarded"].sum()) == 1
