"""Uncertainty-based routing (paper Section 3.2): which items go to the LLM, and what it buys.

Sign convention (the one used everywhere in routelib): **confidence, higher = more confident**;
an item is routed to the LLM when its confidence is *low*.

Routing by rank (:func:`route_mask`). For a routing ratio ``r`` on ``n`` items, the
``k = n_routed(n, r)`` items that come first in the *routing order* go to the LLM. The routing
order sorts by confidence ascending, then by ``tiebreak`` ascending (when given), then by
position in the input; ``k`` is ``r * n`` rounded half up (``floor(r * n + 0.5)``: 2.5 -> 3, not
Python's round-half-to-even). So a ratio is realized exactly, ``k / n``, on the data it was chosen
on, even when confidences tie. :func:`simulate` sorts every paired table by ``item_id`` first,
so there ties fall to the smaller item id whatever the input row order.

Routing by threshold (:func:`apply_threshold`): new data, e.g. a dataset the threshold was not
chosen on (calibration transfer), is routed by value: confidence ``< threshold`` (strict).
:func:`threshold_for_ratio` picks the threshold from the sorted confidences ``c(1) <= ... <=
c(n)``: ``-inf`` when ``k = 0``, ``+inf`` when ``k = n``, else the midpoint ``(c(k) + c(k+1)) /
2`` (``c(k+1)`` when either is infinite). On the same data, ``apply_threshold`` then routes
exactly the ``k`` items :func:`route_mask` routes whenever ``c(k) < c(k+1)``, in particular
always when the confidences are distinct; when ``c(k) == c(k+1)`` the whole tied group stays
with the SLM and fewer than ``k`` items are routed (a value cannot split a tie; use
:func:`route_mask` to simulate on the data itself).

Tables. Inputs are tidy: a confidence table with :data:`CONF_COLUMNS` (``correct`` = the SLM's
correctness) and an LLM table with :data:`LLM_COLUMNS`; items pair up by ``(dataset,
item_id)``. A curve is a frame with :data:`CURVE_COLUMNS`: the requested ``ratio``, the
``accuracy`` reached, the realized share ``routed`` (``k / n``) and the ``threshold`` (NaN for
the oracle and random routers, which have none).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from routelib.columns import (ACCURACY, CONF_COLUMNS, CONFIDENCE, CORRECT, COST, CURVE_COLUMNS,
                              DATASET, ITEM_ID, LATENCY, LLM, LLM_COLUMNS, METHOD, N, RATIO, ROUTED,
                              ROUTER, SIM_COLUMNS, SLM, THRESHOLD, TOP_K_COLUMNS)
from routelib.errors import RoutelibError

ROUTERS = ("uq", "oracle", "random")

DEFAULT_RATIOS = np.linspace(0.0, 1.0, 21)  # 0%, 5%, ..., 100%

# oracle routing order: (SLM correct, LLM correct) -> rank, lowest routed first
ORACLE_ORDER = {(False, True): 0, (False, False): 1, (True, True): 2, (True, False): 3}


class RoutingError(RoutelibError, ValueError):
    """Malformed routing input: bad ratio, unpaired items, missing columns."""


# ---- validation helpers --------------------------------------------------------------------
def check_columns(frame: pd.DataFrame, columns, what: str) -> None:
    """Raise naming the columns ``frame`` lacks (``what`` names the table in the message)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RoutingError(f"the {what} lacks column(s) {missing}; it needs {list(columns)} "
                           f"(it has {list(frame.columns)})")


def _confidence(confidence, n: int | None = None) -> np.ndarray:
    c = np.asarray(confidence, dtype=float)
    if c.ndim != 1:
        raise RoutingError(f"confidence must be 1-D, got shape {c.shape}")
    if n is not None and len(c) != n:
        raise RoutingError(f"confidence has {len(c)} values but there are {n} items")
    if np.isnan(c).any():
        raise RoutingError(f"confidence has {int(np.isnan(c).sum())} NaN value(s); drop or score "
                           "those items before routing (a NaN has no place in the order)")
    return c


def _bools(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise RoutingError(f"{name} must be 1-D, got shape {a.shape}")
    if a.dtype != bool:
        values = pd.unique(a)
        if not set(values.tolist()) <= {0, 1}:
            raise RoutingError(f"{name} must be booleans (or 0/1); found values "
                               f"{sorted(map(repr, values))[:5]}")
        a = a.astype(bool)
    return a


def _paired(slm_correct, llm_correct) -> tuple[np.ndarray, np.ndarray]:
    slm, llm = _bools(slm_correct, "slm_correct"), _bools(llm_correct, "llm_correct")
    if len(slm) != len(llm):
        raise RoutingError(f"slm_correct has {len(slm)} items but llm_correct has {len(llm)}; "
                           "pair the items first (see simulate)")
    if len(slm) == 0:
        raise RoutingError("no items to route")
    return slm, llm


def _ratios(ratios) -> np.ndarray:
    r = np.atleast_1d(np.asarray(ratios, dtype=float))
    if r.ndim != 1 or len(r) == 0:
        raise RoutingError("ratios must be a non-empty 1-D sequence of shares in [0, 1]")
    for x in r:
        _check_ratio(x)
    return r


def _check_ratio(ratio: float) -> None:
    if not (0.0 <= ratio <= 1.0):  # also rejects NaN
        raise RoutingError(f"a routing ratio is a share of items in [0, 1], got {ratio!r} "
                           "(pass 0.3 for 30%)")


# ---- routing by rank -----------------------------------------------------------------------
def round_half_up(x: float) -> int:
    """``floor(x + 0.5)`` (2.5 -> 3), tolerant of float error just below a half (2.4999999999)."""
    return int(math.floor(x + 0.5 + 1e-9))


def n_routed(n: int, ratio: float) -> int:
    """Number of items routed at ``ratio``: ``ratio * n`` rounded half up (0.25 of 10 -> 3)."""
    _check_ratio(ratio)
    return min(n, max(0, round_half_up(ratio * n)))


def routing_order(confidence, tiebreak=None) -> np.ndarray:
    """Item indices in routing order: confidence ascending, then ``tiebreak``, then position.

    ``tiebreak`` is any sortable 1-D sequence (numbers or strings, e.g. item ids), compared by
    value; items equal on both keys keep their input order.
    """
    c = _confidence(confidence)
    position = np.arange(len(c))
    if tiebreak is None:
        return np.lexsort((position, c))
    tb = np.asarray(tiebreak)
    if tb.shape != c.shape:
        raise RoutingError(f"tiebreak has shape {tb.shape} but confidence has {c.shape}")
    tb_rank = np.unique(tb, return_inverse=True)[1].reshape(-1)
    return np.lexsort((position, tb_rank, c))


def route_mask(confidence, ratio: float, tiebreak=None) -> np.ndarray:
    """Boolean mask (True = to the LLM) of the first ``n_routed(n, ratio)`` items in routing order.

    This is what simulation uses: it routes exactly ``k`` items, ties included.
    """
    order = routing_order(confidence, tiebreak)
    mask = np.zeros(len(order), dtype=bool)
    mask[order[:n_routed(len(order), ratio)]] = True
    return mask


# ---- routing by threshold ------------------------------------------------------------------
def _threshold_sorted(sorted_conf: np.ndarray, k: int) -> float:
    if k == 0:
        return -math.inf
    if k == len(sorted_conf):
        return math.inf
    lo, hi = float(sorted_conf[k - 1]), float(sorted_conf[k])
    return (lo + hi) / 2 if math.isfinite(lo) and math.isfinite(hi) else hi


def threshold_for_ratio(confidence, ratio: float) -> float:
    """The threshold that routes the ``ratio`` share of lowest-confidence items (module docstring).

    ``-inf`` at ratio 0, ``+inf`` at ratio 1, else the midpoint between the ``k``-th and
    ``(k+1)``-th smallest confidence, ``k = n_routed(n, ratio)``.
    """
    c = np.sort(_confidence(confidence))
    if len(c) == 0:
        raise RoutingError("cannot choose a threshold from zero confidences")
    return _threshold_sorted(c, n_routed(len(c), ratio))


def apply_threshold(confidence, threshold: float) -> np.ndarray:
    """Boolean mask of the items routed by ``threshold``: confidence strictly below it."""
    if isinstance(threshold, float) and math.isnan(threshold):
        raise RoutingError("threshold is NaN; choose one with threshold_for_ratio")
    return _confidence(confidence) < threshold


# ---- accuracy curves -----------------------------------------------------------------------
def _curve(slm: np.ndarray, llm: np.ndarray, order: np.ndarray, ratios: np.ndarray,
           thresholds) -> pd.DataFrame:
    """Accuracy when the first k items of ``order`` take the LLM's answer, for each ratio."""
    n = len(slm)
    gain = llm[order].astype(np.int64) - slm[order].astype(np.int64)
    cum = np.concatenate([[0], np.cumsum(gain)])
    base = int(slm.sum())
    ks = np.array([n_routed(n, r) for r in ratios])
    return pd.DataFrame({RATIO: ratios, ACCURACY: (base + cum[ks]) / n, ROUTED: ks / n,
                         THRESHOLD: np.asarray(thresholds, dtype=float)})


def accuracy_curve(slm_correct, llm_correct, confidence, ratios=DEFAULT_RATIOS,
                   tiebreak=None) -> pd.DataFrame:
    """Accuracy of the confidence router at each ratio (:data:`CURVE_COLUMNS`).

    Accuracy = mean over items of the LLM's correctness on routed items and the SLM's on kept
    ones, routing by rank (:func:`route_mask`). Ratio 0 gives exactly the SLM-only accuracy,
    ratio 1 exactly the LLM-only accuracy.
    """
    slm, llm = _paired(slm_correct, llm_correct)
    conf = _confidence(confidence, len(slm))
    r = _ratios(ratios)
    sorted_conf = np.sort(conf)
    thresholds = [_threshold_sorted(sorted_conf, n_routed(len(conf), x)) for x in r]
    return _curve(slm, llm, routing_order(conf, tiebreak), r, thresholds)


def oracle_confidence(slm_correct, llm_correct) -> np.ndarray:
    """The oracle's pseudo-confidence: the rank of each item's class in :data:`ORACLE_ORDER`."""
    slm, llm = _paired(slm_correct, llm_correct)
    return np.array([ORACLE_ORDER[(bool(s), bool(g))] for s, g in zip(slm, llm)], dtype=float)


def oracle_curve(slm_correct, llm_correct, ratios=DEFAULT_RATIOS) -> pd.DataFrame:
    """The best accuracy any router can reach at each ratio (routing ``k`` items).

    Routing item i changes the number correct by ``gain_i = llm_i - slm_i`` (+1, 0 or -1), so
    the accuracy with a routed set S is ``acc_slm + sum(gain_i, i in S) / n``; for every ``k``
    this is largest when S holds the ``k`` largest gains. Routing in order of decreasing gain is
    therefore optimal at every ratio at once: first SLM wrong & LLM right (+1), then the two
    gain-0 classes, SLM wrong & LLM wrong before both right (either order gives the same
    accuracy; this one routes the SLM's errors first), last SLM right & LLM wrong (-1). Items of
    one class keep their input order. ``threshold`` is NaN (the oracle reads the labels).
    """
    slm, llm = _paired(slm_correct, llm_correct)
    r = _ratios(ratios)
    order = routing_order(oracle_confidence(slm, llm))
    return _curve(slm, llm, order, r, np.full(len(r), np.nan))


def random_curve(slm_correct, llm_correct, ratios=DEFAULT_RATIOS) -> pd.DataFrame:
    """The expected accuracy of a router that sends a uniformly random ``k``-subset (exact).

    Each item is routed with probability ``s = k / n``, so the expectation is
    ``(1 - s) * acc_slm + s * acc_llm``; ``s`` is the realized share of the other routers
    (``k = n_routed(n, ratio)``), equal to ``ratio`` whenever ``ratio * n`` is an integer.
    """
    slm, llm = _paired(slm_correct, llm_correct)
    r = _ratios(ratios)
    n = len(slm)
    share = np.array([n_routed(n, x) for x in r]) / n
    acc_slm, acc_llm = slm.mean(), llm.mean()
    return pd.DataFrame({RATIO: r, ACCURACY: (1 - share) * acc_slm + share * acc_llm,
                         ROUTED: share, THRESHOLD: np.full(len(r), np.nan)})


def area_under_curve(curve: pd.DataFrame) -> float:
    """Trapezoid area under accuracy vs. requested ratio over [0, 1] (the curve must span it)."""
    check_columns(curve, (RATIO, ACCURACY), "curve")
    c = curve.sort_values(RATIO, kind="mergesort")
    x, y = c[RATIO].to_numpy(float), c[ACCURACY].to_numpy(float)
    if len(x) < 2 or x[0] != 0.0 or x[-1] != 1.0:
        raise RoutingError("the area over [0, 1] needs the ratios 0 and 1 in the curve; "
                           "compute it with ratios=np.linspace(0, 1, 21)")
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def ratio_to_reach(curve: pd.DataFrame, target: float) -> float:
    """The smallest ratio at which the curve first reaches ``target`` accuracy (NaN if never).

    The curve is read as piecewise linear between its grid points (sorted by ratio): if the
    first point at or above ``target`` is point i > 0, the answer is the linear interpolation
    on the segment (i-1, i); if it is point 0, its ratio.
    """
    check_columns(curve, (RATIO, ACCURACY), "curve")
    c = curve.sort_values(RATIO, kind="mergesort")
    x, y = c[RATIO].to_numpy(float), c[ACCURACY].to_numpy(float)
    hits = np.flatnonzero(y >= target)
    if len(hits) == 0:
        return math.nan
    i = int(hits[0])
    if i == 0:
        return float(x[0])
    return float(x[i - 1] + (target - y[i - 1]) / (y[i] - y[i - 1]) * (x[i] - x[i - 1]))


def check_unique(frame: pd.DataFrame, keys: list[str], what: str) -> None:
    dup = frame.duplicated(keys, keep=False)
    if dup.any():
        first = frame.loc[dup, keys].iloc[0].to_dict()
        raise RoutingError(f"the {what} has {int(dup.sum())} rows with a repeated {keys}, "
                           f"e.g. {first}; keep one row per item")


def pair_items(conf_rows: pd.DataFrame, llm_rows: pd.DataFrame, where: str = "") -> pd.DataFrame:
    """Join one (slm, method, dataset) group to one LLM's rows of that dataset by ``item_id``.

    Both sides must hold the same items; otherwise raises naming the count, the dataset and a
    few ids. Returns ``item_id, confidence, slm_correct, llm_correct`` sorted by ``item_id``.
    """
    dataset = conf_rows[DATASET].iloc[0] if len(conf_rows) else "?"
    llm = llm_rows[LLM].iloc[0] if len(llm_rows) and LLM in llm_rows else "the LLM"
    a = pd.Index(conf_rows[ITEM_ID])
    b = pd.Index(llm_rows[ITEM_ID])
    no_llm = a.difference(b, sort=False)
    if len(no_llm):
        raise RoutingError(
            f"LLM {llm!r} has no correctness for {len(no_llm)} of {len(a)} item(s) of dataset "
            f"{dataset!r}{where} (e.g. {list(no_llm[:3])}); score them with the LLM or drop "
            "them from the confidence table")
    no_slm = b.difference(a, sort=False)
    if len(no_slm):
        raise RoutingError(
            f"the confidence table{where} lacks {len(no_slm)} item(s) of dataset {dataset!r} "
            f"that LLM {llm!r} scored (e.g. {list(no_slm[:3])}); filter the LLM table to the "
            "SLM's items first")
    merged = conf_rows[[ITEM_ID, CONFIDENCE, CORRECT]].merge(
        llm_rows[[ITEM_ID, CORRECT]], on=ITEM_ID, suffixes=("_slm", "_llm"), validate="1:1")
    merged = merged.rename(columns={f"{CORRECT}_slm": "slm_correct",
                                    f"{CORRECT}_llm": "llm_correct"})
    return merged.sort_values(ITEM_ID, kind="mergesort").reset_index(drop=True)


def simulate(conf_table: pd.DataFrame, llm_table: pd.DataFrame,
             ratios=DEFAULT_RATIOS) -> pd.DataFrame:
    """Routing curves for every (slm, llm, dataset, method): tidy, :data:`SIM_COLUMNS`.

    One row per (slm, llm, dataset, method, router, ratio), ``router`` in :data:`ROUTERS`:
    ``uq`` routes by the method's confidence (ties broken by ``item_id``), ``oracle`` and
    ``random`` are :func:`oracle_curve` and :func:`random_curve` on the same items (repeated per
    method, so each method's rows are a complete comparison). Every LLM must have scored
    exactly the items of every (slm, method, dataset) group, and no confidence may be NaN
    (a discarded item: drop it, or set it to ``-inf`` to route it first); otherwise raises.
    """
    check_columns(conf_table, CONF_COLUMNS, "confidence table")
    check_columns(llm_table, LLM_COLUMNS, "LLM table")
    check_unique(conf_table, [SLM, METHOD, DATASET, ITEM_ID], "confidence table")
    check_unique(llm_table, [LLM, DATASET, ITEM_ID], "LLM table")
    r = _ratios(ratios)
    llms = list(dict.fromkeys(llm_table[LLM]))
    if not llms or conf_table.empty:
        raise RoutingError("simulate needs a non-empty confidence table and LLM table")
    frames = []
    for (slm, dataset, method), group in conf_table.groupby([SLM, DATASET, METHOD], sort=False):
        for llm in llms:
            llm_rows = llm_table[(llm_table[LLM] == llm) & (llm_table[DATASET] == dataset)]
            if llm_rows.empty:
                raise RoutingError(f"LLM {llm!r} has no rows for dataset {dataset!r}; score it "
                                   "or drop the dataset from the confidence table")
            p = pair_items(group, llm_rows, where=f" (slm {slm!r}, method {method!r})")
            n_nan = int(p[CONFIDENCE].isna().sum())
            if n_nan:
                raise RoutingError(
                    f"{n_nan} of {len(p)} confidence(s) of slm {slm!r}, method {method!r} on "
                    f"dataset {dataset!r} are NaN (discarded items); drop them from both tables, "
                    "or set them to -inf to route them to the LLM first")
            curves = {
                "uq": accuracy_curve(p["slm_correct"], p["llm_correct"], p[CONFIDENCE], r),
                "oracle": oracle_curve(p["slm_correct"], p["llm_correct"], r),
                "random": random_curve(p["slm_correct"], p["llm_correct"], r),
            }
            for router, curve in curves.items():
                frames.append(curve.assign(**{SLM: slm, LLM: llm, DATASET: dataset,
                                              METHOD: method, ROUTER: router, N: len(p)}))
    return pd.concat(frames, ignore_index=True)[list(SIM_COLUMNS)]
