"""AUROC of confidence predicting correctness, with bootstrap intervals and a per-run table.

Conventions: confidence is higher = more confident; ``correct`` is 1/True for a correct
answer. NaN confidences are *discarded* items (e.g. verbalized answers without a number):
they are left out of the AUROC and counted in ``n_discarded``. AUROC is undefined (``None``)
when the kept items are all correct or all wrong.

*Estimable*: an AUROC rests on its correct and its wrong items; with a handful of either it is
noise (1 correct item among 200 gives any value from 0 to 1). A setting is estimable with at
least :data:`MIN_CORRECT` correct and :data:`MIN_WRONG` wrong kept items
(:func:`is_estimable`, :func:`estimable_mask`); the others are reported as "too few" and left
out of means, ranks and counts (:mod:`routelib.report.uq_page`, :mod:`routelib.report.verdicts`).

Intervals: :func:`auroc_with_ci` resamples the correct and the wrong items separately (a
bootstrap stratified by class), so every resample has both classes in the observed numbers and
none is dropped; dropping one-class resamples of a plain bootstrap understates the interval
exactly where there are few items of one class.

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


MIN_CORRECT = MIN_WRONG = 10  # an AUROC needs at least this many correct and wrong kept items
TOO_FEW = "too few"  # how a setting below MIN_CORRECT / MIN_WRONG is reported
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


def is_estimable(n_correct: int, n: int) -> bool:
    """At least :data:`MIN_CORRECT` correct and :data:`MIN_WRONG` wrong among ``n`` kept
    items."""
    return n_correct >= MIN_CORRECT and n - n_correct >= MIN_WRONG


def estimable_mask(table: pd.DataFrame) -> pd.Series:
    """Per row of an :func:`auroc_table` (``n`` = kept items, ``n_correct``): estimable?"""
    return (table["n_correct"] >= MIN_CORRECT) & (table["n"] - table["n_correct"] >= MIN_WRONG)


def auroc_with_ci(confidence, correct, n_boot: int = 1000, seed: int = SEED,
                  alpha: float = 0.05) -> AurocResult:
    """AUROC with a percentile bootstrap ``1 - alpha`` interval over items, stratified by
    class: each resample draws the correct items (with replacement) from the correct ones and
    the wrong items from the wrong ones, keeping both counts, so no resample is one class
    (``n_boot_skipped`` is 0; the field stays for readers of older tables). The interval is
    ``None`` when the AUROC is undefined. Deterministic for a given seed.
    """
    res = auroc_result(confidence, correct)
    if res.value is None:
        return res
    conf, corr, _ = _clean(confidence, correct)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(corr == 1), np.flatnonzero(corr == 0)
    idx = np.concatenate([rng.choice(pos, size=(n_boot, len(pos))),
                          rng.choice(neg, size=(n_boot, len(neg)))], axis=1)
    boots = _rank_auc(conf[idx], corr[idx])
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return AurocResult(res.value, res.n, res.n_discarded, float(lo), float(hi), res.n_correct, 0)


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
