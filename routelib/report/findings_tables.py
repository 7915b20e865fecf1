"""The findings page's small tables: one per claim, rows = UQ methods, a few columns per SLM.

Each function takes a table the findings facts already computed (:mod:`routelib.report.findings`)
and returns the markdown of :func:`routelib.report.display.table` (no index, rounded), so the
page shows the numbers behind each verdict as a table a reader can scan rather than as a
sentence of thirty numbers. SLM names are shortened to their family (``smollm2-135m`` ->
``smollm2``) in column headers when that keeps them distinct.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from routelib.columns import METHOD, SLM
from routelib.report import display, uq_page

STRATEGY_LABELS = {"calibration": "calibration set", "random": "random 10%",
                   "pooled": "all others pooled", "single": "one other dataset"}


def short_names(slms) -> dict[str, str]:
    """SLM -> header label: the part before the first ``-`` when those are distinct, else the
    full names."""
    short = {s: str(s).split("-")[0] for s in slms}
    return short if len(set(short.values())) == len(short) else {s: str(s) for s in slms}


def alignment(auc: pd.DataFrame) -> str:
    """Fig. 1: per method and SLM, the mean AUROC over the estimable datasets, the mean rank
    (1 = best) and the datasets whose 95% interval is above 0.5 (``auc``: the AUROC table with
    intervals)."""
    wide = uq_page.ranking_wide(auc)
    names = short_names([c[:-len(" AUROC")] for c in wide.columns if c.endswith(" AUROC")])
    rename = {}
    for slm, s in names.items():
        rename.update({f"{slm} AUROC": f"{s} AUROC", f"{slm} rank": f"{s} rank",
                       f"{slm} above 0.5": f"{s} CI above 0.5"})
    return display.table(wide.rename(columns=rename), digits=3)


def routing(means: pd.DataFrame, slm: str) -> str:
    """Fig. 2 for one SLM: per method, its routing area, its own random router's on the same
    items, the gain, the datasets where it beats that router, the items scored, and the routing
    ratio that reaches 95% of the LLM's accuracy (the method's and its random router's); rows
    ordered by the gain."""
    g = means[means[SLM] == slm].copy()
    g["gain"] = g["auc_uq"] - g["auc_random"]
    g["beats"] = [f"{int(b)}/{int(d)}" for b, d in zip(g["beats_random"], g["datasets"])]
    g = g.sort_values("gain", ascending=False)
    out = pd.DataFrame({"method": g[METHOD], "area": g["auc_uq"],
                        "its random": g["auc_random"], "gain": g["gain"],
                        "beats random": g["beats"], "N": g["items"].astype(int),
                        "ratio for 95%": g["ratio_95_uq"],
                        "random's ratio": g["ratio_95_random"]})
    return display.table(out, digits=3, percent={"ratio for 95%", "random's ratio"})


def top_vs_all(topk: pd.DataFrame, top: float) -> pd.DataFrame:
    """Per (slm, dataset, method): the top-k table's row at keep fraction ``top`` beside its row
    at 1.0 (all items), columns suffixed ``_top`` and ``_all``."""
    near = topk[np.isclose(topk["keep_fraction"], top)]
    full = topk[np.isclose(topk["keep_fraction"], 1.0)]
    return near.merge(full, on=[SLM, "dataset", METHOD], suffixes=("_top", "_all"))


def confident(topk: pd.DataFrame, top: float) -> str:
    """Fig. 3: per method and SLM, the SLM's accuracy on its ``top`` most confident items and
    on all items (means over datasets), and the relative accuracy (SLM over LLM on the same
    kept items) on the top items."""
    both = top_vs_all(topk, top)
    names = short_names(list(dict.fromkeys(both[SLM])))
    frames = []
    for slm, g in both.groupby(SLM, sort=False):
        s = names[slm]
        m = g.groupby(METHOD, sort=False)
        frames.append(pd.DataFrame({
            f"{s} top {top:.0%}": m["slm_accuracy_top"].mean(),
            f"{s} all": m["slm_accuracy_all"].mean(),
            f"{s} relative": m["slm_accuracy_top"].mean() / m["llm_accuracy_top"].mean()}))
    out = pd.concat(frames, axis=1)
    out.index.name = "method"
    pct = {c for c in out.columns if not c.endswith("relative")}
    return display.table(out, digits=2, percent=pct)


def transfer(means: pd.DataFrame, spread: pd.DataFrame | None) -> str:
    """Algorithm 1 / Fig. 5: per SLM and transfer method, the mean absolute realized-ratio
    error (over targets) of each threshold strategy, the calibration set's spread over its runs
    and the targets where it beats the plain random sample."""
    wide = means.pivot_table(index=[SLM, METHOD], columns="strategy",
                             values="mean_abs_ratio_error", sort=False)
    wide = wide[[s for s in STRATEGY_LABELS if s in wide.columns]]
    wide = wide.rename(columns=STRATEGY_LABELS)
    if spread is not None and len(spread):
        cal = spread[spread["strategy"] == "calibration"]
        wide["calibration sd"] = cal.groupby([SLM, METHOD], sort=False)["error_sd"].mean()
        w = spread.pivot_table(index=[SLM, METHOD, "target"], columns="strategy",
                               values="error")
        if {"calibration", "random"} <= set(w.columns):
            beats = (w["calibration"] < w["random"]).groupby(level=[0, 1]).agg(["sum", "size"])
            wide["beats random"] = [f"{int(a)}/{int(b)}" for a, b in
                                    beats.reindex(wide.index).to_numpy()]
    return display.table(wide, digits=3)
