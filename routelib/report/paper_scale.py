"""The paper's analyses on the published MMLU-Pro outputs (:mod:`routelib.uq.published`).

:func:`load` gives chapter 08 the same :class:`routelib.report.book.Cached` bundle the other
chapters get from the embedded run, so every figure and table there comes from the same
routelib functions (no second implementation). The 14 MMLU-Pro categories play the paper's 14
datasets; the six published SLMs of the paper's kinds and its two LLMs are the defaults.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from routelib.columns import CONF_COLUMNS, CORRECT, DATASET, DISCARDED, ITEM_ID, LLM, METHOD, SLM
from routelib.report import book
from routelib.report.verdicts import assess
from routelib.routing.simulation import area_under_curve, simulate
from routelib.uq import published
from routelib.uq.metrics import auroc_table
from routelib.uq.published import PAPER_LLMS, PAPER_SLMS, tables


def _routing_means(conf: pd.DataFrame, llm: pd.DataFrame) -> pd.DataFrame:
    """Per (slm, llm, method): mean over categories of the areas under accuracy vs routing
    ratio of the uq, oracle and random routers, on each method's non-discarded items."""
    kept = conf[~conf[DISCARDED]]
    frames = []
    for _, g in kept.groupby([SLM, METHOD], sort=False):
        keys = pd.MultiIndex.from_frame(g[[DATASET, ITEM_ID]])
        rows = llm[pd.MultiIndex.from_frame(llm[[DATASET, ITEM_ID]]).isin(keys)]
        frames.append(simulate(g[list(CONF_COLUMNS)], rows))
    sim = pd.concat(frames, ignore_index=True)
    keys = [SLM, LLM, DATASET, METHOD, "router"]
    areas = sim.groupby(keys, sort=False).apply(area_under_curve, include_groups=False)
    areas = areas.rename("auc").reset_index()
    wide = areas.pivot_table(index=[SLM, LLM, METHOD], columns="router", values="auc",
                             aggfunc="mean")
    return wide.rename(columns=lambda r: f"auc_{r}").reset_index()


def first_look(slms: Sequence[str] = PAPER_SLMS, llms: Sequence[str] = PAPER_LLMS,
               methods=None, directory: str | Path | None = None, download: bool = False,
               opener=None) -> pd.DataFrame:
    """Tidy summary per (slm, llm, method): categories with an AUROC, their mean AUROC, SLM
    and LLM accuracy and discard rate over all items, and the mean over categories of the
    routing areas (uq, random, oracle; discarded items left out, as in the paper)."""
    conf, llm = tables(slms, llms, methods, None, directory, download, opener)
    au = auroc_table(conf).groupby([SLM, METHOD], sort=False).agg(
        categories=("auroc", "count"), mean_auroc=("auroc", "mean")).reset_index()
    per = conf.groupby([SLM, METHOD], sort=False).agg(
        items=(CORRECT, "size"), slm_accuracy=(CORRECT, "mean"),
        discard_rate=(DISCARDED, "mean")).reset_index()
    llm_acc = llm.groupby(LLM, sort=False)[CORRECT].mean().rename("llm_accuracy").reset_index()
    out = per.merge(au, on=[SLM, METHOD]).merge(llm_acc, how="cross")
    out = out.merge(_routing_means(conf, llm), on=[SLM, LLM, METHOD], how="left")
    return out[[SLM, LLM, METHOD, "items", "categories", "mean_auroc", "slm_accuracy",
                "llm_accuracy", "discard_rate", "auc_uq", "auc_random", "auc_oracle"]]


UNTESTABLE = ("p_true", "verbal_2s", "jaccard_degree", "trained_probe", "ood_probe",
              "perplexity")  # the paper's methods these files hold no signal for


def load(slms=None, llms=None, methods=None, categories=None, directory=None,
         download: bool = False) -> book.Cached:
    """The published outputs as the chapters' bundle: confidence table of ``slms`` (default
    the six paper kinds) for ``methods`` (default all three signals) on ``categories``
    (default all 14), and the LLM table of ``llms`` (default both paper LLMs)."""
    slms, llms = list(slms or PAPER_SLMS), list(llms or PAPER_LLMS)
    conf, llm = tables(slms, llms, methods, categories, directory, download)
    return book.Cached(conf, llm, ", ".join(llms))


def describe(cached: book.Cached) -> str:
    """What was loaded, its provenance, and what it cannot test (one line each)."""
    prov = published.provenance()
    c, m = cached.conf, cached.llm
    lines = [f"source: {prov['repository']} at commit {prov['commit'][:12]} ({prov['license']}), "
             f"{prov['dataset']}",
             f"SLMs: {', '.join(cached.slms)}",
             f"LLMs: {', '.join(dict.fromkeys(m[LLM]))}",
             f"categories: {c[DATASET].nunique()}, items per SLM: "
             f"{c.groupby(SLM)[ITEM_ID].nunique().min()}",
             f"methods: {', '.join(dict.fromkeys(c[METHOD]))}; discarded rows: "
             f"{int(c[DISCARDED].sum())} of {len(c)}",
             f"not testable with these files: {', '.join(UNTESTABLE)}"]
    return "\n".join(lines)


def verdicts(auroc: pd.DataFrame, summary: pd.DataFrame, cached: book.Cached) -> pd.DataFrame:
    """:func:`routelib.report.verdicts.assess` on the published outputs."""
    return assess(auroc, summary, cached.conf)


def one_llm(cached: book.Cached, llm: str) -> book.Cached:
    """``cached`` with the LLM table of ``llm`` alone (calibration transfer takes one LLM)."""
    rows = cached.llm[cached.llm[LLM] == llm]
    if rows.empty:
        raise published.PublishedError(f"LLM {llm!r} is not loaded; loaded: "
                                       f"{', '.join(dict.fromkeys(cached.llm[LLM]))}")
    return book.Cached(cached.conf, rows, llm)


def alignment_table(auroc: pd.DataFrame) -> pd.DataFrame:
    """Mean AUROC over categories per (slm, method), with the categories it is estimable on
    and the median width of its 95% bootstrap intervals."""
    width = auroc["ci_high"] - auroc["ci_low"]
    g = auroc.assign(width=width).groupby([SLM, METHOD], sort=False)
    return g.agg(categories=("auroc", "count"), mean_auroc=("auroc", "mean"),
                 median_ci_width=("width", "median"), items=("n", "sum")).reset_index()


def conclusions(auroc: pd.DataFrame, means: pd.DataFrame, verdict_table: pd.DataFrame) -> str:
    """What chapter 08 shows, in words, every number computed from its tables."""
    al = alignment_table(auroc)
    best = al.loc[al.groupby(SLM, sort=False)["mean_auroc"].idxmax()]
    top = best[METHOD].value_counts()
    below = al[al["mean_auroc"] < 0.5]
    gain = (means["auc_uq"] - means["auc_random"])
    gap = (means["auc_oracle"] - means["auc_random"])
    i = gain.idxmax()
    lines = [
        f"- **Alignment.** Mean AUROC over the 14 categories runs from "
        f"{al['mean_auroc'].min():.3f} to {al['mean_auroc'].max():.3f}. The best method per SLM "
        f"is {', '.join(f'{m} ({n} of {len(best)} SLMs)' for m, n in top.items())}. "
        + (f"Below 0.5 (worse than chance): {', '.join(f'{r.slm} {r.method} ({r.mean_auroc:.3f})' for r in below.itertuples())}. "
           if len(below) else "No mean AUROC is below 0.5. ")
        + f"With about {int(al['items'].median() / max(al['categories'].median(), 1))} items "
        f"per category the 95% bootstrap intervals are narrow: median width "
        f"{al['median_ci_width'].median():.3f}.",
        f"- **Routing.** Averaged over categories, routing by confidence adds at most "
        f"{gain.max():.3f} to the random router's area under accuracy vs. routing ratio "
        f"({means.loc[i, SLM]}, {means.loc[i, METHOD]}, to {means.loc[i, LLM]}); the oracle "
        f"adds {gap.min():.3f} to {gap.max():.3f}. Methods that beat random on fewer than half "
        f"of the categories: {int((means['beats_random'] < means['datasets'] / 2).sum())} of {len(means)} "
        f"(slm, method, LLM) rows.",
        "- **Verdicts** (rule on the findings page): " + "; ".join(
            f"{r.name}: {r.verdict}" + (f" ({r.reason})" if r.reason else
                                         f" ({r.supports} of {r.estimable} settings support, "
                                         f"{r.contradicts} contradict)")
            for r in verdict_table.itertuples()) + "."]
    return "\n".join(lines)
