"""What each chapter of the book shows, in words computed from its own tables.

Every function takes the tables a chapter already holds and returns
:class:`routelib.report.display.Markdown` (a list of sentences), which the chapter's last cell
displays. Every number in a sentence is read from those tables here; the wording that depends on
a number (e.g. "gains little") follows a threshold stated in this module.

- :func:`answers` (chapter 1): mean accuracy per model; where the LLM tier is significantly
  better or worse (McNemar p < :data:`ALPHA`).
- :func:`alignment` (chapters 2, 7): the best and worst methods by mean rank, how far the mean
  AUROCs are from chance, how many intervals lie above 0.5.
- :func:`learning_curve` (chapter 2): the probe trained on the most items against the one the
  reference run trains (``reference`` items), per SLM and dataset.
- :func:`routing` (chapters 3, 7): the best method's area against the random and oracle routers.
- :func:`relative` (chapter 4): the SLM on its most confident items against the LLM.
- :func:`distributions` (chapter 5): the largest shift and the factor it varies with most.
- :func:`calibration` (chapter 6): the transfer errors of the three threshold strategies.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from routelib.report.display import Markdown, sentences
from routelib.report.uq_page import method_ranking
from routelib.routing import calibration as cal, distributions as D, simulation as R

ALPHA = 0.05      # significance level of the tier-gap tests
NEAR_CHANCE = 0.1  # mean AUROCs all within this of 0.5: "close to chance"
SMALL_GAIN = 0.05  # best area gain over random below this: "gains little"
TOP = 0.2          # "most confident": the top 20% (paper Fig. 3 reads the curve there)


def _pct(x: float) -> str:
    return "–" if x is None or np.isnan(x) else f"{100 * x:.1f}%"


def _f(x: float, digits: int = 3) -> str:
    return "–" if x is None or np.isnan(x) else f"{x:.{digits}f}"


def _names(items) -> str:
    items = list(items)
    return ", ".join(items) if items else "none"


# ---- chapter 1 -----------------------------------------------------------------------------
def answers(acc: pd.DataFrame, gaps: pd.DataFrame) -> Markdown:
    """Chapter 1: ``acc`` (:func:`routelib.report.book.accuracy`), ``gaps``
    (:func:`routelib.report.accuracy.tier_gaps`)."""
    if acc.empty:
        return sentences([])
    means = acc.groupby("model", sort=False)["accuracy"].mean()
    out = [f"Mean accuracy over the {acc['dataset'].nunique()} datasets: "
           + ", ".join(f"`{m}` {_pct(v)}" for m, v in means.items()) + "."]
    for slm, g in gaps.groupby("slm", sort=False):
        better = g[(g["gap"] > 0) & (g["p_mcnemar"] < ALPHA)]["dataset"]
        worse = g[(g["gap"] < 0) & (g["p_mcnemar"] < ALPHA)]["dataset"]
        out.append(f"Against `{slm}`, the LLM tier `{g['llm'].iloc[0]}` is significantly more "
                   f"accurate (McNemar p < {ALPHA}) on {len(better)} of {len(g)} datasets "
                   f"({_names(better)}) and significantly less accurate on {len(worse)} "
                   f"({_names(worse)}): routing to it can raise accuracy only on the first.")
    return sentences(out)


# ---- chapters 2 and 7 ----------------------------------------------------------------------
def alignment(auroc: pd.DataFrame) -> Markdown:
    """Chapter 2: ``auroc`` (:func:`routelib.uq.metrics.auroc_table` with ``ci=True``)."""
    if auroc.empty:
        return sentences([])
    rank = method_ranking(auroc)
    out = []
    for slm, g in rank.groupby("slm", sort=False):
        above = int(g["n_above_chance"].sum())
        settings = int(g["n_datasets"].sum())
        ranked = g[g["mean_rank"].notna()].sort_values(["mean_rank", "method"])
        unranked = g.loc[g["mean_rank"].isna(), "method"].tolist()
        if ranked.empty:
            out.append(f"`{slm}`: no method is estimable on half the datasets, so none is "
                       f"ranked; the 95% interval lies above 0.5 in {above} of its {settings} "
                       "(dataset, method) settings.")
            continue
        best, worst = ranked.iloc[0], ranked.iloc[-1]
        out.append(f"`{slm}`: `{best['method']}` ranks best (mean rank "
                   f"{_f(best['mean_rank'], 2)}, mean AUROC {_f(best['mean_auroc'])}) and "
                   f"`{worst['method']}` worst (mean rank {_f(worst['mean_rank'], 2)}, mean "
                   f"AUROC {_f(worst['mean_auroc'])})"
                   + (f"; not ranked, estimable on fewer than half the datasets: "
                      f"{', '.join(f'`{m}`' for m in unranked)}" if unranked else "")
                   + f"; the 95% interval lies above 0.5 in {above} of its {settings} "
                   "(dataset, method) settings.")
    far = float((rank["mean_auroc"] - 0.5).abs().max())
    verdict = ("so no method separates these SLMs' right answers from their wrong ones well"
               if far < NEAR_CHANCE else "so some methods carry real signal")
    out.append(f"Every mean AUROC is within {_f(far)} of chance (0.5), {verdict}.")
    return sentences(out)


def learning_curve(curve: pd.DataFrame, baseline: int) -> Markdown:
    """Chapter 2: ``curve`` (:func:`routelib.uq.learning_curve.learning_curve`): per SLM, the
    datasets whose curve reaches past ``baseline`` train items, and on how many of them the
    probe trained on the most items (the reference run's probes) has the higher AUROC than
    the one trained on ``baseline``."""
    if curve.empty:
        return sentences([])
    out = []
    for slm, g in curve.dropna(subset=["auroc"]).groupby("slm", sort=False):
        pairs = []
        for ds, d in g.groupby("dataset", sort=False):
            base, last = d[d["n_train"] == baseline], d.loc[d["n_train"].idxmax()]
            if len(base) and last["n_train"] > baseline:
                pairs.append((ds, float(base["auroc"].iloc[0]), float(last["auroc"]),
                              int(last["n_train"])))
        if not pairs:
            continue
        better = [p for p in pairs if p[2] > p[1]]
        out.append(f"`{slm}`: trained on the most items cached (up to "
                   f"{max(p[3] for p in pairs)}), the probe's AUROC is higher than with "
                   f"{baseline} train items on {len(better)} of {len(pairs)} datasets ("
                   + ", ".join(f"{ds} {_f(a)} -> {_f(b)}" for ds, a, b, _ in pairs) + ").")
    return sentences(out)


# ---- chapters 3 and 7 ----------------------------------------------------------------------
def routing(means: pd.DataFrame) -> Markdown:
    """Chapter 3: ``means`` (per-method means of the routing study,
    :data:`routelib.routing.study.MEANS_COLUMNS`)."""
    if means.empty:
        return sentences([])
    out, gains = [], []
    for (slm, llm), g in means.groupby([R.SLM, R.LLM], sort=False):
        g = g.assign(gain=g["auc_uq"] - g["auc_random"])   # against its own random router
        best = g.loc[g["gain"].idxmax()]
        gain = float(best["gain"])
        gains.append(gain)
        out.append(f"`{slm}` -> `{llm}`: `{best[R.METHOD]}` gains most over a random router, "
                   f"area {_f(best['auc_uq'])} against {_f(best['auc_random'])} ({gain:+.3f}; "
                   f"the oracle's {_f(best['auc_oracle'])}); it beats the random router on {int(best['beats_random'])} of "
                   f"{int(best['datasets'])} datasets. SLM alone {_pct(best['slm_accuracy'])}, "
                   f"LLM alone {_pct(best['llm_accuracy'])} (means over the datasets).")
    verdict = "gains little over" if max(gains) < SMALL_GAIN else "clearly beats"
    out.append(f"Routing by confidence {verdict} routing at random here (best gain in area "
               f"{max(gains):+.3f}); the oracle's margin is the most any router could add.")
    return sentences(out)


# ---- chapter 4 -----------------------------------------------------------------------------
def relative(topk: pd.DataFrame, top: float = TOP) -> Markdown:
    """Chapter 4: ``topk`` (:func:`routelib.report.book.relative_accuracy`): per SLM, the
    method whose most confident ``top`` share comes closest to the LLM."""
    near = topk[np.isclose(topk["keep_fraction"], top)] if len(topk) else topk
    if near.empty:
        return sentences([])
    out = []
    for slm, g in near.groupby(R.SLM, sort=False):
        per = g.groupby(R.METHOD, sort=False)["relative_accuracy"].mean().sort_values()
        full = topk[(topk[R.SLM] == slm) & np.isclose(topk["keep_fraction"], 1.0)]
        full_rel = full.groupby(R.METHOD)["relative_accuracy"].mean()
        best = per.index[-1]
        out.append(f"`{slm}`: on its most confident {top:.0%}, `{best}` reaches "
                   f"{_f(per.iloc[-1], 2)} of the LLM's accuracy on average over the datasets "
                   f"(on all items: {_f(full_rel.get(best, np.nan), 2)}); "
                   f"{int((per >= 1).sum())} of {len(per)} methods reach parity (>= 1) there, "
                   f"and the weakest, `{per.index[0]}`, {_f(per.iloc[0], 2)}.")
    return sentences(out)


# ---- chapter 5 -----------------------------------------------------------------------------
def distributions(summary: pd.DataFrame, decomposition: pd.DataFrame) -> Markdown:
    """Chapter 5: ``summary`` (:func:`routelib.routing.study.shift_summary`) and
    ``decomposition`` (:func:`routelib.routing.study.decompose`)."""
    if summary.empty:
        return sentences([])
    hi = summary.loc[summary["ks_mean"].idxmax()]
    lo = summary.loc[summary["ks_mean"].idxmin()]
    out = [f"The mean KS distance of a dataset's confidences to the pooled ones ranges from "
           f"{_f(lo['ks_mean'])} (`{lo[R.METHOD]}`, `{lo[R.SLM]}`) to {_f(hi['ks_mean'])} "
           f"(`{hi[R.METHOD]}`, `{hi[R.SLM]}`): a threshold chosen on pooled data realizes a "
           "different routing ratio on each dataset."]
    if len(decomposition):
        d = decomposition.sort_values(D.SHARE, ascending=False)
        parts = ", ".join(f"{r[D.FACTOR]} {_pct(r[D.SHARE])}" for _, r in d.iterrows())
        main = d[d[D.FACTOR] != "residual"].iloc[0]
        out.append(f"Of the variance of the rank-Wasserstein shift, `{main[D.FACTOR]}` explains "
                   f"the most among the main effects ({parts}; "
                   f"{decomposition.attrs.get('note', '')}).")
    return sentences(out)


# ---- chapter 6 -----------------------------------------------------------------------------
def calibration(means: pd.DataFrame) -> Markdown:
    """Chapter 6: ``means`` (the transfer study's mean errors per SLM, method and strategy)."""
    if means.empty:
        return sentences([])
    wide = means.pivot_table(index=[R.SLM, R.METHOD], columns=cal.STRATEGY,
                             values="mean_abs_ratio_error", sort=False)
    out = []
    for (slm, method), r in wide.iterrows():
        parts = ", ".join(f"{s} {_pct(r[s])}" for s in cal.STRATEGIES if s in r)
        out.append(f"`{slm}`, `{method}`: the realized routing ratio misses the requested one "
                   f"by {parts} on average over the unseen targets.")
    if {"calibration", "pooled", "single"} <= set(wide.columns):
        vs_pool = int((wide["calibration"] <= wide["pooled"] + 0.005).sum())
        vs_one = int((wide["calibration"] < wide["single"]).sum())
        out.append(f"The calibration set is within half a percentage point of pooling all other "
                   f"data, or better, in {vs_pool} of {len(wide)} (SLM, method) pairs, and "
                   f"better than one other dataset in {vs_one} of {len(wide)}.")
    return sentences(out)


# ---- chapter 7 -----------------------------------------------------------------------------
def own_slm(auroc: pd.DataFrame, means: pd.DataFrame) -> Markdown:
    """Chapter 7: :func:`alignment` and :func:`routing` of one SLM, as one list."""
    parts = [p for p in (alignment(auroc), routing(means)) if not p.startswith("Nothing")]
    return Markdown("\n".join(parts)) if parts else sentences([])
