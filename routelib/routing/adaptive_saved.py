"""The adaptive-threshold simulation (:mod:`routelib.routing.adaptive_sim`) computed once per input
and saved like the routing study's parts (:func:`routelib.routing.saved.saved_part`), so a page
reads it instead of recomputing it.

:func:`saved_simulation` runs :func:`~routelib.routing.adaptive_sim.simulate_adaptive` for every
(slm, method) and keeps two tables (the full per-order table of a paper-scale run is tens of MB):

- ``summary`` (:data:`SUMMARY_COLUMNS`): per (slm, llm, method, target, strategy, n, ratio) the
  mean over the arrival orders of the realized ratio, its absolute error, the accuracy, the
  target's own curve and the in-band indicators (so ``in_band`` is the share of orders inside
  the band), with ``n_rest``, ``band`` and ``band_finite`` (the same in every order) and
  ``orders``. Every cell has the same number of orders, so a mean over summary rows equals the
  mean over the per-order rows it stands for (:func:`summarize_orders`).
- ``orders`` (:data:`ORDER_COLUMNS`): the per-order realized ratio and error at
  :data:`ORDER_NS` for :data:`ORDER_STRATEGIES`, for statements about one arrival order
  (quantiles, how often adaptation loses to the static set).

Key: the digests (:func:`routelib.routing.saved.frame_digest`) of the routable confidence rows
of the SLMs and methods and of the LLM's rows, the :class:`~routelib.routing.adaptive_sim.
SimSettings`, the ratios and :data:`ADAPTIVE_VERSION` (bump it when the simulation's code changes
what it computes). Stored under ``<cache>/routing_study/adaptive__<key[:16]>/``.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from routelib.columns import CONF_COLUMNS, CONFIDENCE, DATASET, LLM_COLUMNS
from routelib.routing import saved
from routelib.routing.adaptive_sim import (ACCURACY, BAND, BAND_FINITE, ERROR, IN_BAND,
                                           IN_BAND_FINITE, LLM, METHOD, N, N_REST, ORDER, RATIO,
                                           RATIOS, REALIZED, SLM, STRATEGY, TARGET, TRUTH,
                                           SimSettings, SimulationError, simulate_adaptive)

ADAPTIVE_VERSION = 1
PART = "adaptive"
GROUP = (SLM, LLM, METHOD, TARGET, STRATEGY, N, RATIO)
CONSTANT = (N_REST, BAND, BAND_FINITE)     # the same in every order of a cell
MEANS = (REALIZED, ERROR, ACCURACY, TRUTH, IN_BAND, IN_BAND_FINITE)
ORDERS = "orders"
SUMMARY_COLUMNS = GROUP + CONSTANT + (ORDERS,) + MEANS
ORDER_NS = (10,)
ORDER_STRATEGIES = ("calibration_ties", "adaptive_ties")
ORDER_COLUMNS = (SLM, METHOD, TARGET, STRATEGY, ORDER, N, RATIO, REALIZED, ERROR)


def summarize_orders(sim: pd.DataFrame) -> pd.DataFrame:
    """Per cell of :data:`GROUP`, the mean over orders of :data:`MEANS` (module docstring)."""
    g = sim.groupby(list(GROUP), sort=False)
    out = g[list(MEANS)].mean()
    out[list(CONSTANT)] = g[list(CONSTANT)].first()
    out[ORDERS] = g.size()
    if (g[N_REST].nunique() > 1).any():
        raise SimulationError("n_rest differs between the orders of a cell")
    return out.reset_index()[list(SUMMARY_COLUMNS)]


def order_rows(sim: pd.DataFrame, ns=ORDER_NS, strategies=ORDER_STRATEGIES) -> pd.DataFrame:
    """The per-order rows (:data:`ORDER_COLUMNS`) at ``ns`` for ``strategies``."""
    rows = sim[sim[N].isin(ns) & sim[STRATEGY].isin(strategies)]
    return rows[list(ORDER_COLUMNS)].reset_index(drop=True)


def _settings_fields(s: SimSettings, ratios) -> dict:
    d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(s).items()}
    return dict(d, ratios=[float(r) for r in ratios])


def saved_simulation(conf_table: pd.DataFrame, llm_table: pd.DataFrame, slms, methods,
                     settings: SimSettings, ratios=RATIOS, root: Path | None = None,
                     label: str = "") -> dict:
    """``{"summary": ..., "orders": ...}`` of the simulation of every (slm, method) against
    ``settings.llm`` (module docstring), read from ``root`` (default the routing study's folder)
    or computed once and saved there; ``label`` says in ``study.json`` what the inputs are."""
    if settings.llm is None:
        raise SimulationError("name the LLM tier in the settings (SimSettings(llm=...))")
    slms, methods = list(slms), list(methods)
    rows = conf_table[conf_table[SLM].isin(slms) & conf_table[METHOD].isin(methods)
                      & conf_table[CONFIDENCE].notna()].reset_index(drop=True)
    llm_rows = llm_table[llm_table[LLM] == settings.llm].reset_index(drop=True)
    if llm_rows.empty:
        raise SimulationError(f"no rows of the LLM {settings.llm!r} in the LLM table")
    fields = {"part": PART, "version": ADAPTIVE_VERSION,
              "inputs": {"conf": saved.frame_digest(rows, CONF_COLUMNS),
                         "llm": saved.frame_digest(llm_rows, LLM_COLUMNS)},
              "settings": dict(_settings_fields(settings, ratios), slms=slms, methods=methods)}

    def compute() -> dict:
        sim = pd.concat([simulate_adaptive(rows, llm_rows, slm, m, ratios, settings)
                         for slm in slms for m in methods], ignore_index=True)
        sim.attrs = {}  # the settings object: in the key, not in the parquet files
        return {"summary": summarize_orders(sim), "orders": order_rows(sim)}

    def about() -> dict:
        return {"label": label, "slms": slms, "llm": settings.llm, "methods": methods,
                "datasets": list(dict.fromkeys(rows[DATASET]))}
    return saved.saved_part(root or saved.study_root(), fields, compute, about)
