"""Leave-one-dataset-out simulation of adaptive thresholds (issue 20), and its markdown page.

For each (slm, method) and each target dataset, the target's items arrive in a seeded random
order (order k: ``numpy.random.default_rng(seed + k).permutation``). After n of them have been
seen (n = 0: nothing seen, the paper's static rule), every strategy's threshold is applied to the
*rest* of the target (m items, in item-id order) and we record the realized routing ratio, its
absolute error against the requested ratio, the accuracy reached (LLM answers on routed items)
and the target's own-data curve on the same items (:func:`routelib.routing.simulation.accuracy_curve`).

Strategies (:data:`STRATEGIES`):

- ``calibration``: Algorithm 1 on the other datasets (:func:`routelib.routing.calibration.
  build_calibration_set`, seed ``seed + k`` for order k), thresholds by
  :func:`~routelib.routing.calibration.thresholds_from_calibration`; ``calibration_ties`` the same set
  with ties randomized (:func:`routelib.routing.adaptive.quantile_rules`); ``pooled``: all confidences of
  the other datasets; ``single``: each other dataset alone, errors averaged over them (as
  :func:`routelib.routing.calibration.transfer`). These do not change with n.
- ``adaptive``: the empirical quantile of the n seen confidences (n = 0: ``calibration``);
  ``adaptive_ties``: the same with ties randomized (n = 0: ``calibration_ties``);
  ``adaptive_prior``: ties randomized, the calibration set mixed in as ``prior_weight``
  pseudo-observations.

Tie draws for order k after n queries: ``default_rng([seed + k, n]).random(m)`` over the rest, the
same draws for every strategy (:func:`routelib.routing.adaptive.route_with_ties` with that generator).
For the adaptive strategies, ``band`` is the DKW half-width eps(n, delta) (inf at n = 0) and
``band_finite`` = eps(n, delta/2) + eps(m, delta/2), the band that also covers the rest's own
sampling noise; ``in_band*`` say whether ``ratio_error`` is within them. Items without a
confidence (discarded) leave both tables.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from routelib.config import SEED
from routelib.routing.adaptive import dkw_epsilon, finite_band, quantile_rules, tie_mask
from routelib.routing.calibration import (FRACTION, N_BINS, build_calibration_set,
                                          thresholds_from_calibration)
from routelib.routing.simulation import (ACCURACY, CONF_COLUMNS, CONFIDENCE, CORRECT, DATASET,
                                         ITEM_ID, LLM, LLM_COLUMNS, METHOD, RATIO, SLM,
                                         accuracy_curve, check_columns, pair_items)

STATIC = ("calibration", "calibration_ties", "pooled", "single")
ADAPTIVE = ("adaptive", "adaptive_ties", "adaptive_prior")
STRATEGIES = STATIC + ADAPTIVE
RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
NS = (0, 10, 25, 50, 100, 200)
TARGET, STRATEGY, ORDER, N, N_REST = "target", "strategy", "order", "n", "n_rest"
REALIZED, ERROR, TRUTH = "realized_ratio", "ratio_error", "ground_truth_accuracy"
BAND, IN_BAND, BAND_FINITE, IN_BAND_FINITE = "band", "in_band", "band_finite", "in_band_finite"
SIM_COLUMNS = (SLM, LLM, METHOD, TARGET, STRATEGY, ORDER, N, N_REST, RATIO, "threshold",
               "tie_fraction", REALIZED, ERROR, ACCURACY, TRUTH, BAND, IN_BAND, BAND_FINITE,
               IN_BAND_FINITE)


class SimulationError(ValueError):
    """Bad simulation input: one dataset only, unknown strategy, unpaired tables."""


@dataclass(frozen=True)
class SimSettings:
    """``ns``: queries seen before the threshold is frozen (an n leaving fewer than ``min_rest``
    target items is skipped); ``orders``: arrival orders per target; ``prior_weight``: the
    calibration set's weight in ``adaptive_prior``; ``n_bins``/``fraction``: Algorithm 1."""
    ns: tuple = NS
    orders: int = 20
    seed: int = SEED
    delta: float = 0.05
    prior_weight: float = 10.0
    min_rest: int = 20
    strategies: tuple = STRATEGIES
    llm: str | None = None
    n_bins: int = N_BINS
    fraction: float = FRACTION


def _rules(rules) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, tie fractions) of a list of TieRules, each shaped (1, ratios)."""
    return (np.array([[r.threshold for r in rules]]), np.array([[r.tie_fraction for r in rules]]))


def _plain(thresholds) -> tuple[np.ndarray, np.ndarray]:
    t = np.atleast_2d(np.asarray(thresholds, dtype=float))
    return t, np.zeros_like(t)


def _fixed_rules(others: pd.DataFrame, ratios, s: SimSettings):
    """Rules that do not depend on the order: pooled and single (one row per other dataset)."""
    names = list(dict.fromkeys(others[DATASET]))
    single = [thresholds_from_calibration(others.loc[others[DATASET] == d, CONFIDENCE], ratios)
              for d in names]
    return {"pooled": _plain(thresholds_from_calibration(others[CONFIDENCE], ratios)),
            "single": _plain(single)}


def _order_rules(others: pd.DataFrame, ratios, k: int, s: SimSettings):
    """The calibration set of order k and its static rules (plain and ties randomized)."""
    cal = build_calibration_set(others, s.n_bins, s.fraction, s.seed + k)
    conf = cal[CONFIDENCE].to_numpy(float)
    return conf, {"calibration": _plain(thresholds_from_calibration(conf, ratios)),
                  "calibration_ties": _rules(quantile_rules(conf, ratios, randomize=True))}


def _adaptive_rules(seen: np.ndarray, cal: np.ndarray, static: dict, ratios, s: SimSettings):
    if len(seen) == 0:
        return {"adaptive": static["calibration"], "adaptive_ties": static["calibration_ties"],
                "adaptive_prior": static["calibration_ties"]}
    return {"adaptive": _rules(quantile_rules(seen, ratios)),
            "adaptive_ties": _rules(quantile_rules(seen, ratios, randomize=True)),
            "adaptive_prior": _rules(quantile_rules(seen, ratios, cal, s.prior_weight, True))}


def _evaluate(rule, conf, slm_ok, llm_ok, draws, ratios) -> dict:
    """Realized ratio, its mean absolute error and accuracy, averaged over the rule's rows."""
    t, p = rule
    mask = tie_mask(conf[None, None, :], t[:, :, None], p[:, :, None], draws[None, None, :])
    realized = mask.mean(axis=2)
    accuracy = np.where(mask, llm_ok, slm_ok).mean(axis=2)
    one = len(t) == 1
    return {REALIZED: realized.mean(axis=0), ERROR: np.abs(realized - ratios).mean(axis=0),
            ACCURACY: accuracy.mean(axis=0), "threshold": t[0] if one else np.nan,
            "tie_fraction": p[0] if one else np.nan}


def _bands(strategy: str, n: int, m: int, error: np.ndarray, delta: float) -> dict:
    if strategy not in ADAPTIVE:
        return {BAND: np.nan, IN_BAND: np.nan, BAND_FINITE: np.nan, IN_BAND_FINITE: np.nan}
    eps, fin = dkw_epsilon(n, delta), finite_band(n, m, delta)
    return {BAND: eps, IN_BAND: (error <= eps).astype(float), BAND_FINITE: fin,
            IN_BAND_FINITE: (error <= fin).astype(float)}


def _target_blocks(p: pd.DataFrame, others: pd.DataFrame, ratios: np.ndarray, s: SimSettings):
    """Column blocks (dicts of arrays) for one target: every order, n and strategy."""
    conf = p[CONFIDENCE].to_numpy(float)
    slm_ok, llm_ok = p["slm_correct"].to_numpy(bool), p["llm_correct"].to_numpy(bool)
    total, fixed, blocks = len(conf), _fixed_rules(others, ratios, s), []
    for k in range(s.orders):
        perm = np.random.default_rng(s.seed + k).permutation(total)
        cal, static = _order_rules(others, ratios, k, s)
        rules = {**fixed, **static}
        for n in (n for n in s.ns if total - n >= s.min_rest):
            rest = np.sort(perm[n:])
            c, so, lo = conf[rest], slm_ok[rest], llm_ok[rest]
            truth = accuracy_curve(so, lo, c, ratios)[ACCURACY].to_numpy()
            draws = np.random.default_rng([s.seed + k, n]).random(len(rest))
            rules.update(_adaptive_rules(conf[perm[:n]], cal, static, ratios, s))
            for strategy in s.strategies:
                out = _evaluate(rules[strategy], c, so, lo, draws, ratios)
                out.update(_bands(strategy, n, len(rest), out[ERROR], s.delta))
                blocks.append({STRATEGY: strategy, ORDER: k, N: n, N_REST: len(rest),
                               RATIO: ratios, TRUTH: truth, **out})
    return blocks


def _frame(blocks: list, **constant) -> pd.DataFrame:
    lengths = [len(b[RATIO]) for b in blocks]
    cols = {c: np.concatenate([np.broadcast_to(b[c], (n,)) for b, n in zip(blocks, lengths)])
            for c in blocks[0]}
    return pd.DataFrame({**constant, **cols})


def simulate_adaptive(conf_table: pd.DataFrame, llm_table: pd.DataFrame, slm: str, method: str,
                      ratios=RATIOS, settings: SimSettings | None = None,
                      **overrides) -> pd.DataFrame:
    """Leave-one-dataset-out simulation for one (slm, method): tidy, :data:`SIM_COLUMNS`.

    ``settings`` (:class:`SimSettings`) bundles the knobs; any of its fields can also be passed
    by name (``ns=..., orders=..., seed=..., delta=...``).
    """
    s = replace(settings or SimSettings(), **overrides)
    unknown = set(s.strategies) - set(STRATEGIES)
    if unknown or s.orders < 1:
        raise SimulationError(f"unknown strategies {sorted(unknown)} (known: {STRATEGIES}) or "
                              f"orders < 1 ({s.orders})")
    check_columns(conf_table, CONF_COLUMNS, "confidence table")
    check_columns(llm_table, LLM_COLUMNS, "LLM table")
    rows = conf_table[(conf_table[SLM] == slm) & (conf_table[METHOD] == method)
                      & conf_table[CONFIDENCE].notna()]
    llm = s.llm or (llm_table[LLM].iloc[0] if llm_table[LLM].nunique() == 1 else None)
    if llm is None:
        raise SimulationError("the LLM table holds several LLMs; name one with llm=...")
    llm_rows = llm_table[llm_table[LLM] == llm]
    datasets = list(dict.fromkeys(rows[DATASET]))
    if len(datasets) < 2:
        raise SimulationError(f"slm {slm!r}, method {method!r}: leave-one-out needs two or more "
                              f"datasets with confidences, found {datasets}")
    r, frames = np.asarray(ratios, dtype=float), []
    for target in datasets:
        t_rows = rows[rows[DATASET] == target]
        t_llm = llm_rows[(llm_rows[DATASET] == target)
                         & llm_rows[ITEM_ID].isin(t_rows[ITEM_ID])]
        p = pair_items(t_rows[[ITEM_ID, DATASET, CONFIDENCE, CORRECT]], t_llm)
        blocks = _target_blocks(p, rows[rows[DATASET] != target], r, s)
        if blocks:
            frames.append(_frame(blocks, **{SLM: slm, LLM: llm, METHOD: method, TARGET: target}))
    out = pd.concat(frames, ignore_index=True)[list(SIM_COLUMNS)]
    out.attrs["settings"] = s
    return out


# ---- drift: the target follows another dataset in one stream ---------------------------------
DRIFT_VARIANTS = ("history", "window", "target_only")
SOURCE, VARIANT = "source", "variant"
DRIFT_COLUMNS = (SLM, METHOD, SOURCE, TARGET, VARIANT, ORDER, N, N_REST, RATIO, REALIZED, ERROR,
                 BAND, IN_BAND)


@dataclass(frozen=True)
class DriftSettings:
    """The stream is all of a source dataset, then the target; after n target queries the
    threshold (ties randomized) comes from the whole ``history``, the last ``window`` queries,
    or the target's n queries alone (``target_only``: a router told when the data changed)."""
    ns: tuple = (0, 10, 25, 50, 100)
    window: int = 50
    orders: int = 5
    seed: int = SEED
    delta: float = 0.05
    min_rest: int = 20


def _drift_blocks(source: np.ndarray, target: np.ndarray, ratios, k: int, s: DriftSettings):
    rng = np.random.default_rng(s.seed + k)
    stream_a, perm_b = source[rng.permutation(len(source))], rng.permutation(len(target))
    blocks = []
    for n in (n for n in s.ns if len(target) - n >= s.min_rest):
        seen_b, rest = target[perm_b[:n]], target[np.sort(perm_b[n:])]
        draws = np.random.default_rng([s.seed + k, n]).random(len(rest))
        stream = np.concatenate([stream_a, seen_b])
        variants = {"history": stream, "window": stream[-s.window:], "target_only": seen_b}
        for variant, seen in variants.items():
            if len(seen) == 0:
                continue
            t, p = _rules(quantile_rules(seen, ratios, randomize=True))
            realized = tie_mask(rest[None, :], t[0][:, None], p[0][:, None], draws).mean(axis=1)
            error, eps = np.abs(realized - ratios), dkw_epsilon(len(seen), s.delta)
            blocks.append({VARIANT: variant, ORDER: k, N: n, N_REST: len(rest), RATIO: ratios,
                           REALIZED: realized, ERROR: error, BAND: eps,
                           IN_BAND: (error <= eps).astype(float)})
    return blocks


def simulate_drift(conf_table: pd.DataFrame, slm: str, method: str, ratios=RATIOS,
                   settings: DriftSettings | None = None, **overrides) -> pd.DataFrame:
    """Every ordered pair (source, target) of datasets of one (slm, method), :data:`DRIFT_COLUMNS`.

    Order k permutes the source, then the target, with ``default_rng(seed + k)``; the rest of the
    target is routed with the draws ``default_rng([seed + k, n])``. ``band`` is the DKW
    half-width for the number of confidences the threshold rests on, which drift breaks."""
    s = replace(settings or DriftSettings(), **overrides)
    rows = conf_table[(conf_table[SLM] == slm) & (conf_table[METHOD] == method)
                      & conf_table[CONFIDENCE].notna()]
    by = {d: g.sort_values(ITEM_ID, kind="mergesort")[CONFIDENCE].to_numpy(float)
          for d, g in rows.groupby(DATASET, sort=False)}
    if len(by) < 2:
        raise SimulationError(f"slm {slm!r}, method {method!r}: drift needs two datasets")
    r, frames = np.asarray(ratios, dtype=float), []
    for a in by:
        for b in (b for b in by if b != a):
            blocks = [x for k in range(s.orders) for x in _drift_blocks(by[a], by[b], r, k, s)]
            if blocks:
                frames.append(_frame(blocks, **{SLM: slm, METHOD: method, SOURCE: a,
                                                TARGET: b}))
    out = pd.concat(frames, ignore_index=True)[list(DRIFT_COLUMNS)]
    out.attrs["settings"] = s
    return out
