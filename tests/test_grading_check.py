"""routelib.report.grading_check: candidate CoQA rules against hand labels."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from routelib.data import Record
from routelib.report import grading_check as G

ROOT = Path(__file__).resolve().parents[1]


def coqa(gold, aliases=()):
    return Record(id="coqa-x-1", dataset="coqa", type="free_form", domain="conversational",
                  question="q", context="c", choices=None, answer=gold, answer_text=gold,
                  aliases=tuple(aliases), subject=None)


def verdicts(record, response):
    scores = G.gold_scores(record, response)
    return {name: any(p(s) for s in scores) for name, p in G.rules().items()}


def test_gold_scores_by_hand():
    [s] = G.gold_scores(coqa("Richard and Ethel."), "Richard")  # 1 of 3 gold tokens
    assert not s["exact"] and s["recall"] == pytest.approx(1 / 3) and s["precision"] == 1.0
    assert s["f1"] == pytest.approx(0.5)


def test_rules_on_hand_built_answers():
    part = verdicts(coqa("Richard and Ethel."), "Richard")          # F1 1/2, recall 1/3
    assert part["f1>=0.5"] and not part["f1>=0.6"] and not part["recall=1"]
    assert not part["recall=1 or f1>=0.6"] and not part["exact"]
    two = verdicts(coqa("Celebrity chef.", ["chef"]), "hes chef")   # F1 2/3 against "chef"
    assert two["f1>=0.67"] and not two["f1>=0.75"] and two["recall=1"]
    # gold's 3 tokens all inside a 13-token answer: recall 1, precision 3/13, F1 0.375
    long = verdicts(coqa("form of depression"),
                    "teens can experience form of depression that could have big effects on health")
    assert long["recall=1"] and not long["f1>=0.5"] and not long["recall=1 & precision>=0.5"]
    yes = verdicts(coqa("yes"), "No, he did not")
    assert not any(yes.values())                                     # yes/no gold: first word
    assert all(verdicts(coqa("Woking."), "woking").values())         # exact match


def test_agreement_counts_and_kappa():
    items = pd.DataFrame(dict(model="m", label=[1, 1, 0, 0],
                              record=[coqa("a b"), coqa("c"), coqa("d"), coqa("e f g h")],
                              response=["a b", "x", "d", "e"]))
    t = G.agreement(items).set_index("rule")
    # exact: right on items 1 and 3 (item 3 is labelled wrong): tp 1, fp 1, fn 1, tn 1
    assert t.loc["exact", ["true_pos", "false_pos", "false_neg", "true_neg"]].tolist() == [1, 1, 1, 1]
    assert t.loc["exact", "kappa"] == pytest.approx(0.0)
    # f1>=0.5: item 4 has F1 2*(1*.25)/1.25 = 0.4: still wrong, same as exact
    assert t.loc["f1>=0.5", "agree"] == 2


@pytest.mark.skipif(not os.environ.get("ROUTELIB_DATA_DIR"), reason="needs ROUTELIB_DATA_DIR")
def test_committed_page_matches_the_labels_and_cache(monkeypatch):
    monkeypatch.setenv("ROUTELIB_CACHE_DIR", str(ROOT / "data_cache"))
    items = G.labelled_answers()
    assert len(items) == 100 and items["label"].isin([0, 1]).all()
    assert (ROOT / "docs" / "coqa_grading.md").read_text() == G.grading_markdown(items)
