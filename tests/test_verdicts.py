"""routelib.report.verdicts: each rule gives each verdict on hand-built evidence and tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from routelib.report import verdicts as V
from routelib.report.verdicts import Evidence, decide


@pytest.mark.parametrize("e, expected", [
    (Evidence(3, 3, 0), V.UNDECIDED),          # too few estimable settings
    (Evidence(10, 0, 0), V.UNDECIDED),         # nothing significant either way
    (Evidence(22, 1, 0), V.UNDECIDED),         # under 10% significant either way: too weak
    (Evidence(10, 5, 1), V.REPRODUCED),        # half support, 10% against
    (Evidence(10, 5, 2), V.PARTLY),            # too much against for "reproduced"
    (Evidence(10, 2, 0), V.PARTLY),            # some support, none against
    (Evidence(10, 1, 6), V.NOT_REPRODUCED),    # the opposite holds
    (Evidence(10, 0, 1), V.NOT_REPRODUCED),    # only contradicted
    (Evidence(10, 2, 3), V.NOT_REPRODUCED),    # more against than for
    (Evidence(10, 2, 2), V.UNDECIDED),         # a tie
])
def test_decide(e, expected):
    assert decide(e) == expected


def test_rule_is_configurable_and_worded_from_its_constants():
    e = Evidence(10, 3, 0)
    assert decide(e) == V.PARTLY
    assert decide(e, V.Rule(min_settings=4, share=0.3, max_against=0.1)) == V.REPRODUCED
    text = V.rule_text(V.Rule(min_settings=7, share=0.6, max_against=0.2))
    assert "fewer than 7 settings" in text and "60%" in text and "20%" in text


def test_inconsistent_counts_are_refused():
    with pytest.raises(ValueError):
        Evidence(3, 2, 2)


def test_interval_sign_and_count():
    assert V.interval_sign(0.6, 0.7, 0.4, 0.55) == 1
    assert V.interval_sign(0.3, 0.4, 0.45, 0.6) == -1
    assert V.interval_sign(0.5, 0.7, 0.6, 0.8) == 0
    assert np.isnan(V.interval_sign(None, 0.7, 0.6, 0.8))
    assert V.count([1, 1, 0, -1, np.nan]) == Evidence(4, 2, 1)


def auroc_rows(rows):
    """(slm, dataset, method, auroc, low, high, n_correct) -> an AUROC table of n = 100."""
    return pd.DataFrame([dict(slm=s, dataset=d, method=m, auroc=a, ci_low=lo, ci_high=hi,
                              n=100, n_discarded=0, n_correct=k)
                         for s, d, m, a, lo, hi, k in rows])


def test_group_vs_rest_counts_only_estimable_settings():
    t = auroc_rows([
        ("s", "d1", "perplexity", 0.80, 0.72, 0.88, 50), ("s", "d1", "verbal_1s", 0.55, 0.45, 0.65, 50),
        ("s", "d2", "perplexity", 0.52, 0.40, 0.64, 50), ("s", "d2", "verbal_1s", 0.80, 0.70, 0.90, 50),
        ("s", "d3", "perplexity", 0.60, 0.50, 0.70, 50), ("s", "d3", "verbal_1s", 0.58, 0.48, 0.68, 50),
        ("s", "d4", "perplexity", 0.90, 0.85, 0.95, 5), ("s", "d4", "verbal_1s", 0.10, 0.05, 0.15, 5),
    ])
    # d1 supports, d2 contradicts, d3 overlaps, d4 has 5 correct items: not estimable
    assert V.group_vs_rest(t, ["perplexity"]) == Evidence(3, 1, 1)
    assert V.group_vs_rest(t, ["verbal_1s"], higher=False) == Evidence(3, 1, 1)
    assert V.estimable_auroc(t)["dataset"].tolist() == ["d1", "d1", "d2", "d2", "d3", "d3"]


def test_alignment_routes_better():
    auroc = auroc_rows([
        ("s", "d1", "m", 0.7, 0.6, 0.8, 50),   # above chance and beats random: supports
        ("s", "d2", "m", 0.7, 0.6, 0.8, 50),   # above chance but loses to random: contradicts
        ("s", "d3", "m", 0.3, 0.2, 0.4, 50),   # below chance and loses to random: supports
        ("s", "d4", "m", 0.5, 0.4, 0.6, 50),   # interval contains 0.5: neither
    ])
    summary = pd.DataFrame(dict(slm="s", dataset=["d1", "d2", "d3", "d4"], method="m",
                                auc_uq=[0.6, 0.4, 0.4, 0.6], auc_random=0.5))
    assert V.alignment_routes_better(auroc, summary) == Evidence(4, 2, 1)


def test_two_proportions_sign():
    assert V.two_proportions_sign(38, 40, 80, 160) == 1      # 95% vs 50%
    assert V.two_proportions_sign(2, 40, 80, 160) == -1
    assert V.two_proportions_sign(21, 40, 80, 160) == 0      # 52.5% vs 50%
    assert np.isnan(V.two_proportions_sign(1, 0, 3, 10))


def test_confident_items_better():
    n = 200
    conf = np.linspace(0, 1, n)
    good = pd.DataFrame(dict(slm="s", dataset="a", method="m", confidence=conf,
                             correct=conf > 0.5))           # confident items are right
    bad = good.assign(dataset="b", correct=conf < 0.5)      # confident items are wrong
    few = good.assign(dataset="c", correct=conf > 0.97)     # 6 correct: not estimable
    t = pd.concat([good, bad, few], ignore_index=True)
    assert V.confident_items_better(t) == Evidence(2, 1, 1)


def test_assess_marks_untestable_claims_and_decides_the_rest():
    auroc = auroc_rows([(f"s{i}", "d", m, a, lo, hi, 50)
                        for i in range(4)
                        for m, a, lo, hi in (("verbal_1s", 0.55, 0.50, 0.60),
                                             ("avg_token_prob", 0.80, 0.75, 0.85))])
    summary = auroc[["slm", "dataset", "method"]].assign(auc_uq=0.6, auc_random=0.5)
    conf = pd.DataFrame(dict(slm="s0", dataset="d", method=["verbal_1s", "avg_token_prob"],
                             confidence=0.5, correct=True))
    t = V.assess(auroc, summary, conf).set_index("claim")
    assert t.loc["obs1", "reason"].startswith("none of trained_probe")
    assert t.loc["obs1", "verdict"] == V.UNDECIDED
    # verbalization below the other method in all 4 settings: reproduced
    assert t.loc["obs2", ["estimable", "supports", "verdict"]].tolist() == [4, 4, V.REPRODUCED]
    # avg_token_prob above chance and beating random in 4 settings; verbal_1s's interval
    # touches 0.5 (neither): 4 of 8 support
    assert t.loc["obs3", ["estimable", "supports", "contradicts"]].tolist() == [8, 4, 0]
    assert t.loc["ins1", "reason"] == "only 0 estimable settings"   # 1 item per cell
    assert t.loc["ins2", "reason"] == V.NO_RULE_YET and t.loc["ins2", "verdict"] == V.UNDECIDED
