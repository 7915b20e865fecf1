"""Markdown pieces shared by the adaptive-threshold pages (:mod:`routelib.report.adaptive_page`,
:mod:`routelib.report.adaptive_published`): shares as points or percentages, tables of frames."""
from __future__ import annotations

import math

import pandas as pd


def _pts(x) -> str:
    """A share as percentage points, one decimal ("–" for NaN); strings pass through."""
    if isinstance(x, str):
        return x
    return "–" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def _pct(x) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.1f}%"


def _than(a: float, b: float) -> str:
    """How ``a`` compares with ``b`` at the printed precision (0.1 point)."""
    a, b = round(100 * a, 1), round(100 * b, 1)
    return "larger than" if a > b else "smaller than" if a < b else "equal to"


def _table(frame: pd.DataFrame, fmt=_pts) -> list[str]:
    """A markdown table of a frame whose index names the rows (one or more levels)."""
    names = [str(n) for n in frame.index.names]
    head = "| " + " | ".join(names + [str(c) for c in frame.columns]) + " |"
    rule = "|" + "---|" * (len(names) + len(frame.columns))
    rows = []
    for key, values in frame.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        rows.append("| " + " | ".join([str(k) for k in key] + [fmt(v) for v in values]) + " |")
    return [head, rule, *rows, ""]


def _by_n(frame: pd.DataFrame, keys, column: str = "ratio_error") -> pd.DataFrame:
    t = frame.groupby(keys + ["n"], sort=False)[column].mean().unstack("n")
    t.columns = [f"n={n}" for n in t.columns]
    return t


def _grid(frame: pd.DataFrame) -> str:
    """The simulated grid of a page's setup line: "n = 0, 10, ...; ratios 0.1, 0.2, ..."."""
    return (f"n = {', '.join(map(str, sorted(frame['n'].unique())))}; ratios "
            f"{', '.join(f'{r:g}' for r in sorted(frame['ratio'].unique()))}")


def _signed(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:+.2f}"
