"""routelib.routing.calibration: Algorithm 1's stratified sample, threshold transfer and its errors."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from routelib.config import SEED
from routelib.routing import calibration as cal, simulation as routing, transfer_runs

# hand-made pool over [0, 3] with 3 bins [0,1) [1,2) [2,3]: 25, 15 and 4 items
BIN_VALUES = [np.linspace(0, 0.96, 25), 1 + np.linspace(0, 0.9, 15), [2.2, 2.5, 2.8, 3.0]]


def _pool(values=BIN_VALUES, dataset="d"):
    conf = np.concatenate([np.asarray(v, float) for v in values])
    return pd.DataFrame({"slm": "s", "method": "m", "dataset": dataset,
                         "item_id": [f"{dataset}{i:03d}" for i in range(len(conf))],
                         "confidence": conf, "correct": True})


def _tables(means: dict[str, float], n: int = 5000, seed: int = SEED):
    """Confidence ~ N(mean of the dataset, 1); SLM right w.p. sigmoid(confidence); LLM 80%."""
    rng = np.random.default_rng(seed)
    conf_parts, llm_parts = [], []
    for ds, mu in means.items():
        c = rng.normal(mu, 1.0, n)
        ids = [f"{ds}-{i}" for i in range(n)]
        conf_parts.append(pd.DataFrame({"slm": "s", "dataset": ds, "item_id": ids, "method": "m",
                                        "confidence": c,
                                        "correct": rng.random(n) < 1 / (1 + np.exp(-c))}))
        llm_parts.append(pd.DataFrame({"llm": "L", "dataset": ds, "item_id": ids,
                                       "correct": rng.random(n) < 0.8}))
    return pd.concat(conf_parts, ignore_index=True), pd.concat(llm_parts, ignore_index=True)


# ---- Algorithm 1 ---------------------------------------------------------------------------
def test_half_up_rounding_takes_round_half_up_of_ten_percent_and_no_minimum():
    c = cal.build_calibration_set(_pool(), n_bins=3, rounding="half_up")
    assert c.groupby("bin").size().to_dict() == {0: 3, 1: 2}      # 2.5 -> 3, 1.5 -> 2, 0.4 -> 0
    meta = c.attrs["calibration"]
    assert meta["bin_counts"] == [25, 15, 4] and meta["sampled_counts"] == [3, 2, 0]
    assert meta["empty_sampled_bins"] == 1
    assert ((c["confidence"] >= c["bin"]) & (c["confidence"] < c["bin"] + 1)).all()
    assert not c["item_id"].duplicated().any()
    with_min = cal.build_calibration_set(_pool(), n_bins=3, min_per_bin=1, rounding="half_up")
    assert with_min.groupby("bin").size().to_dict() == {0: 3, 1: 2, 2: 1}


def test_the_maximum_falls_in_the_last_bin_and_a_constant_pool_in_bin_zero():
    edges = cal.bin_edges([0.0, 3.0], 3)
    assert cal.assign_bins([0.0, 0.999, 1.0, 2.5, 3.0], edges).tolist() == [0, 0, 1, 2, 2]
    c = cal.build_calibration_set(_pool([np.full(20, 0.4)]), n_bins=30)
    assert c["bin"].tolist() == [0, 0]


def test_default_thirty_bins_match_numpy_histogram_counts():
    pool = _pool([np.random.default_rng(SEED).beta(2, 5, 3000)])
    c = cal.build_calibration_set(pool, rounding="half_up")
    counts = np.histogram(pool["confidence"], bins=30)[0]
    expected = [routing.round_half_up(0.1 * n) for n in counts]
    assert c.attrs["calibration"]["sampled_counts"] == expected
    assert len(c) == sum(expected)
    # stochastic rounding (the default): each bin takes floor or ceil of 10%
    s = cal.build_calibration_set(pool)
    got = s.attrs["calibration"]["sampled_counts"]
    assert all(int(np.floor(0.1 * n)) <= k <= int(np.ceil(0.1 * n)) for n, k in zip(counts, got))


def test_stochastic_rounding_keeps_small_bins_in_expectation():
    # a sparse tail of 3-item bins: half-up never samples it, stochastic rounding does ~30% of runs
    rng = np.random.default_rng(SEED)
    pool = _pool([np.concatenate([rng.uniform(0.5, 1.0, 600), np.linspace(0.0, 0.45, 27)])])
    half_up = cal.build_calibration_set(pool, n_bins=30, rounding="half_up")
    assert half_up["confidence"].min() >= 0.5
    counts = np.array(cal.build_calibration_set(pool, n_bins=30).attrs["calibration"]
                      ["bin_counts"])
    tail = np.array([cal.build_calibration_set(pool, n_bins=30, seed=s).attrs["calibration"]
                     ["sampled_counts"] for s in range(200)])[:, :len(counts) // 2]
    # items drawn from the tail bins, averaged over 200 seeds, within 15% of 10% of the tail
    expected = 0.1 * counts[:len(counts) // 2].sum()
    assert abs(tail.sum(axis=1).mean() - expected) < 0.15 * expected


def test_sampling_is_deterministic_in_the_seed_and_ignores_row_order():
    pool = _pool([np.random.default_rng(SEED).random(2000)])
    a = cal.build_calibration_set(pool, seed=SEED)
    b = cal.build_calibration_set(pool.sample(frac=1, random_state=1), seed=SEED)
    pd.testing.assert_frame_equal(a, b)
    other = cal.build_calibration_set(pool, seed=SEED + 1)
    assert set(other["item_id"]) != set(a["item_id"])


def test_one_slm_and_method_per_calibration_set():
    pool = pd.concat([_pool(), _pool().assign(method="other")])
    with pytest.raises(cal.CalibrationError, match="one method"):
        cal.build_calibration_set(pool)
    with pytest.raises(cal.CalibrationError, match="finite"):
        cal.build_calibration_set(_pool([[0.1, math.inf]]))
    with pytest.raises(cal.CalibrationError, match="no item was drawn"):
        cal.build_calibration_set(_pool([[0.1, 0.2, 0.3]]))        # 30 bins of <= 1 item


def test_thresholds_from_calibration_use_the_routing_quantile_rule():
    t = cal.thresholds_from_calibration([0.4, 0.1, 0.3, 0.2], [0.0, 0.5, 0.25, 1.0])
    assert t.tolist() == pytest.approx([-math.inf, 0.25, 0.15, math.inf])   # k = 0, 2, 1, 4
    frame = pd.DataFrame({"confidence": [0.4, 0.1, 0.3, 0.2]})
    assert cal.thresholds_from_calibration(frame, [0.5]).tolist() == pytest.approx([0.25])


# ---- transfer ------------------------------------------------------------------------------
def test_a_calibration_set_from_the_targets_own_distribution_transfers_its_ratios():
    conf, llm = _tables({"a": 0.0, "b": 0.0, "c": 0.0})
    res = pd.concat([cal.transfer(conf, llm, "s", "m", "c", strategy=s) for s in cal.STRATEGIES])
    assert list(res.columns) == list(cal.TRANSFER_COLUMNS)
    err = transfer_runs.transfer_errors(res).set_index("strategy")
    # the calibration set holds ~1000 items: quantile sd <= 0.016, plus the target's 0.007
    assert (err["mean_abs_ratio_error"] < 0.03).all()
    assert (err["mean_abs_accuracy_gap"] < 0.03).all()
    exact = res[res["ratio"].isin([0.0, 1.0])]
    assert (exact["realized_ratio"] == exact["ratio"]).all()
    gt = routing.accuracy_curve(*_target_arrays(conf, llm, "c"))["accuracy"].to_numpy()
    assert (res[res.strategy == "pooled"]["ground_truth_accuracy"].to_numpy() == gt).all()


def _target_arrays(conf, llm, target):
    c = conf[conf.dataset == target].sort_values("item_id")
    g = llm[llm.dataset == target].sort_values("item_id")
    return c["correct"].to_numpy(), g["correct"].to_numpy(), c["confidence"].to_numpy()


def test_a_shifted_target_breaks_pooled_and_calibration_thresholds():
    # the paper's concern: d's confidences sit one sd above a, b, c's
    conf, llm = _tables({"a": 0.0, "b": 0.0, "c": 0.0, "d": 1.0, "e": 1.0}, n=3000)
    res = pd.concat([cal.transfer(conf, llm, "s", "m", "d", strategy=s, runs=1)
                     for s in ("calibration", "pooled")]
                    + [cal.transfer(conf, llm, "s", "m", "d", strategy="single", source="e")])
    err = transfer_runs.transfer_errors(res).set_index("strategy")
    assert err.loc["pooled", "mean_abs_ratio_error"] > 0.15
    assert err.loc["calibration", "mean_abs_ratio_error"] > 0.15
    assert err.loc["single", "mean_abs_ratio_error"] < 0.03      # a source like the target
    assert err.loc["pooled", "mean_accuracy_gap"] < -0.01         # and it costs accuracy
    mid = res[(res.strategy == "pooled") & (res.ratio == 0.5)]
    assert mid["realized_ratio"].iloc[0] < 0.35                   # routes too little


def test_calibration_runs_average_over_seeds_seed_plus_i():
    conf, llm = _tables({"a": 0.0, "b": 0.5, "c": 0.0}, n=1000)
    ratios = [0.0, 0.3, 0.6, 1.0]
    res = cal.transfer(conf, llm, "s", "m", "c", ratios=ratios, runs=3, seed=7)
    assert (res["n_repeats"] == 3).all() and res["source"].iloc[0] == "a,b"
    target = conf[conf.dataset == "c"]
    realized = [[routing.apply_threshold(target["confidence"], t).mean()
                 for t in cal.thresholds_from_calibration(
                     cal.build_calibration_set(conf[conf.dataset != "c"], seed=s), ratios)]
                for s in (7, 8, 9)]
    assert res["realized_ratio"].to_numpy() == pytest.approx(np.mean(realized, axis=0))
    assert res["ratio_error"].to_numpy() == \
        pytest.approx(np.abs(np.array(realized) - ratios).mean(axis=0))


def test_single_without_source_averages_over_each_other_dataset():
    conf, llm = _tables({"a": 0.0, "b": 1.0, "c": 0.0}, n=1000)
    both = cal.transfer(conf, llm, "s", "m", "c", strategy="single")
    each = [cal.transfer(conf, llm, "s", "m", "c", strategy="single", source=s) for s in "ab"]
    assert (both["n_repeats"] == 2).all() and both["source"].iloc[0] == "a,b"
    for col in ("realized_ratio", "ratio_error", "accuracy"):
        assert both[col].to_numpy() == pytest.approx((each[0][col] + each[1][col]).to_numpy() / 2)


def test_transfer_errors_say_what_is_wrong():
    conf, llm = _tables({"a": 0.0, "b": 0.0}, n=50)
    with pytest.raises(cal.CalibrationError, match="target dataset 'zz'"):
        cal.transfer(conf, llm, "s", "m", "zz")
    with pytest.raises(cal.CalibrationError, match="must differ from the target"):
        cal.transfer(conf, llm, "s", "m", "a", strategy="single", source="a")
    with pytest.raises(cal.CalibrationError, match="strategy 'best'"):
        cal.transfer(conf, llm, "s", "m", "a", strategy="best")
    two = pd.concat([llm, llm.assign(llm="M")])
    with pytest.raises(cal.CalibrationError, match="name one with llm="):
        cal.transfer(conf, two, "s", "m", "a")
    with pytest.raises(routing.RoutingError, match=r"no correctness for 1 of 50"):
        cal.transfer(conf, llm[llm.item_id != "a-3"], "s", "m", "a")


def test_transfer_errors_hand_values_leave_out_the_endpoints():
    rows = []
    for target, errs, accs in (("x", [0.0, 0.1, 0.3, 0.0], [0.5, 0.6, 0.7, 0.8]),
                               ("y", [0.0, 0.2, 0.2, 0.0], [0.5, 0.9, 0.9, 0.8])):
        for r, e, a in zip([0.0, 0.3, 0.6, 1.0], errs, accs):
            rows.append(("s", "L", "m", target, "pooled", "o", r, r, e, a, 0.7, 1))
    res = pd.DataFrame(rows, columns=list(cal.TRANSFER_COLUMNS))
    out = transfer_runs.transfer_errors(res)
    assert list(out.columns) == list(cal.ERROR_COLUMNS)
    out = out.set_index("target")
    assert out.loc["x", "mean_abs_ratio_error"] == pytest.approx(0.2)
    assert out.loc["x", "max_abs_ratio_error"] == pytest.approx(0.3)
    assert out.loc["x", "mean_accuracy_gap"] == pytest.approx(-0.05)       # (-.1 + 0) / 2
    assert out.loc["x", "mean_abs_accuracy_gap"] == pytest.approx(0.05)
    assert out.loc["y", "mean_accuracy_gap"] == pytest.approx(0.2)
    full = transfer_runs.transfer_errors(res, include_endpoints=True).set_index("target")
    assert full.loc["x", "mean_abs_ratio_error"] == pytest.approx(0.1)


# ---- export --------------------------------------------------------------------------------
def test_export_writes_the_csv_and_a_readme_with_the_parameters(tmp_path):
    pool = pd.concat([_pool(dataset="p"), _pool(dataset="q")], ignore_index=True)
    c = cal.build_calibration_set(pool, n_bins=3, seed=SEED)
    path = cal.export_calibration_set(c, tmp_path / "cal")
    back = pd.read_csv(path)
    assert list(back.columns) == ["slm", "method", "dataset", "item_id", "confidence", "bin"]
    assert back["item_id"].tolist() == c["item_id"].tolist() and len(back) == 9   # bins 50, 30, 8
    readme = (tmp_path / "cal" / "README.md").read_text()
    for text in ("Algorithm 1", "3 equal-width bins", "seed=50", "p (44), q (44)",
                 "items: 9", "UQ method: m", "`routelib.routing.calibration.export_calibration_set`",
                 "- sampling: 0.1 x bin size rounded stochastically (down, or up with "
                 "probability equal to the fractional part, drawn from the same generator) "
                 "items per bin, at least 0 from a non-empty bin, without replacement"):
        assert text in readme
    assert "round-half-up(0.1" not in readme        # the sampler's rounding is stochastic
    # the threshold rule of the router, which does round half up, is stated as such
    assert "k = round-half-up(r x n)" in readme
    half = cal.build_calibration_set(pool, n_bins=3, seed=SEED, rounding="half_up")
    cal.export_calibration_set(half, tmp_path / "half")
    text = (tmp_path / "half" / "README.md").read_text()
    assert "- sampling: round-half-up(0.1 x bin size) items per bin" in text
    assert "stochastically" not in text
    (tmp_path / "file").write_text("x")
    with pytest.raises(cal.CalibrationError, match="pass a directory"):
        cal.export_calibration_set(c, tmp_path / "file")


# ---- the random-sample baseline and per-run spread -----------------------------------------
def test_random_sample_is_a_plain_ten_percent_draw_in_the_seed():
    pool = _pool()                                   # 44 items -> round_half_up(4.4) = 4
    got = cal.random_sample(pool.iloc[::-1], seed=7)  # row order must not matter
    want = np.sort(np.random.default_rng(7).choice(44, size=4, replace=False))
    assert got["item_id"].tolist() == [f"d{i:03d}" for i in want]
    assert len(cal.random_sample(pool, fraction=0.01)) == 1  # at least one item
    assert not got.equals(cal.random_sample(pool, seed=8))


def test_transfer_runs_keep_each_draw_and_average_to_transfer():
    from routelib.routing import transfer_runs as TR
    conf, llm = _tables({"a": 0.0, "b": 0.5, "c": -0.5}, n=400)
    ratios = (0.0, 0.2, 0.5, 0.8, 1.0)
    for strategy, n_runs in (("random", 3), ("calibration", 3), ("pooled", 1), ("single", 2)):
        runs = TR.transfer_runs(conf, llm, "s", "m", "c", strategy=strategy, ratios=ratios)
        assert runs["run"].tolist() == list(range(n_runs)), strategy
        mean = cal.transfer(conf, llm, "s", "m", "c", strategy=strategy, ratios=ratios)
        inner = mean[(mean["ratio"] > 0) & (mean["ratio"] < 1)]["ratio_error"].mean()
        assert runs["mean_abs_ratio_error"].mean() == pytest.approx(inner, abs=1e-12), strategy
    r = TR.transfer_runs(conf, llm, "s", "m", "c", strategy="random", ratios=ratios, seed=1)
    assert r["mean_abs_ratio_error"].nunique() > 1  # the draws differ


def test_run_spread_by_hand():
    from routelib.routing import transfer_runs as TR
    runs = pd.DataFrame({"slm": "s", "llm": "L", "method": "m", "target": "t",
                         "strategy": ["random"] * 3 + ["pooled"], "run": [0, 1, 2, 0],
                         "mean_abs_ratio_error": [0.1, 0.2, 0.3, 0.05]})
    sp = TR.run_spread(runs).set_index("strategy")
    assert sp.loc["random", ["error", "error_sd", "error_min", "error_max", "runs"]].tolist() \
        == pytest.approx([0.2, 0.1, 0.1, 0.3, 3])
    assert sp.loc["pooled", "error_sd"] == 0.0 and sp.loc["pooled", "runs"] == 1
# ---- the OOD probe's pool: nothing of the target enters its thresholds ----------------------
def _ood_pool(conf: pd.DataFrame, shift: dict) -> pd.DataFrame:
    """Every dataset's items as each target's own probe scores them: the table's confidences
    moved by ``shift[target]`` (a different probe per target); the target's own block equals
    its rows in the confidence table, as ood_pool_table builds it."""
    parts = []
    for target in dict.fromkeys(conf["dataset"]):
        block = conf.assign(scored_by=target)
        own = block["dataset"] == target
        block.loc[~own, "confidence"] += shift[target]
        parts.append(block)
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("strategy", cal.STRATEGIES)
def test_the_targets_data_cannot_change_its_thresholds_with_the_pool(strategy):
    conf, llm = _tables({"a": 0.0, "b": 1.0, "t": 2.0}, n=400)
    pool = _ood_pool(conf, {"a": 0.3, "b": -0.2, "t": 0.5})
    kw = dict(ratios=[0.2, 0.5], runs=2, strategy=strategy)
    base = cal.transfer(conf, llm, "s", "m", "t", pool=pool, **kw)
    # t's data enters the other datasets' own OOD probes (trained on t): whatever those probes
    # give a and b in the confidence table, and whatever a's and b's own probes give anything
    # in the pool, t's thresholds come from t's own probe only
    moved = conf.copy()
    moved.loc[moved["dataset"] != "t", "confidence"] *= 3.0
    other_probes = pool.copy()
    other_probes.loc[other_probes["scored_by"] != "t", "confidence"] -= 5.0
    again = cal.transfer(moved, llm, "s", "m", "t", pool=other_probes, **kw)
    pd.testing.assert_frame_equal(base, again)
    # without the pool the same change moves t's thresholds (the leak the pool closes)
    leaky = cal.transfer(conf, llm, "s", "m", "t", **kw)
    leaky_moved = cal.transfer(moved, llm, "s", "m", "t", **kw)
    assert not np.allclose(leaky["realized_ratio"], leaky_moved["realized_ratio"])
    # and the pool is what is read: shifting t's own probe's scores of a and b moves them
    own = pool.copy()
    own.loc[(own["scored_by"] == "t") & (own["dataset"] != "t"), "confidence"] += 1.0
    assert not np.allclose(cal.transfer(conf, llm, "s", "m", "t", pool=own, **kw)
                           ["realized_ratio"], base["realized_ratio"])


def test_pooled_thresholds_are_quantiles_of_the_targets_own_probe_scores():
    conf, llm = _tables({"a": 0.0, "t": 2.0}, n=400)
    pool = _ood_pool(conf, {"a": 0.0, "t": 0.7})
    got = cal.transfer(conf, llm, "s", "m", "t", pool=pool, strategy="pooled", ratios=[0.3])
    scored = conf.loc[conf["dataset"] == "a", "confidence"].to_numpy() + 0.7
    t = cal.thresholds_from_calibration(scored, [0.3])[0]
    target = conf.loc[conf["dataset"] == "t", "confidence"].to_numpy()
    assert got["realized_ratio"].iloc[0] == pytest.approx(
        routing.apply_threshold(target, t).mean())


def test_a_pool_missing_the_targets_block_is_refused():
    conf, llm = _tables({"a": 0.0, "t": 2.0}, n=50)
    pool = _ood_pool(conf, {"a": 0.0, "t": 0.7})
    with pytest.raises(cal.CalibrationError, match="own probe"):
        cal.transfer(conf, llm, "s", "m", "t", pool=pool[pool["scored_by"] != "t"])
