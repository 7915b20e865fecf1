"""Adaptive thresholds (issue 20): the rule, the DKW band, ties, the window, the budget cap, the
state file under SIGKILL and concurrency, determinism, and the leave-one-out simulation."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from routelib.routing import adaptive as A, adaptive_sim as S
from routelib.routing.simulation import threshold_for_ratio

ROOT = Path(__file__).resolve().parents[1]


# ---- the rule --------------------------------------------------------------------------------
def test_deterministic_rule_is_the_papers_threshold_for_ratio():
    rng = np.random.default_rng(0)
    for trial in range(400):
        n = int(rng.integers(1, 40))
        c = rng.integers(0, 6, n) / 5 if trial % 2 else rng.random(n)
        ratios = [0.0, 0.5, 1.0, *rng.random(5)]
        for r, rule in zip(ratios, A.quantile_rules(c, ratios)):
            assert rule == A.TieRule(threshold_for_ratio(c, r), 0.0), (c, r)


def test_realized_ratio_converges_to_r_on_known_quantiles():
    rng = np.random.default_rng(1)
    stream = rng.exponential(size=20_000)  # F(t) = 1 - exp(-t)
    for r in (0.1, 0.3, 0.7):
        at = A.AdaptiveThreshold(A.AdaptiveConfig(r), start=5.0)
        assert at.threshold == 5.0 and at.n == 0 and at.band() == math.inf
        errors = []
        for n in (10, 100, 1_000, 20_000):
            at.observe_many(stream[at.n_seen:n])
            assert at.n == n
            errors.append(abs((1 - math.exp(-at.threshold)) - r))
            assert errors[-1] <= at.band()
        assert errors[-1] < 0.01 and errors[-1] < errors[0]
        assert abs(at.threshold - (-math.log(1 - r))) < 0.03  # the true r-quantile


def test_dkw_band_covers_at_least_1_minus_delta_of_1000_repetitions_at_n50():
    delta, n, reps, rest = 0.05, 50, 1_000, 150
    rng = np.random.default_rng(2)
    seen = rng.random((reps, n))  # uniform: the probability of routing is F(t) = t
    future = rng.random((reps, rest))
    eps = A.dkw_epsilon(n, delta)
    assert eps == pytest.approx(math.sqrt(math.log(40) / 100))
    for r in (0.1, 0.3, 0.5, 0.9):
        t = np.array([A.quantile_rules(row, [r])[0].threshold for row in seen])
        p_routed = np.clip(t, 0, 1)
        assert np.mean(np.abs(p_routed - r) <= eps) >= 1 - delta
        assert np.mean(np.abs(p_routed - r) <= eps / 4) < 1 - delta  # a band too narrow fails
        share = (future < t[:, None]).mean(axis=1)  # a finite rest adds its own noise
        assert np.mean(np.abs(share - r) <= A.finite_band(n, rest, delta)) >= 1 - delta


# ---- ties ------------------------------------------------------------------------------------
VALUES, PROBS = np.array([0.2, 0.8, 1.0]), np.array([0.2, 0.6, 0.2])  # 60% of mass at 0.8


def test_static_rule_cannot_realize_r_inside_a_tie_but_the_randomized_rule_can():
    rng = np.random.default_rng(3)
    r, n, rest, reps = 0.3, 50, 400, 200
    cal = rng.choice(VALUES, size=(reps, n), p=PROBS)
    future = rng.choice(VALUES, size=(reps, rest), p=PROBS)
    eps = A.dkw_epsilon(n)
    static_err, random_in, random_ok, split = [], [], [], []
    for k in range(reps):
        plain = A.quantile_rules(cal[k], [r])[0]
        # the probability the static rule routes a query: 0, 0.2, 0.8 or 1, never 0.3
        static_err.append(abs(PROBS[VALUES < plain.threshold].sum() - r))
        tied = A.quantile_rules(cal[k], [r], randomize=True)[0]
        split.append(0 < tied.tie_fraction < 1)
        prob = PROBS[VALUES < tied.threshold].sum() + \
            tied.tie_fraction * PROBS[VALUES == tied.threshold].sum()
        random_in.append(abs(prob - r) <= eps)
        share = A.route_with_ties(future[k], tied.threshold, tied.tie_fraction,
                                  np.random.default_rng(k)).mean()
        random_ok.append(abs(share - r) <= A.finite_band(n, rest))
    assert min(static_err) >= 0.1 - 1e-12
    assert np.mean(random_in) >= 0.95 and np.mean(random_ok) >= 0.95
    assert np.mean(split) > 0.9  # (a sample can put r exactly on a boundary: nothing to split)


def test_adaptive_threshold_with_randomized_ties_realizes_r_via_decide():
    rng = np.random.default_rng(4)
    r, n = 0.3, 50
    at = A.AdaptiveThreshold(A.AdaptiveConfig(r, randomize_ties=True, seed=50), start=0.5)
    at.observe_many(rng.choice(VALUES, size=n, p=PROBS))
    assert at.threshold == 0.8
    future = rng.choice(VALUES, size=2_000, p=PROBS)
    share = np.mean([at.decide(c) for c in future])
    assert abs(share - r) <= A.finite_band(n, len(future))
    plain = A.AdaptiveThreshold(A.AdaptiveConfig(r), start=0.5, seen=at.seen)
    assert abs(np.mean([plain.decide(c) for c in future]) - r) > 0.05


def test_prior_counts_as_stated_pseudo_observations():
    prior = np.linspace(0, 1, 101)  # calibration: r-quantile ~ r
    seen = np.full(10, 5.0)  # the target sits far above
    # weight 10 (equal to n = 10): half the mass is the prior, so r = 0.3 falls inside it
    low = A.quantile_rules(seen, [0.3], prior, 10.0)[0].threshold
    assert 0.55 < low < 0.65
    # weight 10 at r = 0.6: past the prior's mass, inside the seen tie at 5.0
    tied = A.quantile_rules(seen, [0.6], prior, 10.0, randomize=True)[0]
    assert tied.threshold == 5.0 and tied.tie_fraction == pytest.approx(0.2)
    with pytest.raises(A.AdaptiveError):
        A.AdaptiveThreshold(A.AdaptiveConfig(0.3, prior_weight=5.0), start=0.5)


# ---- window, budget, determinism -------------------------------------------------------------
def test_window_follows_a_shifted_distribution():
    rng = np.random.default_rng(5)
    before, after = rng.random(500), 1 + rng.random(200)  # U(0, 1), then U(1, 2)
    windowed = A.AdaptiveThreshold(A.AdaptiveConfig(0.3, window=100), start=0.5)
    full = A.AdaptiveThreshold(A.AdaptiveConfig(0.3), start=0.5)
    for at in (windowed, full):
        at.observe_many(before)
        at.observe_many(after)
    assert windowed.n == 100 and windowed.n_seen == 700 and full.n == 700
    assert abs(windowed.threshold - 1.3) < 0.1  # the 0.3-quantile of U(1, 2)
    assert full.threshold < 1.0  # the whole history lags behind the shift
    assert windowed.band() == A.dkw_epsilon(100)


def test_budget_cap_is_never_exceeded_over_a_long_random_stream():
    rng = np.random.default_rng(6)
    for cap in (0.0, 0.1, 0.25, 0.5):
        budget = A.BudgetCap(cap)
        for wants in rng.random(10_000) < 0.6:
            budget.apply(bool(wants))
            assert budget.routed <= cap * budget.total + 1e-9
        assert budget.routed / budget.total >= cap - 0.001  # and it does use the budget
    unlimited = A.BudgetCap(1.0)
    assert all(unlimited.apply(True) for _ in range(100))


def test_decisions_are_deterministic_for_an_order_and_a_seed():
    rng = np.random.default_rng(7)
    stream = rng.choice(VALUES, size=300, p=PROBS)

    def run(seed):
        at = A.AdaptiveThreshold(A.AdaptiveConfig(0.3, randomize_ties=True, seed=seed),
                                 calibration=stream[:20])
        out = []
        for c in stream:
            out.append(at.decide(c))
            at.observe(c)
        return out
    assert run(50) == run(50)
    assert run(50) != run(51)
    # a router rebuilt from a state file continues the same draws (decision index = total)
    reference = run(50)
    for i in range(100, 300):
        at = A.AdaptiveThreshold(A.AdaptiveConfig(0.3, randomize_ties=True),
                                 calibration=stream[:20], seen=stream[:i], decisions=i)
        assert at.decide(stream[i]) == reference[i]


# ---- the state file --------------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import os, sys, time
    from routelib.routing import adaptive as A
    path, total, prefix, slow = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    tag = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    real_fsync = os.fsync
    def slow_fsync(fd):  # widen the window between writing the temporary file and the rename
        time.sleep(slow)
        real_fsync(fd)
    os.fsync = slow_fsync
    store = A.StateFile(path)
    cfg = A.AdaptiveConfig(0.3, randomize_ties=True)
    start = len(store.load().confidences) - prefix if not tag else 0
    for i in range(start, total):
        A.adaptive_step(store, tag + i / 1000, cfg, start=0.5, budget=0.5)
        print(i, flush=True)
""")


def _child(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, text=True, **kw)


def test_state_file_survives_sigkill_mid_write_and_resumes_with_every_confidence(tmp_path):
    path, prefix, total = tmp_path / "state.json", 3_000, 40
    store = A.StateFile(path)
    base = [float(x) for x in np.random.default_rng(8).random(prefix)]
    store.update(lambda st: (st.confidences.extend(base), setattr(st, "n_observed", prefix)))
    kills, mid_write = 0, 0
    for _ in range(3):
        old = set(tmp_path.glob(".state.json.*.tmp"))  # left by the previous kill
        child = _child([path, total, prefix, 0.05])
        deadline = time.time() + 60
        while not set(tmp_path.glob(".state.json.*.tmp")) - old and time.time() < deadline:
            time.sleep(0.001)  # wait until the child is writing a temporary file
        child.send_signal(signal.SIGKILL)
        child.wait()
        printed = [int(x) for x in child.stdout.read().split()]
        child.stdout.close()
        kills += child.returncode == -signal.SIGKILL
        mid_write += bool(set(tmp_path.glob(".state.json.*.tmp")) - old)
        state = A.AdaptiveState.from_json(path.read_text())  # a valid file, never torn
        assert state.confidences[:prefix] == base
        done = state.confidences[prefix:]
        assert done == [i / 1000 for i in range(len(done))]  # no gap, no duplicate
        assert len(done) >= (printed[-1] + 1 if printed else 0)  # nothing recorded was lost
        assert state.total == len(done) and state.n_observed == prefix + len(done)
    assert kills == 3 and mid_write >= 2  # killed between writing the new file and the rename
    child = _child([path, total, prefix, 0.0])
    assert child.wait(timeout=120) == 0
    child.stdout.close()
    state = store.load()
    assert state.confidences == base + [i / 1000 for i in range(total)]
    assert state.total == total and state.routed <= 0.5 * total
    assert not list(tmp_path.glob(".state.json.*.tmp"))  # the killed writers' leftovers are gone


def test_two_processes_sharing_a_state_file_lose_no_update(tmp_path):
    path, n = tmp_path / "shared.json", 150
    children = [_child([path, n, 0, 0.0, tag]) for tag in (1.0, 2.0)]
    for child in children:
        assert child.wait(timeout=120) == 0
        child.stdout.close()
    state = A.StateFile(path).load()
    assert len(state.confidences) == 2 * n and state.total == 2 * n == state.n_observed
    for tag in (1.0, 2.0):  # each process's confidences, all of them, in its order
        assert [c for c in state.confidences if int(c) == tag] == [tag + i / 1000
                                                                   for i in range(n)]
    assert state.routed <= 0.5 * state.total


def test_adaptive_step_matches_the_in_memory_threshold_and_rejects_a_corrupt_file(tmp_path):
    store = A.StateFile(tmp_path / "s.json")
    cfg = A.AdaptiveConfig(0.3, randomize_ties=True, window=20)
    stream = np.random.default_rng(9).choice(VALUES, size=60, p=PROBS)
    at = A.AdaptiveThreshold(cfg, start=0.5)
    for c in stream:
        d = A.adaptive_step(store, float(c), cfg, start=0.5)
        assert (d.threshold, d.tie_fraction, d.n) == (at.threshold, at.tie_fraction, at.n)
        assert d.route == at.decide(c)
        at.observe(c)
    assert A.adaptive_step(store, math.nan, cfg, start=0.5).route  # a discarded score escalates
    state = store.load()
    assert len(state.confidences) == 20 and state.n_observed == 60 and state.total == 61
    (tmp_path / "s.json").write_text(json.dumps({"version": 1, "confidences": [0.5]})[:-5])
    with pytest.raises(A.AdaptiveError):
        store.load()


# ---- the simulation --------------------------------------------------------------------------
def _hand_tables():
    conf = pd.DataFrame({
        "slm": "s", "method": "m", "dataset": ["a"] * 4 + ["b"] * 4,
        "item_id": [f"a{i}" for i in range(4)] + [f"b{i}" for i in range(4)],
        "confidence": [0.1, 0.15, 0.3, 0.45, 0.5, 0.55, 0.9, 0.95],
        "correct": [False, False, True, True, True, False, True, False]})
    llm = pd.DataFrame({"llm": "L", "dataset": conf["dataset"], "item_id": conf["item_id"],
                        "correct": [True, True, True, False, True, True, False, False]})
    return conf, llm


def test_simulate_adaptive_on_a_hand_built_table():
    conf, llm = _hand_tables()
    assert list(np.random.default_rng(50).permutation(4)) == [2, 0, 3, 1]
    out = S.simulate_adaptive(conf, llm, "s", "m", ratios=(0.5,), ns=(0, 2), orders=1,
                              min_rest=2, fraction=1.0, prior_weight=2.0)
    assert len(out) == 2 * 2 * len(S.STRATEGIES)
    got = out.set_index(["target", "n", "strategy"])
    # n = 0: thresholds from the other dataset: b -> 0.225 (routes none of b), a -> 0.725 (all)
    for s in S.STRATEGIES:
        b0, a0 = got.loc[("b", 0, s)], got.loc[("a", 0, s)]
        assert (b0.realized_ratio, b0.ratio_error, b0.accuracy) == (0.0, 0.5, 0.5)
        assert (a0.realized_ratio, a0.ratio_error, a0.accuracy) == (1.0, 0.5, 0.75)
        assert (b0.ground_truth_accuracy, a0.ground_truth_accuracy) == (0.75, 1.0)
    # n = 2, order 0 = [2, 0, 3, 1]: seen items 2 and 0, rest items 1 and 3
    for s in ("calibration", "calibration_ties", "pooled", "single"):
        assert tuple(got.loc[("b", 2, s), ["realized_ratio", "accuracy"]]) == (0.0, 0.0)
        assert tuple(got.loc[("a", 2, s), ["realized_ratio", "accuracy"]]) == (1.0, 0.5)
    for s in ("adaptive", "adaptive_ties"):  # b: t = (0.9 + 0.5) / 2 = 0.7; a: (0.3 + 0.1) / 2
        b2, a2 = got.loc[("b", 2, s)], got.loc[("a", 2, s)]
        assert (b2.threshold, b2.realized_ratio, b2.ratio_error, b2.accuracy) == (0.7, .5, 0, .5)
        assert (a2.threshold, a2.realized_ratio, a2.accuracy) == (0.2, 0.5, 1.0)
        assert b2.band == pytest.approx(math.sqrt(math.log(40) / 4)) and b2.in_band == 1.0
    # prior weight 2 = a's four items at 0.5 each: b's q = 2 ends after them -> t = 0.475
    assert tuple(got.loc[("b", 2, "adaptive_prior"), ["threshold", "realized_ratio"]]) \
        == (0.475, 0.0)
    assert tuple(got.loc[("a", 2, "adaptive_prior"), ["threshold", "realized_ratio"]]) \
        == (0.4, 0.5)
    assert set(got.loc[("b", 2), "ground_truth_accuracy"]) == {0.5}
    assert got.loc[("b", 2, "pooled"), "band"] != got.loc[("b", 2, "pooled"), "band"]  # NaN


def test_simulation_uses_the_same_rule_as_the_adaptive_threshold():
    rng = np.random.default_rng(10)
    n_items = 60
    conf = pd.DataFrame({"slm": "s", "method": "m",
                         "dataset": np.repeat(["a", "b", "c"], n_items),
                         "item_id": [f"{i:03d}" for i in range(3 * n_items)],
                         "confidence": np.round(rng.random(3 * n_items) * 4) / 4 +
                         np.repeat([0.0, 0.3, 0.6], n_items),
                         "correct": rng.random(3 * n_items) < 0.5})
    llm = conf[["dataset", "item_id"]].assign(llm="L", correct=rng.random(3 * n_items) < 0.7)
    out = S.simulate_adaptive(conf, llm, "s", "m", ratios=(0.3,), ns=(0, 25), orders=2)
    again = S.simulate_adaptive(conf, llm, "s", "m", ratios=(0.3,), ns=(0, 25), orders=2)
    pd.testing.assert_frame_equal(out, again)  # deterministic
    for k in range(2):
        for target in ("a", "b"):
            c = conf[conf.dataset == target].sort_values("item_id").confidence.to_numpy()
            perm = np.random.default_rng(50 + k).permutation(n_items)
            row = out[(out.target == target) & (out.order == k) & (out.n == 25)
                      & (out.strategy == "adaptive_ties")].iloc[0]
            at = A.AdaptiveThreshold(A.AdaptiveConfig(0.3, randomize_ties=True), start=0.0,
                                     seen=c[perm[:25]])
            assert (row.threshold, row.tie_fraction) == (at.threshold, at.tie_fraction)
            rest = c[np.sort(perm[25:])]
            mask = A.route_with_ties(rest, at.threshold, at.tie_fraction,
                                     np.random.default_rng([50 + k, 25]))
            assert row.realized_ratio == mask.mean() and row.n_rest == len(rest)


def test_simulate_drift_history_lags_and_the_window_recovers():
    a = pd.DataFrame({"slm": "s", "method": "m", "dataset": "a",
                      "item_id": [f"a{i:03d}" for i in range(200)],
                      "confidence": np.linspace(0, 1, 200), "correct": True})
    b = a.assign(dataset="b", item_id=[f"b{i:03d}" for i in range(200)],
                 confidence=np.linspace(2, 3, 200))
    out = S.simulate_drift(pd.concat([a, b]), "s", "m", ratios=(0.3,), ns=(0, 50, 100),
                           orders=2, window=50)
    m = out[out.target == "b"].groupby(["variant", "n"]).ratio_error.mean()
    assert m["history", 0] == pytest.approx(0.3) and m["history", 100] > 0.15
    assert m["window", 50] < 0.05 and m["target_only", 50] < 0.05


def test_markdown_is_generated_from_the_simulation():
    from routelib.report import adaptive_page as R
    conf, llm = _hand_tables()
    sim = S.simulate_adaptive(conf, llm, "s", "m", ratios=(0.5,), ns=(0, 2), orders=1,
                              min_rest=2, fraction=1.0)
    page = R.adaptive_markdown(sim, settings=S.SimSettings(ns=(0, 2), orders=1))
    assert page.startswith("# Adaptive thresholds")
    assert "| s | m | adaptive | 50.0 | 0.0 |" in page  # both targets: 0.5 at n = 0, 0 at n = 2


@pytest.mark.skipif(not os.environ.get("ROUTELIB_DATA_DIR"), reason="needs ROUTELIB_DATA_DIR")
def test_committed_page_rows_match_a_recomputation(monkeypatch):
    from routelib.report import adaptive_page as R
    monkeypatch.setenv("ROUTELIB_CACHE_DIR", str(ROOT / "data_cache"))
    conf, llm = R.load_reference(slms=("smollm2-135m",))
    sim = S.simulate_adaptive(conf, llm, "smollm2-135m", "perplexity",
                              settings=S.SimSettings(ns=R.REPORT_NS))
    table = R._table(R._by_n(sim, ["slm", "method", "strategy"]))
    page = (ROOT / "docs" / "adaptive.md").read_text()
    for line in table[2:-1]:
        assert line in page


def test_static_strategies_at_n0_match_calibration_transfer():
    from routelib.routing import calibration
    rng = np.random.default_rng(11)
    sizes, shift = {"a": 80, "b": 120, "c": 100}, {"a": 0.0, "b": 0.2, "c": 0.5}
    conf = pd.concat([pd.DataFrame({
        "slm": "s", "method": "m", "dataset": d, "item_id": [f"{d}{i:03d}" for i in range(n)],
        "confidence": rng.random(n) + shift[d], "correct": rng.random(n) < 0.5})
        for d, n in sizes.items()], ignore_index=True)
    llm = conf[["dataset", "item_id"]].assign(llm="L", correct=rng.random(len(conf)) < 0.7)
    ratios = (0.1, 0.3, 0.5, 0.9)
    sim = S.simulate_adaptive(conf, llm, "s", "m", ratios=ratios, ns=(0,), orders=3)
    for strategy in ("calibration", "pooled", "single"):
        ref = calibration.transfer(conf, llm, "s", "m", "b", ratios=ratios, runs=3,
                                   strategy=strategy)
        mine = sim[(sim.target == "b") & (sim.strategy == strategy)].groupby("ratio")[
            ["realized_ratio", "ratio_error", "accuracy", "ground_truth_accuracy"]].mean()
        for column in mine.columns:
            np.testing.assert_allclose(mine[column].to_numpy(), ref[column].to_numpy())
