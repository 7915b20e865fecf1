"""Reading the alignment results: AUROC tables with intervals, method rankings, discards, as
markdown for the docs and the book.

- :func:`method_ranking`: per SLM and method, the mean AUROC over datasets where it is defined,
  the mean rank among methods per dataset (1 = best; datasets where any method's AUROC is
  undefined are skipped for ranks), and on how many datasets the 95% bootstrap interval lies
  entirely above 0.5.
- :func:`ranking_wide`, :func:`discard_table`: the compact tables of the book's chapter 2.
- :func:`auroc_markdown`: one dataset x method table per SLM, ``0.71 [0.60, 0.81]`` per cell,
  ``undefined`` where all items are correct or all wrong, and discard counts for verbalized
  methods.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from routelib.uq import methods as uq
from routelib.uq.confidence import discard_summary


def _methods(table: pd.DataFrame) -> list[str]:
    present = set(table["method"])
    return [m for m in uq.METHODS if m in present] + sorted(present - set(uq.METHODS))


def method_ranking(auroc: pd.DataFrame) -> pd.DataFrame:
    """Rows (slm, method): ``mean_auroc``, ``mean_rank``, ``n_datasets`` (AUROC defined),
    ``n_ranked`` and ``n_above_chance`` (CI low > 0.5; needs the ``ci_low`` column)."""
    out = []
    for slm, g in auroc.groupby("slm", sort=False):
        wide = g.pivot(index="dataset", columns="method", values="auroc")
        complete = wide.dropna()
        ranks = complete.rank(axis=1, ascending=False)
        for m in _methods(g):
            col = wide[m] if m in wide else pd.Series(dtype=float)
            above = g[(g["method"] == m) & (g["ci_low"] > 0.5)] if "ci_low" in g else g.iloc[:0]
            out.append({"slm": slm, "method": m, "mean_auroc": float(col.mean()),
                        "mean_rank": float(ranks[m].mean()) if len(ranks) else np.nan,
                        "n_datasets": int(col.notna().sum()), "n_ranked": len(ranks),
                        "n_above_chance": len(above)})
    return pd.DataFrame(out)


def ranking_wide(auroc: pd.DataFrame) -> pd.DataFrame:
    """:func:`method_ranking` with one row per method (paper order) and, per SLM, its mean
    AUROC, mean rank and datasets with the interval above 0.5: the book's compact table."""
    rank = method_ranking(auroc)
    frames = []
    for slm, g in rank.groupby("slm", sort=False):
        frames.append(g.set_index("method")[["mean_auroc", "mean_rank", "n_above_chance"]]
                      .rename(columns={"mean_auroc": f"{slm} AUROC",
                                       "mean_rank": f"{slm} rank",
                                       "n_above_chance": f"{slm} above 0.5"}))
    out = pd.concat(frames, axis=1) if frames else pd.DataFrame()
    out.index.name = "method"
    return out.reindex(_methods(rank)) if len(out) else out


def discard_table(conf_table: pd.DataFrame) -> pd.DataFrame:
    """:func:`routelib.uq.confidence.discard_summary` with the first discard reason of each
    setting, the highest rates first."""
    disc = discard_summary(conf_table)
    if disc.empty:
        return disc.assign(reason=pd.Series(dtype=str))
    reasons = conf_table[conf_table["discarded"]].groupby(
        ["slm", "dataset", "method"])["discard_reason"].first()
    disc["reason"] = [reasons[(r.slm, r.dataset, r.method)] for r in disc.itertuples()]
    return disc.sort_values("rate", ascending=False, kind="stable").reset_index(drop=True)


def _cell(r) -> str:
    if pd.isna(r["auroc"]):
        return "undefined"
    s = f"{r['auroc']:.2f}"
    if "ci_low" in r and not pd.isna(r["ci_low"]):
        s += f" [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
    return s


def auroc_markdown(auroc: pd.DataFrame, conf_table: pd.DataFrame | None = None) -> str:
    """Markdown: per SLM an AUROC table (datasets x methods) and the method ranking; the
    discarded items per setting when the confidence table is given."""
    parts = []
    ranking = method_ranking(auroc)
    for slm, g in auroc.groupby("slm", sort=False):
        methods = _methods(g)
        n = (g["n"] + g["n_discarded"]).groupby(g["dataset"], sort=False).max()
        parts.append(f"### {slm}\n")
        parts.append("| dataset | N | " + " | ".join(methods) + " |")
        parts.append("|---|---:|" + "---:|" * len(methods))
        for ds, d in g.groupby("dataset", sort=False):
            cells = {r["method"]: _cell(r) for _, r in d.iterrows()}
            parts.append(f"| {ds} | {int(n[ds])} | " +
                         " | ".join(cells.get(m, "-") for m in methods) + " |")
        parts.append("")
        rk = ranking[ranking["slm"] == slm].sort_values("mean_rank")
        parts.append("| method | mean AUROC | mean rank | datasets defined | CI above 0.5 |")
        parts.append("|---|---:|---:|---:|---:|")
        for _, r in rk.iterrows():
            parts.append(f"| {r['method']} | {r['mean_auroc']:.3f} | {r['mean_rank']:.2f} | "
                         f"{r['n_datasets']} | {r['n_above_chance']} |")
        parts.append(f"\nMean rank over the {int(rk['n_ranked'].max()) if len(rk) else 0} "
                     "datasets where every method's AUROC is defined (1 = best).\n")
    if conf_table is not None:
        disc = discard_summary(conf_table)
        parts.append("### Discarded items\n")
        if len(disc):
            parts.append("| slm | dataset | method | items | discarded | rate | reason |")
            parts.append("|---|---|---|---:|---:|---:|---|")
            reasons = conf_table[conf_table["discarded"]].groupby(
                ["slm", "dataset", "method"])["discard_reason"].first()
            for _, r in disc.iterrows():
                parts.append(f"| {r['slm']} | {r['dataset']} | {r['method']} | {r['items']} | "
                             f"{r['discarded']} | {r['rate']:.0%} | "
                             f"{reasons[(r['slm'], r['dataset'], r['method'])]} |")
        else:
            parts.append("None.")
        parts.append("")
    return "\n".join(parts)
