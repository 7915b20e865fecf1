"""routelib.report.accuracy and routelib.report.selection on fake backends and hand-computed numbers."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from routelib.answers.answer import AnswerConfig
from routelib.cache import runs
from routelib.models.fake import FakeBackend
from routelib.report import accuracy as report, selection


def test_wilson_interval_hand_values():
    lo, hi = report.wilson(5, 10)
    # p = 0.5, n = 10: centre 0.5, half-width 1.96*sqrt(.025+.0096)/1.3842 = 0.2366
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)
    lo, hi = report.wilson(0, 20)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.1611, abs=1e-3)
    assert all(math.isnan(x) for x in report.wilson(0, 0))


def test_mcnemar_exact_p_values():
    assert report.mcnemar_p(0, 0) == 1.0
    # 6 vs 0 discordant pairs: 2 * 0.5**6 = 0.03125
    assert report.mcnemar_p(6, 0) == pytest.approx(0.03125)
    assert report.mcnemar_p(3, 3) == pytest.approx(1.0)


def _results(rows):
    return pd.DataFrame(rows, columns=["model", "group", "style", "chat", "dataset", "n",
                                       "accuracy"])


def test_choose_takes_the_best_mean_and_the_earlier_candidate_on_ties():
    res = _results([
        ("m", "mcq", "options", False, "a", 50, 0.40), ("m", "mcq", "options", False, "b", 50, 0.20),
        ("m", "mcq", "letters", False, "a", 50, 0.10), ("m", "mcq", "letters", False, "b", 50, 0.60),
        ("m", "math", "generate", False, "g", 30, 0.10),
        ("m", "math", "generate", True, "g", 30, 0.10),
    ])
    best = selection.choose(res).set_index("group")
    assert best.at["mcq", "style"] == "letters"          # mean 0.35 beats 0.30
    assert best.at["math", "chat"] == False               # tie: the earlier candidate
    md = selection.selection_markdown(res)
    assert "| m | mcq | **letters** | **35.0%** | 10 / 60 | 100 |" in md
    assert "| m | mcq | options | 30.0% | 40 / 20 | 100 |" in md


def test_candidates_offer_chat_only_to_chat_models():
    assert [c.chat for c in selection.candidates("mcq", chat_model=False)] == [False, False]
    assert sum(c.chat for c in selection.candidates("mcq", chat_model=True)) == 2
    assert selection.candidates("math", chat_model=False) == [AnswerConfig("generate")]


def test_selection_uses_train_splits_only(use_data_dir, monkeypatch):
    seen = []

    def fake_generate(model, ds, split, **kw):
        seen.append((ds, split))
        return pd.DataFrame({"correct": [True, False]})
    monkeypatch.setattr(runs, "generate", fake_generate)
    res = selection.run_selection("smollm2-135m", groups=("mcq", "conversational"))
    assert {s for _, s in seen} == {"train"}
    assert set(res["accuracy"]) == {0.5}
    assert len(res) == 4 * 4 + 2 * 1   # 4 MCQ candidates x 4 datasets + 2 CoQA candidates


def test_tier_gaps_pairs_items_and_reads_only_the_cache(use_data_dir, monkeypatch):
    # a "small" model that answers 3 and a "big" one that answers 42 on the gsm8k fixture
    # (golds 18, 3, 42, 42, 7): small is right on item 1, big on items 2 and 3
    monkeypatch.setattr(report.models, "model_id", lambda m: f"fake:{m}")
    monkeypatch.setattr(report, "default_config", lambda ds, m=None: AnswerConfig("generate"))
    runs.generate("small", "gsm8k", backend=FakeBackend(lambda p: "The answer is 3.", name="small"),
                  progress=False, cfg=AnswerConfig("generate"))
    runs.generate("big", "gsm8k", backend=FakeBackend(name="big"), progress=False,
                  cfg=AnswerConfig("generate"))
    gaps = report.tier_gaps("big", ["small"], datasets=["gsm8k"]).iloc[0]
    assert (gaps.n, gaps.llm_only, gaps.slm_only) == (5, 2, 1)
    assert gaps.gap == pytest.approx(0.4 - 0.2)
    assert gaps.p_mcnemar == pytest.approx(1.0)
    with pytest.raises(runs.RunError, match="missing from the cache"):
        report.tier_gaps("nobody", ["small"], datasets=["gsm8k"])


def test_accuracy_and_throughput_markdown_from_a_table():
    table = pd.DataFrame([
        dict(model="s", dataset="gsm8k", group="math", n=100, accuracy=0.10, ci_low=0.055,
             ci_high=0.174, config="generate", items_per_s=1.5, tokens_per_s=120.0),
        dict(model="l", dataset="gsm8k", group="math", n=100, accuracy=0.30, ci_low=0.219,
             ci_high=0.396, config="generate-chat", items_per_s=0.5, tokens_per_s=60.4),
    ])
    md = report.accuracy_markdown(table)
    assert "| gsm8k | 100 | 10.0% [6, 17] | 30.0% [22, 40] | l |" in md
    tp = report.throughput_markdown(table)
    assert "| gsm8k | generate/generate-chat | 1.50 (120) | 0.50 (60) |" in tp


def test_tier_gaps_markdown_verdicts():
    gaps = pd.DataFrame([
        dict(dataset="a", slm="s1", llm="L", n=100, gap=0.20, p_mcnemar=0.001),
        dict(dataset="a", slm="s2", llm="L", n=100, gap=0.05, p_mcnemar=0.30),
        dict(dataset="b", slm="s1", llm="L", n=100, gap=-0.10, p_mcnemar=0.01),
        dict(dataset="b", slm="s2", llm="L", n=100, gap=0.0, p_mcnemar=1.0),
    ])
    md = report.tier_gaps_markdown(gaps)
    assert "| a | 100 | +20.0 (p=0.001) | +5.0 (p=0.3) | s1 |" in md
    assert "| b | 100 | -10.0 (p=0.01) | +0.0 (p=1) | no significant gain |" in md
