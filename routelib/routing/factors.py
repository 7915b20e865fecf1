"""Insight 1, measured directly: how far apart are confidence distributions that differ in one
factor only: the dataset, the SLM, or the UQ method?

For every pair of (slm, dataset, method) cells that agree on two of the three and differ in the
third, :func:`pair_distances` gives the Kolmogorov-Smirnov distance and the 1-Wasserstein
distance between the two cells' confidences (discarded items left out; a cell needs
:data:`MIN_ITEMS` confidences). :func:`factor_summary` averages them per factor with a
percentile bootstrap interval over the pairs (seeded), and :func:`insight1_signs` turns the
paper's claim into one sign per setting for :mod:`routelib.report.verdicts`: within each
method, do distributions move more when the SLM changes than when the dataset changes; and
within each SLM, more when the method changes than when the dataset changes?
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp, wasserstein_distance

from routelib.columns import CONFIDENCE, DATASET, METHOD, SLM
from routelib.config import SEED

KEY = (SLM, DATASET, METHOD)  # a cell
FACTORS = (DATASET, SLM, METHOD)
MIN_ITEMS = 20
PAIR_COLUMNS = ("factor", SLM, DATASET, METHOD, "a", "b", "ks", "wasserstein")
SUMMARY_COLUMNS = ("factor", "within", "pairs", "ks_mean", "ks_low", "ks_high",
                   "wasserstein_mean")


def _cells(conf: pd.DataFrame) -> dict:
    kept = conf[conf[CONFIDENCE].notna()]
    out = {}
    for key, g in kept.groupby([SLM, DATASET, METHOD], sort=False):
        if len(g) >= MIN_ITEMS:
            out[key] = g[CONFIDENCE].to_numpy(float)
    return out


def pair_distances(conf: pd.DataFrame) -> pd.DataFrame:
    """One row per pair of cells differing in exactly one factor (:data:`PAIR_COLUMNS`; the
    differing factor's column is empty, ``a``/``b`` name its two values)."""
    cells = _cells(conf)
    rows = []
    for factor in FACTORS:
        i = KEY.index(factor)
        fixed = [j for j in range(3) if j != i]
        groups: dict = {}
        for key in cells:
            groups.setdefault(tuple(key[j] for j in fixed), []).append(key)
        for _, keys in groups.items():
            for ka, kb in combinations(keys, 2):
                a, b = cells[ka], cells[kb]
                where = dict(zip(KEY, ka))
                where[factor] = ""
                rows.append(dict(factor=factor, **where, a=ka[i], b=kb[i],
                                 ks=float(ks_2samp(a, b).statistic),
                                 wasserstein=float(wasserstein_distance(a, b))))
    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


def _boot_mean(x: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    if len(x) < 2:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    return tuple(np.percentile(means, [2.5, 97.5]))


def factor_summary(pairs: pd.DataFrame, within: str | None = None, n_boot: int = 1000,
                   seed: int = SEED) -> pd.DataFrame:
    """Mean KS (with a 95% bootstrap interval over pairs) and mean Wasserstein distance per
    factor; ``within``: also per value of that column (e.g. per method)."""
    keys = ["factor"] + ([within] if within else [])
    rows = []
    for key, g in pairs.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        if within and key[1] == "":
            continue
        lo, hi = _boot_mean(g["ks"].to_numpy(float), n_boot, seed)
        rows.append(dict(factor=key[0], within=key[1] if within else "", pairs=len(g),
                         ks_mean=g["ks"].mean(), ks_low=lo, ks_high=hi,
                         wasserstein_mean=g["wasserstein"].mean()))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _above(a: pd.Series, b: pd.Series) -> float:
    """+1 when interval a lies wholly above interval b, -1 when wholly below, else 0."""
    if a["ks_low"] > b["ks_high"]:
        return 1.0
    if a["ks_high"] < b["ks_low"]:
        return -1.0
    return 0.0


def insight1_signs(pairs: pd.DataFrame, n_boot: int = 1000, seed: int = SEED) -> list[float]:
    """Per method: +1 when the SLM pairs' mean-KS interval lies above the dataset pairs' (the
    SLM moves the distribution more than the dataset does), -1 when below, 0 when they
    overlap; likewise per SLM for the method pairs against the dataset pairs. Settings
    lacking either kind of pair (one SLM, or one method) are left out."""
    signs = []
    if pairs.empty:
        return signs
    for within, other in ((METHOD, SLM), (SLM, METHOD)):
        s = factor_summary(pairs, within=within, n_boot=n_boot, seed=seed)
        s = s.dropna(subset=["ks_low"])
        for value, g in s.groupby("within", sort=False):
            by = g.set_index("factor")
            if other in by.index and DATASET in by.index:
                signs.append(_above(by.loc[other], by.loc[DATASET]))
    return signs
