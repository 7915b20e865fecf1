"""Reading the alignment results: AUROC tables with intervals, method rankings, discards, as
markdown for the docs and the book.

- :func:`method_ranking`: per SLM and method, the mean AUROC over the datasets where it is
  *estimable* (at least :data:`routelib.uq.metrics.MIN_CORRECT` correct and
  :data:`~routelib.uq.metrics.MIN_WRONG` wrong kept items), the mean rank among methods per
  dataset (1 = best; methods estimable on fewer than half the datasets are not ranked, and
  datasets where a ranked method is not estimable are skipped for ranks), on how
  many estimable datasets the 95% bootstrap interval lies entirely above 0.5, and on how many
  the setting had too few items.
- :func:`ranking_wide`, :func:`discard_table`: the compact tables of the book's chapter 2.
- :func:`auroc_markdown`: one dataset x method table per SLM, ``0.71 [0.60, 0.81]`` per cell,
  ``undefined`` where all items are correct or all wrong, ``too few (k/n)`` where the AUROC is
  not estimable (k correct of n kept; left out of every mean, rank and count), and discard
  counts.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from routelib.uq import methods as uq
from routelib.uq.metrics import MIN_CORRECT, MIN_WRONG, TOO_FEW, estimable_mask, is_estimable
from routelib.uq.confidence import discard_summary


def _methods(table: pd.DataFrame) -> list[str]:
    present = set(table["method"])
    return [m for m in uq.METHODS if m in present] + sorted(present - set(uq.METHODS))


def method_ranking(auroc: pd.DataFrame) -> pd.DataFrame:
    """Rows (slm, method): ``mean_auroc``, ``mean_rank``, ``n_datasets`` (AUROC estimable),
    ``n_ranked``, ``n_above_chance`` (estimable and CI low > 0.5; needs the ``ci_low``
    column) and ``n_too_few`` (defined or not, but below the estimable counts)."""
    out = []
    ok = estimable_mask(auroc) & auroc["auroc"].notna()
    for slm, g in auroc.groupby("slm", sort=False):
        est = g[ok[g.index]]
        wide = est.pivot(index="dataset", columns="method", values="auroc")
        wide = wide.reindex(columns=_methods(g))
        # a method estimable on fewer than half the datasets is not ranked (it would leave
        # no dataset where every method can be compared)
        rankable = [m for m in wide.columns
                    if wide[m].notna().sum() >= max(1, math.ceil(g["dataset"].nunique() / 2))]
        complete = wide[rankable].dropna()
        ranks = complete.rank(axis=1, ascending=False)
        for m in _methods(g):
            col = wide[m]
            above = est[(est["method"] == m) & (est["ci_low"] > 0.5)] if "ci_low" in est \
                else est.iloc[:0]
            out.append({"slm": slm, "method": m, "mean_auroc": float(col.mean()),
                        "mean_rank": float(ranks[m].mean()) if len(ranks) and m in ranks
                        else np.nan,
                        "n_datasets": int(col.notna().sum()), "n_ranked": len(ranks),
                        "n_above_chance": len(above),
                        "n_too_few": int(((g["method"] == m) & ~ok[g.index]).sum())})
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
    """:func:`routelib.uq.confidence.discard_summary` (its ``reasons`` column names every
    discard reason of a setting with its count), the highest rates first."""
    disc = discard_summary(conf_table)
    return disc.sort_values("rate", ascending=False, kind="stable").reset_index(drop=True)


def _cell(r) -> str:
    if pd.isna(r["auroc"]):
        return "undefined"
    if not is_estimable(int(r["n_correct"]), int(r["n"])):
        return f"{TOO_FEW} ({int(r['n_correct'])}/{int(r['n'])})"
    s = f"{r['auroc']:.2f}"
    if "ci_low" in r and not pd.isna(r["ci_low"]):
        s += f" [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
    if r["n_discarded"]:
        s += f" (n={int(r['n'])})"
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
        parts.append("| method | mean AUROC | mean rank | datasets estimable | CI above 0.5 | "
                     "too few |")
        parts.append("|---|---:|---:|---:|---:|---:|")
        for _, r in rk.iterrows():
            parts.append(f"| {r['method']} | {r['mean_auroc']:.3f} | {r['mean_rank']:.2f} | "
                         f"{r['n_datasets']} | {r['n_above_chance']} | {r['n_too_few']} |")
        parts.append(f"\nMean rank over the {int(rk['n_ranked'].max()) if len(rk) else 0} "
                     "datasets where every ranked method's AUROC is estimable (1 = best; a "
                     "method estimable on fewer than half the datasets is not ranked: nan). "
                     "A setting is "
                     f"estimable with at least {MIN_CORRECT} correct and {MIN_WRONG} wrong kept "
                     f"items; below that the cell reads \"{TOO_FEW} (correct/kept)\" and the "
                     "setting is left out of means, ranks and counts. Cells give the AUROC and "
                     "its 95% bootstrap interval (resampled within each class), and the items "
                     "scored (n=) where the method discarded some of the dataset's N.\n")
    if conf_table is not None:
        parts.append(verbal_1s_markdown(conf_table))
        disc = discard_summary(conf_table)
        parts.append("### Discarded items\n")
        if len(disc):
            parts.append("| slm | dataset | method | items | discarded | rate | reasons |")
            parts.append("|---|---|---|---:|---:|---:|---|")
            for _, r in disc.iterrows():
                parts.append(f"| {r['slm']} | {r['dataset']} | {r['method']} | {r['items']} | "
                             f"{r['discarded']} | {r['rate']:.0%} | {r['reasons']} |")
        else:
            parts.append("None.")
        parts.append("")
    return "\n".join(parts)


VERBAL_1S_COLUMNS = ("slm", "dataset", "items", "greedy_accuracy", "verbal_1s_accuracy",
                     "verbal_1s_scored")


def verbal_1s_accuracy(conf_table: pd.DataFrame) -> pd.DataFrame:
    """Per (slm, dataset) with ``verbal_1s`` rows: the items, the accuracy of the greedy answer
    (the ``correct`` of the other methods' rows), the accuracy of the answer inside the
    one-stage verbal output (its own rows' ``correct``, over every item) and how many of its
    items have a confidence (scored, not discarded)."""
    rows = []
    for (slm, ds), g in conf_table.groupby(["slm", "dataset"], sort=False):
        v = g[g["method"] == "verbal_1s"]
        other = g[g["method"] != "verbal_1s"]
        if v.empty:
            continue
        greedy = other[other["method"] == other["method"].iloc[0]] if len(other) else other
        rows.append(dict(slm=slm, dataset=ds, items=len(v),
                         greedy_accuracy=float(greedy["correct"].mean()) if len(greedy)
                         else np.nan,
                         verbal_1s_accuracy=float(v["correct"].mean()),
                         verbal_1s_scored=int(v["confidence"].notna().sum())))
    return pd.DataFrame(rows, columns=list(VERBAL_1S_COLUMNS))


def verbal_1s_markdown(conf_table: pd.DataFrame) -> str:
    """The table of :func:`verbal_1s_accuracy` with a line on what it means ("" when no
    ``verbal_1s`` rows)."""
    t = verbal_1s_accuracy(conf_table)
    if t.empty:
        return ""
    lines = ["### Verbalization-1s: graded on its own answer\n",
             "The one-stage prompt asks for the answer and its confidence in one output; "
             "verbal_1s is graded on the answer in that output (letter, true/false, number or "
             "text), so its AUROC and routing use that answer's correctness. Its accuracy "
             "beside the greedy answer's (all items; *scored*: items with a usable "
             "confidence):\n",
             "| slm | dataset | items | greedy answer | verbal-1s answer | scored |",
             "|---|---|---:|---:|---:|---:|"]
    for r in t.itertuples(index=False):
        lines.append(f"| {r.slm} | {r.dataset} | {r.items} | {r.greedy_accuracy:.1%} | "
                     f"{r.verbal_1s_accuracy:.1%} | {r.verbal_1s_scored} |")
    for slm, g in t.groupby("slm", sort=False):
        lines.append(f"\n{slm}, mean over {len(g)} datasets: greedy "
                     f"{g['greedy_accuracy'].mean():.1%}, verbal-1s answer "
                     f"{g['verbal_1s_accuracy'].mean():.1%}.")
    return "\n".join(lines) + "\n"
