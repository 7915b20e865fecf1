"""Figures of the adaptive-threshold simulation (:mod:`routelib.routing.adaptive_sim`), matplotlib only."""
from __future__ import annotations

import numpy as np

from routelib.routing.adaptive import dkw_epsilon

LABELS = {
    "calibration": "static calibration set (paper)",
    "calibration_ties": "static calibration set, ties randomized",
    "pooled": "pooled other datasets",
    "single": "one other dataset",
    "adaptive": "adaptive",
    "adaptive_ties": "adaptive, ties randomized",
    "adaptive_prior": "adaptive, ties randomized, calibration prior",
    "history": "whole history",
    "window": "sliding window",
    "target_only": "target queries only (switch known)",
}
STYLES = {
    "calibration": dict(color="tab:gray", ls="-", marker="s"),
    "calibration_ties": dict(color="tab:gray", ls=":", marker="s"),
    "pooled": dict(color="tab:brown", ls="-", marker="^"),
    "single": dict(color="tab:olive", ls="-", marker="v"),
    "adaptive": dict(color="tab:blue", ls="-", marker="o"),
    "adaptive_ties": dict(color="tab:red", ls="--", marker="o"),
    "adaptive_prior": dict(color="tab:purple", ls="-.", marker="D"),
    "history": dict(color="tab:gray", ls="-", marker="s"),
    "window": dict(color="tab:blue", ls="-", marker="o"),
    "target_only": dict(color="tab:red", ls="--", marker="o"),
}


COLUMNS = 2  # panels per row: the book's column holds two at a readable size


def _grid(frame, line_column: str, lines, delta: float, title: str, band: bool = True):
    """Small multiples, one panel per (SLM, method), :data:`COLUMNS` to a row: mean ratio
    error vs n."""
    import matplotlib.pyplot as plt
    slms, methods = list(dict.fromkeys(frame["slm"])), list(dict.fromkeys(frame["method"]))
    panels = [(slm, method) for slm in slms for method in methods]
    cols = min(COLUMNS, len(panels))
    rows = -(-len(panels) // cols)
    ns = sorted(frame["n"].unique())
    x = np.arange(len(ns))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), sharex=True,
                             sharey=True, squeeze=False)
    means = frame.groupby(["slm", "method", line_column, "n"])["ratio_error"].mean() * 100
    eps = [min(100 * dkw_epsilon(n, delta), 100.0) for n in ns]
    for k, ax in enumerate(axes.flat):
        if k >= len(panels):
            ax.set_visible(False)
            continue
        slm, method = panels[k]
        for line in lines:
            if (slm, method, line) not in means.index.droplevel("n"):
                continue
            y = means.loc[(slm, method, line)].reindex(ns).to_numpy()
            ax.plot(x, y, label=LABELS.get(line, line), ms=3.5, lw=1.2, **STYLES.get(line, {}))
        if band:
            ax.plot(x, eps, color="black", lw=0.8, ls=(0, (1, 2)),
                    label=f"DKW half-width at n (delta = {delta:g})")
        ax.set_title(f"{slm} · {method}", fontsize=9)
        ax.set_xticks(x, [str(n) for n in ns], fontsize=8)
        ax.set_ylim(0, 60)
        ax.grid(alpha=0.3)
        if k % cols == 0:
            ax.set_ylabel("|realized − requested| (points)", fontsize=8)
        if k + cols >= len(panels):
            ax.set_xlabel("target queries seen, n", fontsize=8)
            ax.tick_params(labelbottom=True)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.04 - 0.03 * rows))
    fig.suptitle(title, fontsize=10, wrap=True)
    fig.tight_layout()
    return fig


def plot_ratio_error(result, strategies=None, delta: float = 0.05):
    """Realized-ratio error vs n per strategy, small multiples per (SLM, method)."""
    lines = strategies or list(dict.fromkeys(result["strategy"]))
    return _grid(result, "strategy", lines, delta, "Leave-one-dataset-out: mean |realized − "
                 "requested routing ratio| on the rest of the target after n unlabeled queries")


def plot_drift(drift, delta: float = 0.05):
    """Drift: error on the target after the whole source stream and n target queries."""
    lines = list(dict.fromkeys(drift["variant"]))
    return _grid(drift, "variant", lines, delta, "Drift: the stream switches from one dataset "
                 "to another; error on the rest of the new one after n of its queries",
                 band=False)
