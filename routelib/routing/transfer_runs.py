"""Threshold transfer per repetition: the spread of each strategy's realized-ratio error.

:func:`routelib.routing.calibration.transfer` averages the repetitions of a strategy (the
``runs`` calibration or random draws, each source dataset of ``single``); :func:`transfer_runs`
keeps them apart, one mean error per repetition, and :func:`run_spread` summarizes them per
target and strategy (mean, standard deviation, min, max over the runs), the numbers Insight 2's
verdict (:func:`routelib.report.verdicts.calibration_transfers`) compares.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from routelib.routing.calibration import (CONFIDENCE, LLM, METHOD, SLM, STRATEGY, TARGET,
                                          CalibrationError, TransferSettings, _realized,
                                          _target_items, _threshold_sets)

RUN = "run"
RUN_COLUMNS = (SLM, LLM, METHOD, TARGET, STRATEGY, RUN, "mean_abs_ratio_error")


def transfer_runs(conf_table: pd.DataFrame, llm_table: pd.DataFrame, slm: str, method: str,
                  target: str, *, settings: TransferSettings | None = None,
                  llm: str | None = None, **overrides) -> pd.DataFrame:
    """:func:`transfer`'s realized-ratio error per repetition (:data:`RUN_COLUMNS`): for each
    run (calibration and random draws: seed ``seed + run``; single: each source dataset;
    pooled: one) the mean over the ratios strictly between 0 and 1 of ``|realized -
    requested|``, the number whose spread over runs :func:`run_spread` reports."""
    st = replace(settings or TransferSettings(), **overrides)
    st.check()
    others, p, llm = _target_items(conf_table, llm_table, slm, method, target, llm)
    r = np.atleast_1d(np.asarray(st.ratios, dtype=float))
    inner = (r > 0) & (r < 1)
    if not inner.any():
        raise CalibrationError("transfer_runs needs ratios strictly between 0 and 1")
    sets, _ = _threshold_sets(others, r, st)
    realized, _ = _realized(p[CONFIDENCE].to_numpy(float), p["slm_correct"].to_numpy(bool),
                            p["llm_correct"].to_numpy(bool), sets)
    err = np.abs(realized[:, inner] - r[inner]).mean(axis=1)
    return pd.DataFrame({SLM: slm, LLM: llm, METHOD: method, TARGET: target,
                         STRATEGY: st.strategy, RUN: np.arange(len(err)),
                         "mean_abs_ratio_error": err})[list(RUN_COLUMNS)]


def run_spread(runs_table: pd.DataFrame) -> pd.DataFrame:
    """Per (slm, llm, method, target, strategy) of a :func:`transfer_runs` table: the mean
    realized-ratio error, its standard deviation over runs (ddof 1; 0 for one run), min, max
    and the number of runs."""
    g = runs_table.groupby([SLM, LLM, METHOD, TARGET, STRATEGY], sort=False)["mean_abs_ratio_error"]
    out = g.agg(error="mean", error_sd="std", error_min="min", error_max="max", runs="size")
    out["error_sd"] = out["error_sd"].fillna(0.0)
    return out.reset_index()
