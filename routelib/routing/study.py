"""The routing study on real cached results (paper Sections 3.2 and 4): tables behind the book's
routing and calibration chapters and ``python -m routelib routing``.

- :func:`llm_answers`: the LLM tier's correctness per item, from cached answers (no model).
- :func:`routable`: the confidence rows a router can use (discarded items dropped, counted).
- :func:`routing_summary`: per (slm, llm, dataset, method) the SLM-only and LLM-only
  accuracy, the area under accuracy vs. routing ratio for the UQ, oracle and random routers,
  and the routing ratio needed to reach ``share`` (95%) of the LLM's accuracy.
- :func:`transfer_study`: leave-one-dataset-out threshold transfer for chosen methods, with the
  calibration set and the two baselines, and its error table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pathlib import Path

from routelib import config, data
from routelib.cache import runs
from routelib.routing import (calibration as cal, distributions as D, simulation as R,
                              transfer_runs)
from routelib.uq.confidence import _refuse

SHARE = 0.95  # "reach 95% of the LLM's accuracy"
_RATIO_COLUMNS = ("uq", "oracle", "random")
SUMMARY_COLUMNS = (R.SLM, R.LLM, R.DATASET, R.METHOD, R.N, "slm_accuracy", "llm_accuracy") + \
    tuple(f"{k}_{r}" for r in _RATIO_COLUMNS for k in ("auc", f"ratio_{int(SHARE * 100)}"))
MEANS_COLUMNS = (R.SLM, R.LLM, R.METHOD, "slm_accuracy", "llm_accuracy") + SUMMARY_COLUMNS[7:] \
    + ("datasets", "beats_random", "items")
TOP_K_TABLE_COLUMNS = (R.SLM, R.LLM, R.DATASET, R.METHOD) + R.TOP_K_COLUMNS
SHIFT_SUMMARY_COLUMNS = (R.SLM, R.METHOD, "datasets", "ks_mean", "ks_max", "w_rank_mean",
                         "w_rank_max")


def llm_answers(llm: str, datasets=None, limit: int | None = config.LIMIT, split: str = "eval",
                cached_only: bool = True, backend=None) -> pd.DataFrame:
    """Rows (llm, dataset, item_id, correct) of ``llm``'s cached greedy answers (its default
    answer configuration). With ``cached_only`` a dataset not fully cached raises
    ``LookupError``; otherwise the model is loaded to answer what is missing.

    ``backend``: where the LLM tier runs instead of the registered local model, e.g. an
    :class:`routelib.models.openai_backend.OpenAIBackend` for an endpoint; its answers are cached
    under ``llm`` with the backend's model id, and the rows have the same columns."""
    frames = []
    for ds in data.iter_datasets(datasets):
        df = runs.generate(llm, ds, split, limit=limit, progress=False,
                           backend=backend or (_refuse if cached_only else None))
        frames.append(pd.DataFrame({R.LLM: runs.run_name(llm), R.DATASET: ds,
                                    R.ITEM_ID: df["item_id"],
                                    R.CORRECT: df["correct"].astype(bool)}))
    return pd.concat(frames, ignore_index=True)


def routable(conf_table: pd.DataFrame) -> pd.DataFrame:
    """Rows with a confidence (discarded ones dropped; count them with
    :func:`routelib.uq.confidence.discard_summary`)."""
    return conf_table[conf_table[R.CONFIDENCE].notna()].reset_index(drop=True)


def matched_llm(conf_rows: pd.DataFrame, llm_table: pd.DataFrame) -> pd.DataFrame:
    """The LLM rows of the (dataset, item) pairs present in ``conf_rows``."""
    keys = pd.MultiIndex.from_frame(conf_rows[[R.DATASET, R.ITEM_ID]].drop_duplicates())
    idx = pd.MultiIndex.from_frame(llm_table[[R.DATASET, R.ITEM_ID]])
    return llm_table[idx.isin(keys)].reset_index(drop=True)


def simulate_routable(conf_table: pd.DataFrame, llm_table: pd.DataFrame,
                      ratios=R.DEFAULT_RATIOS) -> pd.DataFrame:
    """:func:`routelib.routing.simulation.simulate` per (slm, method) on its routable items, the LLM
    table restricted to the same items (a verbalized method's discarded items, as in the
    paper, leave its curve; its oracle and random references use the same kept items)."""
    frames = []
    rows = routable(conf_table)
    for _, g in rows.groupby([R.SLM, R.METHOD], sort=False):
        frames.append(R.simulate(g, matched_llm(g, llm_table), ratios))
    return pd.concat(frames, ignore_index=True)


def relative_accuracy_routable(conf_table: pd.DataFrame, llm_table: pd.DataFrame,
                               keep_fractions=None) -> pd.DataFrame:
    """Paper Fig. 3 table (:func:`routelib.report.plots.relative_accuracy_table`) per (slm, method) on
    its routable items, the LLM table restricted to the same items."""
    from routelib.routing.relative import relative_accuracy_table
    kw = {} if keep_fractions is None else {"keep_fractions": keep_fractions}
    frames = [relative_accuracy_table(g, matched_llm(g, llm_table), **kw)
              for _, g in routable(conf_table).groupby([R.SLM, R.METHOD], sort=False)]
    return pd.concat(frames, ignore_index=True)


def routing_summary(sim: pd.DataFrame, share: float = SHARE) -> pd.DataFrame:
    """One row per (slm, llm, dataset, method) of a :func:`routelib.routing.simulation.simulate` table."""
    out = []
    keys = [R.SLM, R.LLM, R.DATASET, R.METHOD]
    for key, g in sim.groupby(keys, sort=False):
        curves = {router: c.sort_values(R.RATIO) for router, c in g.groupby(R.ROUTER)}
        uq = curves["uq"]
        slm_acc = float(uq[R.ACCURACY].iloc[0])
        llm_acc = float(uq[R.ACCURACY].iloc[-1])
        target = share * llm_acc
        row = dict(zip(keys, key), n=int(g[R.N].iloc[0]), slm_accuracy=slm_acc,
                   llm_accuracy=llm_acc)
        for router in ("uq", "oracle", "random"):
            row[f"auc_{router}"] = R.area_under_curve(curves[router])
            row[f"ratio_{int(share * 100)}_{router}"] = R.ratio_to_reach(curves[router], target)
        out.append(row)
    return pd.DataFrame(out)


def method_means(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean over datasets per (slm, llm, method) of the numeric columns of
    :func:`routing_summary`, plus how often the UQ router beats the random one (AUC) and
    ``items``, the items the method actually scored (its routable items, summed over its
    datasets). Every reference (oracle, random) is the method's own, on exactly its items."""
    num = summary.select_dtypes("number").columns.drop("n")
    g = summary.groupby([R.SLM, R.LLM, R.METHOD], sort=False)
    out = g[list(num)].mean()
    out["datasets"] = g.size()
    out["beats_random"] = g.apply(lambda d: int((d["auc_uq"] > d["auc_random"]).sum()))
    out["items"] = g["n"].sum().astype(int)
    return out.reset_index()


def transfer_study(conf_table: pd.DataFrame, llm_table: pd.DataFrame, slms, methods,
                   runs_: int = 3, ratios=R.DEFAULT_RATIOS, seed: int = config.SEED,
                   pool: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leave-one-dataset-out transfer for every (slm, method) and target, all strategies
    (calibration draws with seeds ``seed, seed + 1, ...``); returns (transfer table,
    :func:`routelib.routing.transfer_runs.transfer_errors` table). ``pool``: the OOD pool
    (:data:`routelib.columns.OOD_POOL_COLUMNS`); an (slm, method) it has rows for takes every
    target's other datasets from it (:func:`routelib.routing.calibration.transfer`)."""
    frames = [cal.transfer_table(rows, llm, slm, m, ratios=ratios, runs=runs_, seed=seed,
                                 pool=own)
              for slm, m, rows, llm, own in _transferable(conf_table, llm_table, slms, methods,
                                                          pool)]
    if not frames:
        raise cal.CalibrationError("no (slm, method) with at least two datasets to transfer")
    table = pd.concat(frames, ignore_index=True)
    return table, transfer_runs.transfer_errors(table)


def _transferable(conf_table: pd.DataFrame, llm_table: pd.DataFrame, slms, methods,
                  pool: pd.DataFrame | None):
    """(slm, method, its pooled rows, the LLM rows of the same items, its own OOD pool) for
    every (slm, method) with two datasets or more: what a transfer study iterates over."""
    for slm in slms:
        for m in methods:
            rows = pooled_for(conf_table, slm, m)
            if rows[R.DATASET].nunique() >= 2:
                yield slm, m, rows, matched_llm(rows, llm_table), _own_pool(pool, slm, m)


def _own_pool(pool: pd.DataFrame | None, slm: str, method: str) -> pd.DataFrame | None:
    """The OOD pool's rows of one (slm, method), or None when it has none."""
    if pool is None or not len(pool):
        return None
    own = pool[(pool[R.SLM] == slm) & (pool[R.METHOD] == method)]
    return own if len(own) else None


def transfer_run_errors(conf_table: pd.DataFrame, llm_table: pd.DataFrame, slms, methods,
                        runs_: int = 3, ratios=R.DEFAULT_RATIOS,
                        seed: int = config.SEED, pool: pd.DataFrame | None = None
                        ) -> pd.DataFrame:
    """:func:`routelib.routing.transfer_runs.transfer_runs` for every (slm, method) with two
    datasets or more, every target and strategy: one mean realized-ratio error per run
    (``pool``: the OOD pool, as in :func:`transfer_study`)."""
    from routelib.routing.transfer_runs import transfer_runs
    frames = [transfer_runs(rows, llm, slm, m, t, strategy=st, runs=runs_,
                            ratios=tuple(ratios), seed=seed, pool=own)
              for slm, m, rows, llm, own in _transferable(conf_table, llm_table, slms, methods,
                                                          pool)
              for t in dict.fromkeys(rows[R.DATASET]) for st in cal.STRATEGIES]
    if not frames:
        raise cal.CalibrationError("no (slm, method) with at least two datasets to transfer")
    return pd.concat(frames, ignore_index=True)


def transfer_means(errors: pd.DataFrame) -> pd.DataFrame:
    """Mean over targets of the transfer errors, per (slm, method, strategy)."""
    num = [c for c in errors.select_dtypes("number").columns]
    return errors.groupby([R.SLM, R.METHOD, cal.STRATEGY], sort=False)[num].mean().reset_index()


def pooled_for(conf_table: pd.DataFrame, slm: str, method: str) -> pd.DataFrame:
    """All routable rows of one (slm, method): the pool Algorithm 1 samples from."""
    rows = routable(conf_table)
    return rows[(rows[R.SLM] == slm) & (rows[R.METHOD] == method)].reset_index(drop=True)


def spearman_matrix(conf_table: pd.DataFrame, slm: str) -> pd.DataFrame:
    """Mean over datasets of the Spearman correlation between methods' confidences."""
    rows = conf_table[conf_table[R.SLM] == slm]
    mats = []
    for _, g in rows.groupby(R.DATASET):
        wide = g.pivot(index=R.ITEM_ID, columns=R.METHOD, values=R.CONFIDENCE)
        mats.append(wide.corr(method="spearman"))
    return sum(mats) / len(mats) if mats else pd.DataFrame()


def shift_summary(shift: pd.DataFrame) -> pd.DataFrame:
    """Mean and max over datasets of the KS statistic and rank-Wasserstein distance, per
    (slm, method) of a :func:`routelib.routing.distributions.distribution_shift` table."""
    if shift.empty:
        return pd.DataFrame(columns=list(SHIFT_SUMMARY_COLUMNS))
    out = shift.groupby([R.SLM, R.METHOD], sort=False).agg(
        datasets=(R.DATASET, "nunique"), ks_mean=(D.KS, "mean"), ks_max=(D.KS, "max"),
        w_rank_mean=(D.WASSERSTEIN_RANK, "mean"), w_rank_max=(D.WASSERSTEIN_RANK, "max"))
    return out.reset_index()


def decompose(shift: pd.DataFrame, value: str = D.WASSERSTEIN_RANK) -> pd.DataFrame:
    """:func:`routelib.routing.distributions.variance_decomposition` of ``value`` over the largest full
    slm x method x dataset sub-table (datasets every (slm, method) has, methods every SLM has);
    factors with one level are left out. Empty (with ``attrs["note"]``) when fewer than two
    factors vary."""
    t = shift
    if len(t):
        methods = set.intersection(*(set(g[R.METHOD]) for _, g in t.groupby(R.SLM)))
        t = t[t[R.METHOD].isin(methods)]
        pairs = t.groupby([R.SLM, R.METHOD])
        datasets = set.intersection(*(set(g[R.DATASET]) for _, g in pairs)) if len(t) else set()
        t = t[t[R.DATASET].isin(datasets)]
    factors = [f for f in D.FACTORS if len(t) and t[f].nunique() > 1]
    if len(factors) < 2:
        out = pd.DataFrame(columns=list(D.DECOMPOSITION_COLUMNS))
        out.attrs["note"] = ("not computed: fewer than two of slm, method, dataset vary in the "
                             "cached full table")
        return out
    out = D.variance_decomposition(t, value, factors)
    out.attrs["note"] = (f"{t[R.SLM].nunique()} SLM(s) x {t[R.METHOD].nunique()} methods x "
                         f"{t[R.DATASET].nunique()} datasets")
    return out


def export_calibration_sets(conf_table: pd.DataFrame, slms, methods, root: Path,
                            shown_as: Path | None = None,
                            source: str | None = None, n_bins: int = cal.N_BINS,
                            fraction: float = cal.FRACTION) -> pd.DataFrame:
    """Algorithm 1 (``n_bins`` bins, ``fraction`` of each drawn) on all routable rows of each
    (slm, method), exported with :func:`routelib.routing.calibration.export_calibration_set` to
    ``root/<slm>__<method>/`` (``<slm>``: the folder-safe name,
    :func:`routelib.models.folder_name`; ``source``: the line of each README saying where the
    confidences came from). One row per set: ``csv`` (under ``shown_as`` instead of ``root``
    when given), items drawn, items and datasets pooled, and non-empty bins that yielded no
    item. A pool too small to yield an item at these settings raises
    :class:`routelib.routing.calibration.CalibrationError` (fewer bins or a larger fraction)."""
    rows = []
    for slm in map(runs.run_name, slms):  # any model reference: the table's folder-safe name
        for m in methods:
            pool = pooled_for(conf_table, slm, m)
            if pool.empty:
                continue
            try:
                c = cal.build_calibration_set(pool, n_bins=n_bins, fraction=fraction)
            except cal.CalibrationError as exc:  # name the set: which one could not be drawn
                raise cal.CalibrationError(f"calibration set {slm}__{m} ({len(pool)} pooled "
                                           f"items): {exc}") from None
            csv = cal.export_calibration_set(c, Path(root) / f"{slm}__{m}", source)
            meta = c.attrs["calibration"]
            shown = Path(shown_as) / csv.relative_to(root) if shown_as is not None else csv
            rows.append({R.SLM: slm, R.METHOD: m, "csv": str(shown), "items": len(c),
                         "pooled": meta["n_pooled"], "datasets": len(meta["datasets"]),
                         "empty_sampled_bins": meta["empty_sampled_bins"]})
    return pd.DataFrame(rows)


def fmt(x, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"
