"""How confidence distributions differ across datasets (paper Figure 4, Insight 1).

:func:`distribution_shift` compares, for every (slm, method), each dataset's confidences with a
reference: ``"pooled"`` (all datasets of that slm and method, the dataset itself included; the
paper's per-dataset vs. pooled view) or ``"others"`` (every other dataset: what a threshold
chosen leave-one-dataset-out, :func:`routelib.routing.calibration.transfer`, is calibrated on). It
reports the two-sample Kolmogorov-Smirnov statistic (largest gap between the empirical CDFs),
the Wasserstein-1 distance on the method's own scale, and ``wasserstein_rank``: the
Wasserstein-1 distance after mapping every confidence to its percentile in the pooled
distribution of that (slm, method) (pooled empirical CDF, ``F(c) = #{pooled <= c} / n``). KS
and ``wasserstein_rank`` are unchanged by any increasing transform of a method's confidence,
so they compare across methods whose scales differ (log-probabilities vs. probabilities);
``wasserstein`` does not.

:func:`variance_decomposition` asks which factor a summary varies with: a main-effects,
ANOVA-style split of the total sum of squares of one value per cell of a *full* table (every
combination of the factors exactly once, e.g. :func:`confidence_summary` or the
``wasserstein_rank`` of :func:`distribution_shift` per (slm, method, dataset))::

    SS_total  = sum over cells (y - mean)^2
    SS_f      = sum over levels l of f: n_l * (mean of y at l - mean)^2
    residual  = SS_total - sum_f SS_f          (interactions; there is no replication)
    share_f   = SS_f / SS_total

In a full table the main-effect contrasts are orthogonal, so the shares and the residual sum to
exactly 1 and do not depend on the order of the factors. On raw confidences the ``method``
factor absorbs the scale differences between methods; decompose a scale-free summary to ask
which factor moves the *shape*.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from routelib.routing.simulation import (CONFIDENCE, DATASET, METHOD, N, SLM, RoutingError,
                                         check_columns)

REFERENCES = ("pooled", "others")
SUMMARIES = ("median", "mean", "std")
N_REFERENCE, KS, WASSERSTEIN, WASSERSTEIN_RANK = "n_reference", "ks", "wasserstein", \
    "wasserstein_rank"
SHIFT_COLUMNS = (SLM, METHOD, DATASET, N, N_REFERENCE, KS, WASSERSTEIN, WASSERSTEIN_RANK)
VALUE = "value"
FACTOR, SUM_SQ, DF, SHARE = "factor", "sum_sq", "df", "share"
DECOMPOSITION_COLUMNS = (FACTOR, SUM_SQ, DF, SHARE)
RESIDUAL = "residual"
FACTORS = (SLM, METHOD, DATASET)


class DistributionError(RoutingError):
    """Bad input to a distribution comparison or a variance decomposition."""


def _finite(values, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if not np.isfinite(x).all():
        raise DistributionError(f"{what} has {int((~np.isfinite(x)).sum())} NaN or infinite "
                                "confidence(s); drop or clip them first")
    return x


def pooled_percentile(pooled, values) -> np.ndarray:
    """Each value's percentile in ``pooled``: ``#{pooled <= v} / len(pooled)`` (in [0, 1])."""
    p = np.sort(np.asarray(pooled, dtype=float))
    return np.searchsorted(p, np.asarray(values, dtype=float), side="right") / len(p)


def distribution_shift(conf_table: pd.DataFrame, reference: str = "pooled") -> pd.DataFrame:
    """KS and Wasserstein distances of each dataset to its reference (:data:`SHIFT_COLUMNS`).

    One row per (slm, method, dataset); see the module docstring for ``reference`` and the
    three distances.
    """
    check_columns(conf_table, (SLM, METHOD, DATASET, CONFIDENCE), "confidence table")
    if reference not in REFERENCES:
        raise DistributionError(f"reference {reference!r} is not known; known: {REFERENCES}")
    rows = []
    for (slm, method), group in conf_table.groupby([SLM, METHOD], sort=False):
        pooled = _finite(group[CONFIDENCE], f"slm {slm!r}, method {method!r}")
        for dataset, d in group.groupby(DATASET, sort=False):
            x = d[CONFIDENCE].to_numpy(float)
            ref = pooled if reference == "pooled" else \
                group.loc[group[DATASET] != dataset, CONFIDENCE].to_numpy(float)
            if len(ref) == 0:
                raise DistributionError(f"reference 'others' for dataset {dataset!r} (slm "
                                        f"{slm!r}, method {method!r}) is empty: it needs a "
                                        "second dataset")
            rows.append((slm, method, dataset, len(x), len(ref),
                         float(stats.ks_2samp(x, ref).statistic),
                         float(stats.wasserstein_distance(x, ref)),
                         float(stats.wasserstein_distance(pooled_percentile(pooled, x),
                                                          pooled_percentile(pooled, ref)))))
    return pd.DataFrame(rows, columns=list(SHIFT_COLUMNS))


SLM_SHIFT_COLUMNS = (METHOD, DATASET, "slm_a", "slm_b", "n_a", "n_b", KS)


def slm_shift(conf_table: pd.DataFrame) -> pd.DataFrame:
    """KS statistic between two SLMs' confidences on the same (method, dataset), for every pair
    of SLMs (:data:`SLM_SHIFT_COLUMNS`): how far the *model* moves the distribution when the
    data and the method are held fixed. Compare with :func:`distribution_shift`
    (``reference="others"``), which moves the dataset and holds the model and method fixed."""
    check_columns(conf_table, (SLM, METHOD, DATASET, CONFIDENCE), "confidence table")
    rows = []
    for (method, dataset), group in conf_table.groupby([METHOD, DATASET], sort=False):
        per = {s: g[CONFIDENCE].to_numpy(float) for s, g in group.groupby(SLM, sort=False)}
        per = {s: x[np.isfinite(x)] for s, x in per.items()}
        names = [s for s in per if len(per[s])]
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                rows.append((method, dataset, a, b, len(per[a]), len(per[b]),
                             float(stats.ks_2samp(per[a], per[b]).statistic)))
    return pd.DataFrame(rows, columns=list(SLM_SHIFT_COLUMNS))


def confidence_summary(conf_table: pd.DataFrame, stat: str = "median") -> pd.DataFrame:
    """One summary of the confidences per (slm, method, dataset): columns slm, method, dataset,
    value (``stat`` in :data:`SUMMARIES`; ``std`` is the sample standard deviation, ddof=1)."""
    check_columns(conf_table, (SLM, METHOD, DATASET, CONFIDENCE), "confidence table")
    if stat not in SUMMARIES:
        raise DistributionError(f"summary {stat!r} is not known; known: {SUMMARIES}")
    out = conf_table.groupby([SLM, METHOD, DATASET], sort=False)[CONFIDENCE].agg(stat)
    return out.rename(VALUE).reset_index()


def variance_decomposition(frame: pd.DataFrame, value: str = VALUE,
                           factors=FACTORS) -> pd.DataFrame:
    """Share of the variance of ``value`` explained by each factor's main effect.

    ``frame`` must hold every combination of the ``factors``' levels exactly once (module
    docstring); rows of :data:`DECOMPOSITION_COLUMNS`, one per factor, then ``residual``
    (interactions). ``df`` is levels - 1, and for the residual what is left of n - 1. Shares are
    NaN when the value is constant.
    """
    factors = list(factors)
    check_columns(frame, factors + [value], "table to decompose")
    y = frame[value].to_numpy(float)
    if not np.isfinite(y).all():
        raise DistributionError(f"{value!r} has NaN or infinite entries; drop those cells (and "
                                "the rest of their level) first")
    dup = frame.duplicated(factors, keep=False)
    if dup.any():
        raise DistributionError(f"{int(dup.sum())} rows repeat a {factors} combination; give "
                                "one value per cell (aggregate first)")
    levels = [frame[f].nunique() for f in factors]
    full = math.prod(levels)
    if len(frame) != full:
        raise DistributionError(
            f"the table has {len(frame)} of the {full} {factors} combinations ({full - len(frame)}"
            " missing); the decomposition needs a full table: drop the incomplete levels")
    grand = y.mean()
    total = float(((y - grand) ** 2).sum())
    rows = []
    for f, n_levels in zip(factors, levels):
        means = frame.groupby(f, sort=False)[value].transform("mean").to_numpy(float)
        rows.append((f, float(((means - grand) ** 2).sum()), n_levels - 1))
    residual = max(total - sum(r[1] for r in rows), 0.0)
    rows.append((RESIDUAL, residual, len(frame) - 1 - sum(r[2] for r in rows)))
    return pd.DataFrame([(f, ss, df, ss / total if total > 0 else math.nan)
                         for f, ss, df in rows], columns=list(DECOMPOSITION_COLUMNS))
