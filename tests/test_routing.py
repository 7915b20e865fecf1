"""routelib.routing.simulation on hand-computed tables and synthetic data with known answers."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from routelib.config import SEED
from routelib.routing import cost, relative, simulation as routing
from routelib.routing.cost import CostModel
from routelib.routing.simulation import (RoutingError, accuracy_curve, apply_threshold,
                                         area_under_curve, n_routed, oracle_curve, random_curve,
                                         ratio_to_reach, route_mask, threshold_for_ratio)

RATIOS5 = [0.0, 0.25, 0.5, 0.75, 1.0]
# four items: (SLM correct, LLM correct) = (R,R), (W,R), (R,W), (W,W)
SLM4 = np.array([True, False, True, False])
LLM4 = np.array([True, True, False, False])
CONF4 = np.array([0.9, 0.1, 0.2, 0.8])


def _curve(ratios, acc):
    return pd.DataFrame({"ratio": ratios, "accuracy": acc})


# ---- rounding, ranks, ties -----------------------------------------------------------------
def test_n_routed_rounds_half_up():
    assert n_routed(10, 0.25) == 3       # 2.5 -> 3 (Python's round would give 2)
    assert n_routed(10, 0.24) == 2
    assert n_routed(5, 0.5) == 3         # 2.5 -> 3
    assert n_routed(20, 0.35) == 7       # 7.000000000000001
    assert n_routed(10, 0.45) == 5       # 4.5 -> 5
    assert n_routed(7, 0.0) == 0 and n_routed(7, 1.0) == 7
    with pytest.raises(RoutingError, match=r"\[0, 1\]"):
        n_routed(10, 30)


def test_route_mask_routes_lowest_confidence_first_and_breaks_ties_by_position_then_tiebreak():
    conf = [0.9, 0.1, 0.5, 0.1, 0.3]
    assert route_mask(conf, 0.4).tolist() == [False, True, False, True, False]
    assert route_mask(conf, 0.2).tolist() == [False, True, False, False, False]  # earlier tie
    tb = ["b", "z", "c", "a", "d"]
    assert route_mask(conf, 0.2, tiebreak=tb).tolist() == [False, False, False, True, False]
    assert route_mask(conf, 0.6).tolist() == [False, True, False, True, True]


def test_all_equal_confidences_route_exactly_half_deterministically():
    conf = np.full(10, 0.7)
    mask = route_mask(conf, 0.5)
    assert mask.tolist() == [True] * 5 + [False] * 5
    assert route_mask(conf, 0.5).tolist() == mask.tolist()
    assert route_mask(conf, 0.5, tiebreak=np.arange(10)[::-1]).tolist() == \
        [False] * 5 + [True] * 5


def test_threshold_for_ratio_hand_values_and_higher_confidence_is_kept():
    conf = [0.9, 0.1, 0.5, 0.2, 0.3]            # sorted: .1 .2 .3 .5 .9
    assert threshold_for_ratio(conf, 0.4) == pytest.approx(0.25)
    assert threshold_for_ratio(conf, 0.6) == pytest.approx(0.4)
    assert threshold_for_ratio(conf, 0.0) == -math.inf
    assert threshold_for_ratio(conf, 1.0) == math.inf
    assert apply_threshold(conf, 0.25).tolist() == [False, True, False, True, False]
    assert apply_threshold(conf, 0.2).tolist() == [False, True, False, False, False]  # strict


def test_apply_threshold_realizes_every_ratio_exactly_on_distinct_data():
    conf = np.random.default_rng(SEED).normal(size=1001)
    for r in routing.DEFAULT_RATIOS:
        mask = apply_threshold(conf, threshold_for_ratio(conf, r))
        assert mask.sum() == n_routed(1001, r)
        assert (mask == route_mask(conf, r)).all()


def test_a_tie_at_the_boundary_stays_with_the_slm_under_a_threshold_but_not_by_rank():
    conf = [0.1, 0.5, 0.5, 0.9]
    t = threshold_for_ratio(conf, 0.5)        # k = 2: c(2) = c(3) = 0.5
    assert t == 0.5
    assert apply_threshold(conf, t).tolist() == [True, False, False, False]
    assert route_mask(conf, 0.5).tolist() == [True, True, False, False]


def test_infinite_confidences_get_a_threshold_that_still_splits_them():
    conf = [-math.inf, 0.3, math.inf]
    assert threshold_for_ratio(conf, 1 / 3) == 0.3      # midpoint would be -inf
    assert apply_threshold(conf, threshold_for_ratio(conf, 1 / 3)).tolist() == [True, False, False]
    assert apply_threshold(conf, threshold_for_ratio(conf, 2 / 3)).tolist() == [True, True, False]


def test_nan_confidence_and_bad_inputs_raise():
    with pytest.raises(RoutingError, match="NaN"):
        route_mask([0.1, math.nan], 0.5)
    with pytest.raises(RoutingError, match="pair the items"):
        accuracy_curve([True], [True, False], [0.1])
    with pytest.raises(RoutingError, match="booleans"):
        accuracy_curve([2, 0], [1, 0], [0.1, 0.2])


# ---- curves --------------------------------------------------------------------------------
def test_accuracy_curve_hand_values():
    # routing order by confidence: item1 (W,R) +1, item2 (R,W) -1, item3 (W,W) 0, item0 (R,R) 0
    c = accuracy_curve(SLM4, LLM4, CONF4, RATIOS5)
    assert list(c.columns) == list(routing.CURVE_COLUMNS)
    assert c["accuracy"].tolist() == [0.5, 0.75, 0.5, 0.5, 0.5]
    assert c["routed"].tolist() == RATIOS5
    assert c["threshold"].tolist() == pytest.approx([-math.inf, 0.15, 0.5, 0.85, math.inf])


def test_zero_and_full_routing_give_slm_and_llm_accuracy_exactly():
    rng = np.random.default_rng(SEED)
    slm, llm, conf = rng.random(37) < 0.4, rng.random(37) < 0.7, rng.random(37)
    for curve in (accuracy_curve(slm, llm, conf), oracle_curve(slm, llm), random_curve(slm, llm)):
        assert curve["accuracy"].iloc[0] == slm.mean()
        assert curve["accuracy"].iloc[-1] == llm.mean()


def test_oracle_curve_hand_values():
    # oracle order: item1 (W,R), item3 (W,W), item0 (R,R), item2 (R,W)
    c = oracle_curve(SLM4, LLM4, RATIOS5)
    assert c["accuracy"].tolist() == [0.5, 0.75, 0.75, 0.75, 0.5]
    assert c["threshold"].isna().all()


def test_confidence_equal_to_slm_correctness_in_the_oracles_order_reproduces_the_oracle():
    rng = np.random.default_rng(SEED)
    slm, llm = rng.random(200) < 0.55, rng.random(200) < 0.7
    ratios = np.linspace(0, 1, 41)
    oracle = oracle_curve(slm, llm, ratios)["accuracy"].to_numpy()
    # ties among SLM-wrong items: LLM-right first; among SLM-right: LLM-right (gain 0) first
    exact = accuracy_curve(slm, llm, slm.astype(float), ratios, tiebreak=~llm)
    assert (exact["accuracy"].to_numpy() == oracle).all()
    for seed in range(5):  # and no router beats it
        conf = np.random.default_rng(seed).random(200)
        assert (accuracy_curve(slm, llm, conf, ratios)["accuracy"].to_numpy() <= oracle).all()


def test_confidence_independent_of_correctness_follows_the_random_line():
    rng = np.random.default_rng(SEED)
    n = 20000
    slm, llm, conf = rng.random(n) < 0.5, rng.random(n) < 0.8, rng.random(n)
    uq = accuracy_curve(slm, llm, conf)["accuracy"].to_numpy()
    line = random_curve(slm, llm)["accuracy"].to_numpy()
    # sd of the gap at any ratio is below 0.003 at this n
    assert np.abs(uq - line).max() < 0.01


def test_random_curve_hand_values():
    slm = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)   # 0.5
    llm = np.array([1] * 8 + [0] * 2, dtype=bool)                 # 0.8
    c = random_curve(slm, llm, [0.0, 0.3, 1.0])
    assert c["accuracy"].tolist() == pytest.approx([0.5, 0.59, 0.8])
    # the realized share k/n, not the requested ratio: 0.25 of 10 routes 3 items
    assert random_curve(slm, llm, [0.25])["routed"].iloc[0] == 0.3


def test_area_under_curve_hand_value_and_span_check():
    assert area_under_curve(_curve([0, 0.5, 1], [0.5, 0.7, 0.8])) == pytest.approx(0.675)
    assert area_under_curve(_curve([1, 0, 0.5], [0.8, 0.5, 0.7])) == pytest.approx(0.675)
    with pytest.raises(RoutingError, match="ratios 0 and 1"):
        area_under_curve(_curve([0, 0.5], [0.5, 0.7]))


def test_auc_oracle_above_uq_above_random_for_a_mildly_informative_confidence():
    rng = np.random.default_rng(SEED)
    n = 5000
    slm, llm = rng.random(n) < 0.6, rng.random(n) < 0.8
    conf = slm + rng.normal(scale=1.5, size=n)   # weakly tied to SLM correctness
    aucs = [area_under_curve(f(slm, llm)) for f in (oracle_curve, random_curve)]
    uq = area_under_curve(accuracy_curve(slm, llm, conf))
    assert aucs[0] > uq > aucs[1] + 0.01
    assert aucs[1] == pytest.approx((slm.mean() + llm.mean()) / 2)   # a straight line


def test_ratio_to_reach_interpolates_the_first_crossing():
    c = _curve([0, 0.25, 0.5, 0.75, 1], [0.5, 0.6, 0.7, 0.9, 0.8])
    assert ratio_to_reach(c, 0.8) == pytest.approx(0.625)    # .5 + (.1/.2) * .25
    assert ratio_to_reach(c, 0.9) == pytest.approx(0.75)
    assert ratio_to_reach(c, 0.45) == 0.0
    assert math.isnan(ratio_to_reach(c, 0.95))
    bumpy = _curve([0, 0.5, 1], [0.5, 0.9, 0.6])
    assert ratio_to_reach(bumpy, 0.7) == pytest.approx(0.25)


def test_relative_accuracy_top_k_hand_values():
    conf = np.arange(10)[::-1] / 10                          # most confident first
    slm = np.array([1, 1, 1, 0, 1, 0, 0, 1, 0, 0], dtype=bool)
    llm = np.array([0, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)  # LLM accuracy 0.7 on all items
    t = relative.relative_accuracy_top_k(slm, llm, conf, [1.0, 0.5, 0.3, 0.25, 0.0])
    assert list(t.columns) == list(routing.TOP_K_COLUMNS)
    assert t["n_kept"].tolist() == [10, 5, 3, 2, 0]           # 0.25 keeps 10 - round(7.5) = 2
    assert t["slm_accuracy"].tolist()[:4] == pytest.approx([0.5, 0.8, 1.0, 1.0])
    # the LLM on the same kept items: all 10 -> 0.7, top 5 -> 4/5, top 3 -> 2/3, top 2 -> 1/2
    assert t["llm_accuracy"].tolist()[:4] == pytest.approx([0.7, 0.8, 2 / 3, 0.5])
    assert t["relative_accuracy"].tolist()[:4] == pytest.approx([0.5 / 0.7, 1.0, 1.5, 2.0])
    # the fixed reference: the LLM's accuracy on all items
    assert (t["llm_accuracy_all"] == 0.7).all()
    assert t["relative_to_all"].tolist()[:4] == pytest.approx([0.5 / 0.7, 0.8 / 0.7, 1 / 0.7,
                                                              1 / 0.7])
    assert math.isnan(t["slm_accuracy"].iloc[4]) and math.isnan(t["llm_accuracy"].iloc[4])
    assert math.isnan(t["relative_accuracy"].iloc[4])


def test_cost_curve_hand_values():
    curve = pd.DataFrame({"ratio": [0, 0.5, 1], "accuracy": [0.5, 0.6, 0.7],
                          "routed": [0, 0.5, 1]})
    model = CostModel(slm_cost_per_call=0.1, llm_cost_per_call=2.0, slm_latency_s=1.0,
                      llm_latency_s=3.0)
    out = cost.cost_curve(curve, model, n_items=10)
    assert out["cost"].tolist() == pytest.approx([1.0, 11.0, 21.0])
    assert out["latency"].tolist() == pytest.approx([10.0, 25.0, 40.0])
    per_token = CostModel(slm_cost_per_call=0.1, llm_cost_per_call=2.0, llm_cost_per_token=1e-3)
    out = cost.cost_curve(curve, per_token, n_items=10, tokens_per_query=100)
    assert out["cost"].tolist() == pytest.approx([1.0, 11.5, 22.0])   # +0.1 per LLM call
    assert CostModel().slm_cost_per_call == 0.0 and CostModel().llm_cost_per_call == 1.0


# ---- simulate ------------------------------------------------------------------------------
def _tables():
    conf_rows, llm_rows = [], []
    for ds in ("a", "b"):
        for i, (s, g, c) in enumerate(zip(SLM4, LLM4, CONF4)):
            llm_rows.append(("big", ds, f"{ds}{i}", bool(g)))
            for method, conf in (("m1", c), ("m2", 1 - c)):
                conf_rows.append(("small", ds, f"{ds}{i}", method, float(conf), bool(s)))
    return (pd.DataFrame(conf_rows, columns=list(routing.CONF_COLUMNS)),
            pd.DataFrame(llm_rows, columns=list(routing.LLM_COLUMNS)))


def test_simulate_is_tidy_and_matches_the_single_curves():
    conf, llm = _tables()
    out = routing.simulate(conf, llm, RATIOS5)
    assert list(out.columns) == list(routing.SIM_COLUMNS)
    assert len(out) == 2 * 2 * 3 * 5                       # datasets x methods x routers x ratios
    uq = out[(out.dataset == "a") & (out.method == "m1") & (out.router == "uq")]
    assert uq["accuracy"].tolist() == [0.5, 0.75, 0.5, 0.5, 0.5]
    uq2 = out[(out.dataset == "b") & (out.method == "m2") & (out.router == "uq")]
    assert uq2["accuracy"].tolist() == [0.5, 0.5, 0.5, 0.25, 0.5]   # the reversed confidence
    oracle = out[(out.dataset == "b") & (out.method == "m2") & (out.router == "oracle")]
    assert oracle["accuracy"].tolist() == [0.5, 0.75, 0.75, 0.75, 0.5]
    assert (out["n"] == 4).all() and set(out["router"]) == set(routing.ROUTERS)


def test_simulate_breaks_ties_by_item_id_whatever_the_row_order():
    conf, llm = _tables()
    conf["confidence"] = 0.5
    a = routing.simulate(conf, llm, RATIOS5)
    b = routing.simulate(conf.sample(frac=1, random_state=SEED), llm.iloc[::-1], RATIOS5)
    key = ["dataset", "method", "router", "ratio"]
    pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True),
                                  b.sort_values(key).reset_index(drop=True))
    # item order a0 (R,R), a1 (W,R), a2 (R,W), a3 (W,W): routing 25% routes a0 (gain 0)
    uq = a[(a.dataset == "a") & (a.method == "m1") & (a.router == "uq")]
    assert uq["accuracy"].tolist() == [0.5, 0.5, 0.75, 0.5, 0.5]


def test_simulate_names_unpaired_items_and_duplicates():
    conf, llm = _tables()
    with pytest.raises(RoutingError, match=r"no correctness for 1 of 4 item\(s\) of dataset 'b'"):
        routing.simulate(conf, llm[llm.item_id != "b2"], RATIOS5)
    extra = pd.concat([llm, pd.DataFrame([("big", "a", "a9", True)], columns=llm.columns)])
    with pytest.raises(RoutingError, match=r"lacks 1 item\(s\) of dataset 'a'"):
        routing.simulate(conf, extra, RATIOS5)
    with pytest.raises(RoutingError, match="repeated"):
        routing.simulate(pd.concat([conf, conf.iloc[:1]]), llm, RATIOS5)
    nan = conf.assign(confidence=np.where(conf.item_id == "a1", np.nan, conf.confidence))
    with pytest.raises(RoutingError, match=r"1 of 4 confidence\(s\) of slm 'small', method 'm1' "
                                           r"on dataset 'a' are NaN"):
        routing.simulate(nan, llm, RATIOS5)
    with pytest.raises(RoutingError, match=r"lacks column\(s\) \['confidence'\]"):
        routing.simulate(conf.drop(columns="confidence"), llm, RATIOS5)
