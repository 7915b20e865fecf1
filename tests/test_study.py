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


def test_transfer_study_covers_strategies_and_targets():
    conf, llm = tables()
    table, errors = study.transfer_study(conf, llm, ["s"], ["perplexity"])
    assert set(errors["strategy"]) == {"calibration", "pooled", "single"}
    assert set(errors["target"]) == {"a", "b", "c"}
    assert (errors["mean_abs_ratio_error"] >= 0).all()
    means = study.transfer_means(errors)
    assert len(means) == 3


def test_llm_answers_refuses_to_compute_when_cached_only(use_data_dir):
    with pytest.raises(LookupError):
        study.llm_answers("smollm2-135m", ["gsm8k"], limit=2)
