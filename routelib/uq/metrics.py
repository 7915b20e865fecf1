"""AUROC of confidence predicting correctness, with bootstrap intervals and a per-run table.

Conventions: confidence is higher = more confident; ``correct`` is 1/True for a correct
answer. NaN confidences are *discarded* items (e.g. verbalized answers without a number):
they are left out of the AUROC and counted in ``n_discarded``. AUROC is undefined (``None``)
when the kept items are all correct or all wrong.

The confidence table (input of :func:`auroc_table`) is tidy, one row per
(slm, dataset, item, method), with columns :data:`CONF_COLUMNS`; the output has one row
per (slm, dataset, method) with columns :data:`AUROC_COLUMNS`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from routelib.columns import CONF_COLUMNS, DATASET, METHOD, SLM
from routelib.config import SEED


GROUP_COLUMNS = (SLM, DATASET, METHOD)
AUROC_COLUMNS = GROUP_COLUMNS + ("auroc", "ci_low", "ci_high", "n", "n_discarded",
                                 "n_correct", "n_boot_skipped")


@dataclass(frozen=True)
class AurocResult:
    """AUROC over the kept items. ``n``: items kept (non-NaN confidence); ``n_discarded``:
    items with NaN confidence; ``ci_low``/``ci_high``: percentile bootstrap interval (``None``
    unless requested or when undefined); ``n_boot_skipped``: bootstrap resamples skipped
    because they were all correct or all wrong."""
    value: float | None
    n: int
    n_discarded: int
    ci_low: float | None = None
    ci_high: float | None = None
    n_correct: int = 0
    n_boot_skipped: int = 0


def _clean(confidence, correct) -> tuple[np.ndarray, np.ndarray, int]:
    conf = np.asarray(confidence, dtype=float).reshape(-1)
    corr = np.asarray(correct)
    if corr.shape != conf.shape:
        raise ValueError(f"confidence and correct differ in shape: {conf.shape} vs {corr.shape}")
    if corr.dtype.kind == "f" and np.isnan(corr).any():
        raise ValueError("correct contains NaN: every item needs a grade")
    if not np.isin(corr, (0, 1)).all():
        raise ValueError(f"correct must be 0/1 or bool, got values {np.unique(corr)[:5]}")
    if np.isinf(conf).any():
        raise ValueError("confidence contains +-inf; methods return finite confidences or NaN "
                         "(discarded)")
    keep = ~np.isnan(conf)
    return conf[keep], corr[keep].astype(int), int((~keep).sum())


def auroc(confidence, correct) -> float | None:
    """ROC AUC of ``confidence`` for ``correct`` (NaN confidences dropped); ``None`` when the
    kept items are all correct or all wrong (or none are left)."""
    return auroc_result(confidence, correct).value


def auroc_result(confidence, correct) -> AurocResult:
    """:func:`auroc` with the number of kept and discarded items."""
    conf, corr, n_disc = _clean(confidence, correct)
    k = int(corr.sum())
    value = None if k in (0, len(corr)) else float(roc_auc_score(corr, conf))
    return AurocResult(value, len(corr), n_disc, n_correct=k)


def _rank_auc(conf: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``conf`` (b, n) vs ``corr`` (b, n) by the Mann-Whitney statistic
    (ties count one half, as in roc_auc_score); NaN where a row is one class only."""
    ranks = rankdata(conf, axis=1)
    n1 = corr.sum(axis=1)
    n0 = corr.shape[1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * corr).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    auc[(n1 == 0) | (n0 == 0)] = np.nan
    return auc


def auroc_with_ci(confidence, correct, n_boot: int = 1000, seed: int = SEED,
                  alpha: float = 0.05) -> AurocResult:
    """AUROC with a percentile bootstrap ``1 - alpha`` interval over items.

    Resamples (with replacement, of the kept items) that are all correct or all wrong have no
    AUROC: they are skipped and counted in ``n_boot_skipped``. The interval is ``None`` when
    the AUROC is undefined or every resample was skipped. Deterministic for a given seed.
    """
    res = auroc_result(confidence, correct)
    if res.value is None:
        return res
    conf, corr, _ = _clean(confidence, correct)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(conf), size=(n_boot, len(conf)))
    boots = _rank_auc(conf[idx], corr[idx])
    ok = boots[~np.isnan(boots)]
    skipped = n_boot - len(ok)
    if len(ok) == 0:
        return AurocResult(res.value, res.n, res.n_discarded, None, None, res.n_correct, skipped)
    lo, hi = np.quantile(ok, [alpha / 2, 1 - alpha / 2])
    return AurocResult(res.value, res.n, res.n_discarded, float(lo), float(hi), res.n_correct,
                       skipped)


def auroc_table(conf_table: pd.DataFrame, ci: bool = False, n_boot: int = 1000,
                seed: int = SEED, alpha: float = 0.05) -> pd.DataFrame:
    """One row per (slm, dataset, method) of a tidy confidence table: AUROC (``None`` ->
    NaN when undefined), its bootstrap interval when ``ci``, and the item counts."""
    missing = [c for c in CONF_COLUMNS if c not in conf_table.columns]
    if missing:
        raise KeyError(f"confidence table lacks column(s) {missing}; expected "
                       f"{list(CONF_COLUMNS)}")
    dup = conf_table.duplicated(list(GROUP_COLUMNS) + ["item_id"])
    if dup.any():
        first = conf_table[dup].iloc[0]
        raise ValueError(f"{int(dup.sum())} duplicate (slm, dataset, method, item_id) rows, e.g. "
                         f"{tuple(first[list(GROUP_COLUMNS) + ['item_id']])}")
    rows = []
    for key, g in conf_table.groupby(list(GROUP_COLUMNS), sort=True):
        conf, corr = g["confidence"].to_numpy(float), g["correct"].to_numpy()
        r = (auroc_with_ci(conf, corr, n_boot=n_boot, seed=seed, alpha=alpha) if ci
             else auroc_result(conf, corr))
        rows.append(dict(zip(GROUP_COLUMNS, key), auroc=r.value, ci_low=r.ci_low,
                         ci_high=r.ci_high, n=r.n, n_discarded=r.n_discarded,
                         n_correct=r.n_correct, n_boot_skipped=r.n_boot_skipped))
    out = pd.DataFrame(rows, columns=list(AUROC_COLUMNS))
    for c in ("auroc", "ci_low", "ci_high"):
        out[c] = out[c].astype(float)
    return out
