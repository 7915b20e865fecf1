"""routelib.routing.study on synthetic tables: summaries agree with the definitions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from routelib.routing import simulation as R, study


def tables(n=60, seed=50):
    rng = np.random.default_rng(seed)
    conf, llm = [], []
    for ds in ("a", "b", "c"):
        slm_ok = rng.random(n) < 0.5
        llm_ok = rng.random(n) < 0.8
        for m, signal in (("perplexity", 3.0), ("verbal_1s", 0.0)):
            c = signal * slm_ok + rng.normal(size=n)
            if m == "verbal_1s":
                c[:7] = np.nan  # discarded
            conf += [dict(slm="s", dataset=ds, item_id=f"{ds}{i:03d}", method=m, confidence=x,
                          correct=bool(k)) for i, (x, k) in enumerate(zip(c, slm_ok))]
        llm += [dict(llm="L", dataset=ds, item_id=f"{ds}{i:03d}", correct=bool(k))
                for i, k in enumerate(llm_ok)]
    return pd.DataFrame(conf), pd.DataFrame(llm)


def test_summary_endpoints_and_reference_routers():
    conf, llm = tables()
    sim = study.simulate_routable(conf, llm)
    summ = study.routing_summary(sim).set_index(["dataset", "method"])
    for ds in "abc":
        kept = conf[(conf.dataset == ds) & (conf.method == "verbal_1s") & conf.confidence.notna()]
        row = summ.loc[(ds, "verbal_1s")]
        assert row["n"] == len(kept) == 53                    # 7 discarded items left out
        assert row["slm_accuracy"] == pytest.approx(kept["correct"].mean())
        llm_kept = llm[llm.item_id.isin(kept.item_id)]
        assert row["llm_accuracy"] == pytest.approx(llm_kept["correct"].mean())
    assert (summ["auc_oracle"] >= summ["auc_uq"] - 1e-12).all()
    assert (summ["ratio_95_oracle"] <= summ["ratio_95_random"] + 1e-12).all()
    means = study.method_means(study.routing_summary(sim)).set_index("method")
    assert means.loc["perplexity", "beats_random"] == 3        # informative on every dataset
    assert means.loc["perplexity", "auc_uq"] > means.loc["verbal_1s", "auc_uq"]


# Transfer errors of the tables above: 60 items per target and 19 ratios strictly between 0
# and 1, so a mean error is a count of items over 60 x 19 = 1140 (x 3 calibration runs, x 2
# single sources), a max one over 60 (x 3, x 2). Deterministic (seed 50, 51, 52).
TRANSFER = {  # (target, strategy): (mean abs ratio error, max abs ratio error, mean acc. gap)
    ("a", "calibration"): (185 / 3420, 17 / 180, -45 / 3420),
    ("a", "pooled"): (67 / 1140, 7 / 60, -8 / 1140),
    ("a", "single"): (127 / 2280, 12 / 120, -17 / 2280),
    ("b", "calibration"): (149 / 3420, 14 / 180, -13 / 3420),
    ("b", "pooled"): (21 / 1140, 4 / 60, -9 / 1140),
    ("b", "single"): (96 / 2280, 9 / 120, -22 / 2280),
    ("c", "calibration"): (222 / 3420, 26 / 180, 81 / 3420),
    ("c", "pooled"): (54 / 1140, 6 / 60, 23 / 1140),
    ("c", "single"): (121 / 2280, 13 / 120, 46 / 2280),
}


def pooled_ratio_error(conf: pd.DataFrame, target: str, ratio: float) -> float:
    """|realized - requested| of the pooled strategy, written out: the threshold is the
    midpoint of the k-th and (k+1)-th smallest confidence of the other datasets, k = ratio x n
    rounded half up; a target item is routed when its confidence is below it."""
    rows = conf[conf.method == "perplexity"]
    other = np.sort(rows.loc[rows.dataset != target, "confidence"].to_numpy())
    own = rows.loc[rows.dataset == target, "confidence"].to_numpy()
    k = int(np.floor(ratio * len(other) + 0.5))
    threshold = (other[k - 1] + other[k]) / 2
    return abs(float((own < threshold).mean()) - ratio)


def test_transfer_study_errors_are_the_hand_checked_values():
    conf, llm = tables()
    table, errors = study.transfer_study(conf, llm, ["s"], ["perplexity"])
    assert len(table) == 3 * 3 * 21 and len(errors) == len(TRANSFER)
    got = errors.set_index(["target", "strategy"])
    for key, values in TRANSFER.items():
        row = got.loc[key]
        assert (row["mean_abs_ratio_error"], row["max_abs_ratio_error"],
                row["mean_accuracy_gap"]) == pytest.approx(values, abs=1e-12), key
    # the pooled rows again, from the threshold rule written out above
    ratios = np.linspace(0, 1, 21)[1:-1]
    for target in "abc":
        direct = [pooled_ratio_error(conf, target, r) for r in ratios]
        assert got.loc[(target, "pooled"), "mean_abs_ratio_error"] == \
            pytest.approx(np.mean(direct), abs=1e-12)
        assert got.loc[(target, "pooled"), "max_abs_ratio_error"] == \
            pytest.approx(max(direct), abs=1e-12)
    means = study.transfer_means(errors).set_index("strategy")
    assert len(means) == 3
    assert means.loc["pooled", "mean_abs_ratio_error"] == \
        pytest.approx((67 + 21 + 54) / 1140 / 3, abs=1e-12)


def test_llm_answers_refuses_to_compute_when_cached_only(use_data_dir):
    with pytest.raises(LookupError):
        study.llm_answers("smollm2-135m", ["gsm8k"], limit=2)
