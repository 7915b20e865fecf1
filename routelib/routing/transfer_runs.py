"""Threshold transfer per repetition: the spread of each strategy's realized-ratio error.

:func:`routelib.routing.calibration.transfer` averages the repetitions of a strategy (the
``runs`` calibration or random draws, each source dataset of ``single``); :func:`transfer_runs`
keeps them apart, one mean error per repetition, and :func:`run_spread` summarizes them per
target and strategy (mean, standard deviation, min, max over the runs), the numbers Insight 2's
verdict (:func:`routelib.report.verdicts.calibration_transfers`) compares. :func:`transfer_errors`
summarizes a :func:`routelib.routing.calibration.transfer_table` per target and strategy.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from routelib.routing.calibration import (ACCURACY, CONFIDENCE, ERROR_COLUMNS, GROUND_TRUTH, LLM,
                                          METHOD, RATIO, RATIO_ERROR, SLM, STRATEGY, TARGET,
                                          TRANSFER_COLUMNS, CalibrationError, TransferSettings,
                                          _pool_rows, _realized, _target_items, _threshold_sets,
                                          check_columns)

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
    if st.pool is not None:   # the OOD probe: the others as scored by the target's own probe
        others = _pool_rows(st.pool, others, slm, method, target)
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


def transfer_errors(result: pd.DataFrame, include_endpoints: bool = False) -> pd.DataFrame:
    """Per (slm, llm, method, target, strategy): how far transfer missed (:data:`ERROR_COLUMNS`).

    ``mean_abs_ratio_error`` / ``max_abs_ratio_error``: mean and max over ratios of
    ``ratio_error``; ``mean_accuracy_gap``: mean of ``accuracy - ground_truth_accuracy`` (< 0:
    transfer lost accuracy), ``mean_abs_accuracy_gap`` its absolute version. Ratios 0 and 1 are
    exact by construction (thresholds -inf and +inf) and are left out unless
    ``include_endpoints``, so they do not dilute the means.
    """
    check_columns(result, TRANSFER_COLUMNS, "transfer result")
    r = result if include_endpoints else result[(result[RATIO] > 0) & (result[RATIO] < 1)]
    if r.empty:
        raise CalibrationError("no ratios strictly between 0 and 1 in the transfer result; "
                               "pass include_endpoints=True or use more ratios")
    gap = r[ACCURACY] - r[GROUND_TRUTH]
    r = r.assign(_gap=gap, _abs_gap=gap.abs())
    keys = [SLM, LLM, METHOD, TARGET, STRATEGY]
    out = r.groupby(keys, sort=False).agg(
        mean_abs_ratio_error=(RATIO_ERROR, "mean"), max_abs_ratio_error=(RATIO_ERROR, "max"),
        mean_accuracy_gap=("_gap", "mean"), mean_abs_accuracy_gap=("_abs_gap", "mean"))
    return out.reset_index()[list(ERROR_COLUMNS)]
