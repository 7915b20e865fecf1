"""What the cache cost to compute: the ``timings.jsonl`` of every run folder, summed.

Each cached part (a chunk of answers, of a model pass, of judge verdicts) appends one line
``{"items": n, "seconds": s, ...}`` when it is written (:mod:`routelib.cache.runs`,
:mod:`routelib.uq.statcache`, :mod:`routelib.report.judge`). Summed, they are the process time a
from-scratch run of the same cache takes on the machine that made it (model loads and
interrupted, unsaved chunks excluded). Folder layout::

    answers/<model>/<dataset>/<split>__<config>__<key>/timings.jsonl
    stats/<model>/<dataset>/<split>__<config>__<key>/<pass>__<key>/timings.jsonl
    judge/<slm>/<dataset>/<split>__<config>__<key>/<judge>__<key>/timings.jsonl
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from routelib import config
from routelib.cache.runs import throughput

COLUMNS = ("kind", "model", "dataset", "split", "part", "items", "seconds")


def stored_time(root: Path | None = None) -> pd.DataFrame:
    """One row per run folder with timings: ``kind`` (answers, stats, judge), ``model``,
    ``dataset``, ``split`` (eval, train), ``part`` (the answer configuration, the pass, or the
    judge), and the summed ``items`` and ``seconds``."""
    root = Path(root) if root is not None else config.cache_dir()
    rows = []
    for kind in ("answers", "stats", "judge"):
        for tfile in sorted((root / kind).glob("**/timings.jsonl")):
            rel = tfile.parent.relative_to(root / kind).parts
            if len(rel) < 3:
                continue
            model, dataset, run = rel[0], rel[1], rel[2]
            split, _, rest = run.partition("__")
            part = rel[3].split("__")[0] if len(rel) > 3 else rest.rsplit("__", 1)[0]
            t = throughput(tfile.parent)
            rows.append((kind, model, dataset, split, part, int(t["items"]), float(t["seconds"])))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Hours of process time per (model, kind, split), with a total row."""
    g = (table.groupby(["model", "kind", "split"], sort=True)[["items", "seconds"]].sum()
         .reset_index())
    g["hours"] = g["seconds"] / 3600
    total = pd.DataFrame([{"model": "all", "kind": "", "split": "",
                           "items": int(g["items"].sum()), "seconds": g["seconds"].sum(),
                           "hours": g["seconds"].sum() / 3600}])
    return pd.concat([g, total], ignore_index=True)


def summary_markdown(table: pd.DataFrame) -> str:
    s = summary(table)
    lines = ["| model | kind | split | items | process hours |", "|---|---|---|---|---|"]
    for r in s.itertuples():
        lines.append(f"| {r.model} | {r.kind} | {r.split} | {int(r.items)} | {r.hours:.2f} |")
    return "\n".join(lines) + "\n"
