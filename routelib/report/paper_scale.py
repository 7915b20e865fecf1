"""The paper's analyses on the published MMLU-Pro outputs (:mod:`routelib.uq.published`)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from routelib.columns import CONF_COLUMNS, CORRECT, DATASET, DISCARDED, ITEM_ID, LLM, METHOD, SLM
from routelib.routing.simulation import area_under_curve, simulate
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
