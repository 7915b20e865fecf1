"""routelib.uq.metrics: AUROC (undefined cases, discarded items), bootstrap intervals, the table."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from routelib.uq import metrics as M


def test_perfect_reversed_and_hand_computed():
    correct = [0, 0, 1, 1]
    assert M.auroc([0.1, 0.2, 0.8, 0.9], correct) == 1.0
    assert M.auroc([0.9, 0.8, 0.2, 0.1], correct) == 0.0
    assert M.auroc([0.5, 0.5, 0.5, 0.5], correct) == 0.5
    # pairs (pos, neg): (0.3>0.1) (0.3<0.4) (0.8>0.1) (0.8>0.4) -> 3/4
    assert M.auroc([0.1, 0.4, 0.3, 0.8], correct) == pytest.approx(0.75)
    assert M.auroc(np.array([0.1, 0.4, 0.3, 0.8]), np.array(correct, dtype=bool)) == 0.75


def test_undefined_when_one_class():
    assert M.auroc([0.1, 0.5, 0.9], [1, 1, 1]) is None
    assert M.auroc([0.1, 0.5, 0.9], [False, False, False]) is None
    assert M.auroc([], []) is None
    r = M.auroc_with_ci([0.1, 0.5, 0.9], [1, 1, 1])
    assert r.value is None and r.ci_low is None and r.ci_high is None and r.n == 3


def test_nan_confidences_are_dropped_and_counted():
    conf = [0.1, math.nan, 0.8, math.nan, 0.9, 0.2]
    correct = [0, 1, 1, 0, 1, 0]
    r = M.auroc_result(conf, correct)
    assert (r.value, r.n, r.n_discarded, r.n_correct) == (1.0, 4, 2, 2)
    assert M.auroc(conf, correct) == 1.0
    # dropping the NaNs leaves one class only -> undefined, still counted
    r = M.auroc_result([0.3, math.nan, 0.4], [1, 0, 1])
    assert r.value is None and r.n_discarded == 1 and r.n == 2


def test_input_errors():
    with pytest.raises(ValueError, match="shape"):
        M.auroc([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="0/1 or bool"):
        M.auroc([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="inf"):
        M.auroc([0.1, math.inf], [1, 0])
    with pytest.raises(ValueError, match="grade"):
        M.auroc([0.1, 0.2], [1.0, math.nan])


def scores(n=120, seed=3):
    rng = np.random.default_rng(seed)
    correct = rng.random(n) < 0.6
    conf = rng.normal(0, 1, n) + 0.8 * correct
    return conf, correct


def test_rank_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    conf = rng.integers(0, 5, (20, 30)).astype(float)  # many ties
    corr = rng.random((20, 30)) < 0.5
    got = M._rank_auc(conf, corr.astype(int))
    want = [roc_auc_score(c, s) for s, c in zip(conf, corr)]
    np.testing.assert_allclose(got, want)


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    conf, correct = scores()
    r = M.auroc_with_ci(conf, correct, n_boot=500, seed=50)
    assert r.value == pytest.approx(roc_auc_score(correct, conf))
    assert r.ci_low < r.value < r.ci_high and 0 <= r.ci_low and r.ci_high <= 1
    assert r.n_boot_skipped == 0
    assert r == M.auroc_with_ci(conf, correct, n_boot=500, seed=50)
    other = M.auroc_with_ci(conf, correct, n_boot=500, seed=51)
    assert (other.ci_low, other.ci_high) != (r.ci_low, r.ci_high)
    narrow = M.auroc_with_ci(conf, correct, n_boot=500, seed=50, alpha=0.5)
    assert r.ci_low < narrow.ci_low < narrow.ci_high < r.ci_high


def test_bootstrap_never_skips_resamples():
    # one wrong item among 4: a plain bootstrap would lack it in (3/4)^4 = 32% of resamples;
    # the stratified one keeps it in every resample
    r = M.auroc_with_ci([0.9, 0.8, 0.7, 0.1], [1, 1, 1, 0], n_boot=400, seed=50)
    assert r.value == 1.0 and r.ci_low == r.ci_high == 1.0
    assert r.n_boot_skipped == 0


def conf_table():
    rows = []
    conf, correct = scores(40)
    for slm in ("qwen", "llama"):
        for i, (c, k) in enumerate(zip(conf, correct)):
            rows.append(dict(slm=slm, dataset="gsm8k", item_id=f"g{i}", method="perplexity",
                             confidence=c if slm == "qwen" else -c, correct=bool(k)))
            rows.append(dict(slm=slm, dataset="gsm8k", item_id=f"g{i}", method="verbal_1s",
                             confidence=math.nan if i % 4 == 0 else c, correct=bool(k)))
        for i in range(3):  # all correct: undefined
            rows.append(dict(slm=slm, dataset="boolq", item_id=f"b{i}", method="perplexity",
                             confidence=0.1 * i, correct=True))
    return pd.DataFrame(rows), conf, correct


def test_auroc_table():
    df, conf, correct = conf_table()
    out = M.auroc_table(df)
    assert list(out.columns) == list(M.AUROC_COLUMNS) and len(out) == 6
    key = out.set_index(["slm", "dataset", "method"])
    base = roc_auc_score(correct, conf)
    assert key.loc[("qwen", "gsm8k", "perplexity"), "auroc"] == pytest.approx(base)
    assert key.loc[("llama", "gsm8k", "perplexity"), "auroc"] == pytest.approx(1 - base)
    v = key.loc[("qwen", "gsm8k", "verbal_1s")]
    assert v["n"] == 30 and v["n_discarded"] == 10
    keep = np.arange(40) % 4 != 0
    assert v["auroc"] == pytest.approx(roc_auc_score(correct[keep], conf[keep]))
    undefined = key.loc[("qwen", "boolq", "perplexity")]
    assert math.isnan(undefined["auroc"]) and undefined["n"] == 3 == undefined["n_correct"]
    assert out["ci_low"].isna().all()

    with_ci = M.auroc_table(df, ci=True, n_boot=200)
    defined = with_ci.dropna(subset=["auroc"])
    assert len(defined) == 4
    assert (defined["ci_low"] <= defined["auroc"]).all()
    assert (defined["auroc"] <= defined["ci_high"]).all()
    pd.testing.assert_frame_equal(with_ci, M.auroc_table(df, ci=True, n_boot=200))


def test_auroc_table_checks_its_input():
    df, _, _ = conf_table()
    with pytest.raises(KeyError, match="confidence"):
        M.auroc_table(df.drop(columns="confidence"))
    with pytest.raises(ValueError, match="duplicate"):
        M.auroc_table(pd.concat([df, df.iloc[:1]]))


def test_stratified_bootstrap_keeps_both_classes_hand_computed():
    # one correct item (0.5) and three wrong (0.1, 0.9, 0.9): every stratified resample keeps
    # the correct item, so its AUROC is the share of resampled wrong items below 0.5,
    # Binomial(3, 1/3) / 3: P(0) = 8/27, P(1/3) = 12/27, P(2/3) = 6/27, P(1) = 1/27
    conf, correct = [0.5, 0.1, 0.9, 0.9], [1, 0, 0, 0]
    r = M.auroc_with_ci(conf, correct, n_boot=4000, seed=50)
    assert r.value == pytest.approx(1 / 3) and r.n_boot_skipped == 0
    assert (r.ci_low, r.ci_high) == (0.0, 1.0)  # P(0) and P(1) both exceed 2.5%
    mid = M.auroc_with_ci(conf, correct, n_boot=4000, seed=50, alpha=0.8)  # 40% and 60%
    assert mid.ci_low == mid.ci_high == pytest.approx(1 / 3)


def test_estimable_needs_ten_of_each_class():
    assert M.MIN_CORRECT == M.MIN_WRONG == 10
    assert M.is_estimable(10, 20) and not M.is_estimable(9, 200) and not M.is_estimable(191, 200)
    t = pd.DataFrame({"n": [200, 200, 20, 15], "n_correct": [1, 100, 10, 10]})
    assert M.estimable_mask(t).tolist() == [False, True, True, False]
