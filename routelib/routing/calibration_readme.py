"""The README written beside an exported calibration set
(:func:`routelib.routing.calibration.export_calibration_set`): what the set is, how Algorithm 1
built it (with the parameters recorded in the set's ``attrs["calibration"]``) and how the router
reads a threshold from it."""
from __future__ import annotations

import pandas as pd

from routelib.columns import METHOD, SLM


def _per_bin(meta: dict) -> str:
    """How many items a bin gave, in the words of the rounding the sampler used."""
    f = f"{meta['fraction']:g} x bin size"
    if meta.get("rounding", "stochastic") == "half_up":
        return f"round-half-up({f})"
    return (f"{f} rounded stochastically (down, or up with probability equal to the fractional "
            "part, drawn from the same generator)")


def readme_text(cal: pd.DataFrame, meta: dict) -> str:
    """The README of an exported calibration set ``cal`` built with ``meta`` (its
    ``attrs["calibration"]``; empty: the parameters are said to be unrecorded)."""
    def one(column):
        return ", ".join(map(str, dict.fromkeys(cal[column]))) if column in cal else "(not given)"
    lines = [
        "# Routing calibration set",
        "",
        "A hold-out set of SLM confidences for choosing routing thresholds on unseen data",
        "(Chuang et al. 2025, arXiv 2502.04428, Algorithm 1), written by",
        "`routelib.routing.calibration.export_calibration_set`.",
        "",
        f"- SLM: {one(SLM)}",
        f"- UQ method: {one(METHOD)} (confidence: higher = more confident)",
        f"- items: {len(cal)}",
    ]
    if meta:
        lines += [
            f"- pooled from {meta['n_pooled']} items of: " + ", ".join(
                f"{d} ({n})" for d, n in meta["datasets"].items()),
            f"- bins: {meta['n_bins']} equal-width bins over [{meta['low']:.6g}, "
            f"{meta['high']:.6g}] of the pooled confidence",
            f"- sampling: {_per_bin(meta)} items per bin, at least {meta['min_per_bin']} from a "
            f"non-empty bin, without replacement, numpy default_rng(seed={meta['seed']}); rows "
            "sorted by (dataset, item_id) first",
            f"- non-empty bins that contributed no item: {meta['empty_sampled_bins']}",
            f"- items per bin (pooled): {meta['bin_counts']}",
            f"- items per bin (sampled): {meta['sampled_counts']}",
        ]
    else:
        lines.append("- build parameters: not recorded (the frame lost its attrs)")
    lines += [
        "",
        "## Columns",
        "",
        "`slm`, `method` (when known), `dataset`, `item_id`: which answer the confidence is of;",
        "`confidence`: the SLM's confidence; `bin`: its bin (0-based).",
        "",
        "## Use",
        "",
        "The threshold for routing ratio r is the midpoint between the k-th and (k+1)-th",
        "smallest confidence, k = round-half-up(r x n) (-inf at r = 0, +inf at r = 1); an item",
        "goes to the LLM when its confidence is strictly below it",
        "(`routelib.routing.calibration.thresholds_from_calibration`).",
        "",
    ]
    return "\n".join(lines)
