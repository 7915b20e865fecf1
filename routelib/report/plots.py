"""Figures of the paper from routelib's tidy tables; every function returns a matplotlib Figure.

- :func:`auroc_heatmap` (Figure 1): AUROC per method and dataset, :func:`metrics.auroc_table`.
- :func:`routing_curves` (Figure 2): accuracy vs. routing ratio, :func:`routing.simulate`.
- :func:`method_summary`: per method and SLM, mean AUROC and routing area gain over random (the
  intro's and chapter 3's summary).
- :func:`relative_accuracy` (Figure 3): SLM / LLM accuracy on the most confident items kept,
  :func:`relative_accuracy_table` (a whole-table :func:`routing.relative_accuracy_top_k`).
- :func:`confidence_distributions` (Figure 4): per-dataset vs. pooled confidence densities, a
  confidence table (+ :func:`distributions.distribution_shift` for the legend).
- :func:`calibration_vs_full` (Figure 5): thresholds from other data vs. the target's own,
  :func:`calibration.transfer_table`.
- :func:`probe_learning_curves`: trained-probe AUROC vs. train items,
  :func:`routelib.uq.learning_curve.learning_curve_table`.

Nothing is shown and no backend is set: call ``matplotlib.use("Agg")`` first for files only.
Each UQ method keeps one colour in every figure (:data:`METHOD_PALETTE`, seaborn "tab10" in the
order of :data:`routelib.uq.methods.METHODS`, the paper's order); method names outside the registry get
a fixed colour of their own. Bad input raises ``ValueError`` naming what is missing or known.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from scipy.stats import gaussian_kde

from routelib.routing.calibration import (GROUND_TRUTH, REALIZED_RATIO, SOURCE, STRATEGIES,
                                          STRATEGY, TARGET)
from routelib.routing.distributions import KS, WASSERSTEIN
from routelib.routing.relative import DEFAULT_KEEP
from routelib.routing.simulation import (ACCURACY, CONF_COLUMNS, CONFIDENCE, DATASET, ITEM_ID, LLM,
                                         LLM_COLUMNS, METHOD, RATIO, ROUTED, ROUTER, SLM,
                                         TOP_K_COLUMNS, check_columns, check_unique, pair_items)
from routelib.uq import methods as uq

AUROC = "auroc"  # the value column of metrics.AUROC_COLUMNS (it has no name constant)
KEEP_FRACTION, N_KEPT, SLM_ACCURACY, LLM_ACCURACY, RELATIVE_ACCURACY = TOP_K_COLUMNS[:5]
METHOD_PALETTE = dict(zip(uq.METHODS, sns.color_palette("tab10", len(uq.METHODS))))
_EXTRA = sns.color_palette("Dark2", 8)
STRATEGY_STYLE = {"calibration": dict(color="tab:red", ls="-"),
                  "random": dict(color="tab:orange", ls="-."),
                  "pooled": dict(color="tab:green", ls="--"),
                  "single": dict(color="tab:purple", ls=":")}
NAN_NOTE = "blank = undefined: all items correct or all wrong"


def method_color(method: str):
    """The colour of ``method``: :data:`METHOD_PALETTE`, or a fixed one chosen by its name."""
    return METHOD_PALETTE.get(method) or _EXTRA[zlib.crc32(str(method).encode()) % len(_EXTRA)]


def method_order(methods) -> list:
    """The distinct ``methods`` in the paper's order; names outside the registry last, as met."""
    present = list(dict.fromkeys(methods))
    return [m for m in uq.METHODS if m in present] + [m for m in present if m not in uq.METHODS]


def _pick(frame: pd.DataFrame, column: str, value, what: str) -> pd.DataFrame:
    """Rows whose ``column`` is ``value`` (or any of a list); ``None``: the one value there is."""
    known = list(dict.fromkeys(frame[column]))
    if value is None:
        if len(known) > 1:
            raise ValueError(f"the {what} holds several {column}s {known}; pick one with "
                             f"{column}=...")
        return frame
    wanted = [value] if isinstance(value, str) or not np.iterable(value) else list(value)
    unknown = [v for v in wanted if v not in known]
    if unknown:
        raise ValueError(f"{column} {unknown} not in the {what}; available: {known}")
    return frame[frame[column].isin(wanted)]


def _facets(n: int, col_wrap: int, width: float = 4.0, height: float = 3.2):
    import matplotlib.pyplot as plt
    cols = max(1, min(n, col_wrap))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 1.8, height * rows),
                             squeeze=False, sharey=True, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _dataset_panels(t: pd.DataFrame, dataset, what: str, col_wrap: int):
    """``(rows of the picked datasets, their names in table order, figure, axes)``: one
    panel per dataset (``dataset``: a name, a list, or ``None`` for all)."""
    t = _pick(t, DATASET, dataset, what) if dataset is not None else t
    datasets = list(dict.fromkeys(t[DATASET]))
    if dataset is not None and not isinstance(dataset, str):
        datasets = [d for d in dict.fromkeys(dataset) if d in set(datasets)]   # as asked
    if not datasets:
        raise ValueError(f"the {what} is empty")
    fig, axes = _facets(len(datasets), col_wrap, width=3.0 if col_wrap <= 3 else 4.0)
    return t, datasets, fig, axes


def _legend(fig: Figure, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize="small")


# ---- Figure 1 ------------------------------------------------------------------------------
def auroc_heatmap(auroc_table: pd.DataFrame, slm: str | None = None, annot: bool = True,
                  vmin: float = 0.3, vmax: float = 0.9, rows: str = METHOD) -> Figure:
    """AUROC per (method, dataset) from :func:`routelib.uq.metrics.auroc_table` (paper Figure 1).

    ``rows=METHOD`` (the paper's layout): rows are methods in the paper's order (those present),
    columns datasets in table order; ``rows=DATASET``: transposed, which fits 14 datasets into a
    book page (one SLM per figure). Diverging "RdBu_r" centred at 0.5 (chance), clipped to
    [vmin, vmax]. NaN AUROC (undefined) and (method, dataset) pairs absent from the table are
    left blank on a grey ground. With several SLMs and ``slm=None``: one panel per SLM, one
    shared colour bar.
    """
    import matplotlib.pyplot as plt
    check_columns(auroc_table, (SLM, DATASET, METHOD, AUROC), "AUROC table")
    check_unique(auroc_table, [SLM, DATASET, METHOD], "AUROC table")
    if rows not in (METHOD, DATASET):
        raise ValueError(f"rows={rows!r}: use {METHOD!r} or {DATASET!r}")
    table = _pick(auroc_table, SLM, slm, "AUROC table") if slm is not None else auroc_table
    if table.empty:
        raise ValueError("the AUROC table is empty")
    slms = list(dict.fromkeys(table[SLM]))
    datasets = list(dict.fromkeys(table[DATASET]))
    n_methods = len(set(table[METHOD]))
    n_rows, n_cols = (n_methods, len(datasets)) if rows == METHOD else (len(datasets), n_methods)
    cell_w = 0.75 if rows == METHOD else 0.6
    fig, axes = plt.subplots(1, len(slms) + 1, layout="constrained", squeeze=False,
                             figsize=(len(slms) * (2.4 + cell_w * n_cols) + 0.8,
                                      1.6 + (0.45 if rows == METHOD else 0.36) * n_rows
                                      + (0 if rows == METHOD else 1.0)),
                             gridspec_kw={"width_ratios": [1] * len(slms) + [0.05]})
    axes = axes[0]
    missing = False
    for i, (name, ax) in enumerate(zip(slms, axes)):
        sub = table[table[SLM] == name]
        wide = sub.pivot(index=METHOD, columns=DATASET, values=AUROC)
        wide = wide.reindex(index=method_order(sub[METHOD]),
                            columns=[d for d in datasets if d in set(sub[DATASET])])
        missing |= len(sub) < wide.size
        wide = wide if rows == METHOD else wide.T
        ax.set_facecolor("0.85")
        sns.heatmap(wide.astype(float), ax=ax, cmap="RdBu_r", center=0.5, vmin=vmin, vmax=vmax,
                    annot=annot, fmt=".2f", linewidths=0.5, cbar=i == len(slms) - 1,
                    cbar_ax=axes[-1], cbar_kws={"label": "AUROC (0.5 = chance)"})
        label = {METHOD: "UQ method", DATASET: "dataset"}
        other = DATASET if rows == METHOD else METHOD
        ax.set(title=f"SLM: {name}", xlabel=label[other], ylabel=label[rows] if i == 0 else "")
        ax.tick_params(axis="x", labelrotation=45)
        if rows == DATASET:
            plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    note = NAN_NOTE + ("; or not computed" if missing else "")
    fig.suptitle(f"AUROC of confidence for correctness\n({note})", fontsize="medium")
    return fig


# ---- Figure 2 ------------------------------------------------------------------------------
def routing_curves(sim_table: pd.DataFrame, dataset=None, slm: str | None = None,
                   llm: str | None = None, col_wrap: int = 2) -> Figure:
    """Accuracy vs. share routed to the LLM, from :func:`routelib.routing.simulation.simulate` (Figure 2).

    One panel per dataset (``dataset``: a name or a list; default all), one line per method
    (router ``uq``), the ``oracle`` (black dashed) and ``random`` (grey dotted) routers as
    references. x is the *realized* share routed (``routed``: k / n), y the accuracy, both in %.
    The table must hold one SLM and one LLM, or ``slm`` / ``llm`` must pick them.
    """
    check_columns(sim_table, (SLM, LLM, DATASET, METHOD, ROUTER, ACCURACY, ROUTED),
                  "simulation table")
    t = _pick(_pick(sim_table, SLM, slm, "simulation table"), LLM, llm, "simulation table")
    t, datasets, fig, axes = _dataset_panels(t, dataset, "simulation table", col_wrap)
    for ax, name in zip(axes, datasets):
        d = t[t[DATASET] == name]
        for method in method_order(d.loc[d[ROUTER] == "uq", METHOD]):
            c = d[(d[ROUTER] == "uq") & (d[METHOD] == method)]
            ax.plot(100 * c[ROUTED], 100 * c[ACCURACY], color=method_color(method), lw=1.6,
                    marker=".", label=method)
        first = d[METHOD].iloc[0]   # oracle and random rows repeat for every method
        for router, style in (("oracle", dict(color="black", ls="--")),
                              ("random", dict(color="0.5", ls=":"))):
            c = d[(d[ROUTER] == router) & (d[METHOD] == first)]
            if len(c):
                ax.plot(100 * c[ROUTED], 100 * c[ACCURACY], lw=1.4, label=router, **style)
        ax.set(title=name, xlabel="routed to LLM (% of items)", ylabel="accuracy (%)",
               xlim=(0, 100))
    _legend(fig, axes[0])
    fig.suptitle(f"Routing {t[SLM].iloc[0]} -> {t[LLM].iloc[0]}:\naccuracy vs. routing ratio")
    return fig


def method_summary(ranking: pd.DataFrame | None = None, means: pd.DataFrame | None = None
                   ) -> Figure:
    """One bar per (method, SLM): the mean AUROC over datasets (``ranking``:
    :func:`routelib.report.uq_page.method_ranking`; dashed line at chance) and/or the mean area
    under the routing curve minus the random router's (``means``: the routing study's
    per-method means; 0 = no better than random). One panel per table given, stacked."""
    import matplotlib.pyplot as plt
    panels = []
    if ranking is not None:
        check_columns(ranking, (SLM, METHOD, "mean_auroc"), "method ranking")
        panels.append((ranking.assign(value=ranking["mean_auroc"]), 0.5,
                       "mean AUROC over datasets", "Alignment (0.5 = chance)"))
    if means is not None:
        check_columns(means, (SLM, METHOD, "auc_uq", "auc_random"), "routing means")
        panels.append((means.assign(value=means["auc_uq"] - means["auc_random"]), 0.0,
                       "area gain over random router", "Routing (0 = random)"))
    if not panels or any(p[0].empty for p in panels):
        raise ValueError("method_summary needs a non-empty ranking or routing means table")
    # panels stacked, so each is as wide as a book page (about 700 px at 100 dpi)
    fig, axes = plt.subplots(len(panels), 1, figsize=(7.0, 3.4 * len(panels)),
                             layout="constrained", squeeze=False)
    slms = sorted(set(s for p in panels for s in p[0][SLM]))   # one colour per SLM, by name
    colors = dict(zip(slms, sns.color_palette("colorblind", len(slms))))
    width = 0.8 / len(slms)
    for ax, (t, ref, ylabel, title) in zip(axes[:, 0], panels):
        methods = method_order(t[METHOD])
        for j, slm in enumerate(slms):
            color = colors[slm]
            v = t[t[SLM] == slm].groupby(METHOD)["value"].mean().reindex(methods)
            ax.bar(np.arange(len(methods)) + (j - (len(slms) - 1) / 2) * width, v - ref,
                   width, bottom=ref, color=color, label=slm)
        ax.axhline(ref, color="black", lw=1, ls="--")
        ax.set_xticks(np.arange(len(methods)), methods, rotation=40, ha="right",
                      rotation_mode="anchor")
        ax.set(ylabel=ylabel, title=title)
    axes[0][0].legend(fontsize="small", title="SLM", title_fontsize="small")
    return fig


def routing_gain(means: pd.DataFrame) -> Figure:
    """:func:`method_summary` of the routing means alone (chapter 3's summary figure)."""
    fig = method_summary(means=means)
    fig.suptitle("Routing gain over a random router per UQ method, mean over the datasets",
                 fontsize="medium")
    return fig


# ---- Figure 3 ------------------------------------------------------------------------------
def relative_accuracy(topk_table: pd.DataFrame, dataset=None, slm: str | None = None,
                      llm: str | None = None, col_wrap: int = 2) -> Figure:
    """Relative accuracy: SLM over LLM accuracy on the SLM's most confident items (paper
    Figure 3, "the ratio of SLM to LLM accuracy on the remaining top-k% queries").

    Input: :func:`relative_accuracy_table` (or any frame with ``method`` and
    :data:`~routelib.routing.simulation.TOP_K_COLUMNS`; ``dataset``, ``slm``, ``llm`` optional, one value
    each unless picked). One panel per dataset, one line per method; x = share kept (%), the
    dashed line at 1 is parity with the LLM on the same kept items.
    """
    check_columns(topk_table, (METHOD, KEEP_FRACTION, RELATIVE_ACCURACY), "top-k table")
    t = topk_table if DATASET in topk_table else topk_table.assign(**{DATASET: "all"})
    for column, value in ((SLM, slm), (LLM, llm)):
        if column in t:
            t = _pick(t, column, value, "top-k table")
        elif value is not None:
            raise ValueError(f"{column}={value!r} given but the top-k table has no {column!r} "
                             "column")
    t, datasets, fig, axes = _dataset_panels(t, dataset, "top-k table", col_wrap)
    for ax, name in zip(axes, datasets):
        d = t[t[DATASET] == name]
        for method in method_order(d[METHOD]):
            c = d[d[METHOD] == method].sort_values(KEEP_FRACTION)
            ax.plot(100 * c[KEEP_FRACTION], c[RELATIVE_ACCURACY], color=method_color(method),
                    marker=".", lw=1.6, label=method)
        ax.axhline(1.0, color="black", ls="--", lw=1, label="LLM on the same items (= 1)")
        ax.set(title=name, xlabel="most-confident items kept (%)",
               ylabel="SLM acc. / LLM acc. (ratio)")
    _legend(fig, axes[0])
    fig.suptitle("Relative accuracy of the SLM on its most confident items")
    return fig


# ---- Figure 4 ------------------------------------------------------------------------------
def confidence_distributions(conf_table: pd.DataFrame, method: str, slm: str | None = None,
                             shift: pd.DataFrame | None = None, grid: int = 200) -> Figure:
    """Per-dataset confidence densities against the pooled one (paper Figure 4).

    Gaussian KDEs (scipy, Scott's bandwidth) on a common grid of ``grid`` points; pooled: thick
    black line; a dataset whose confidences are all equal gets a vertical line instead. With
    ``shift`` (:func:`routelib.routing.distributions.distribution_shift` output), each dataset's legend
    entry adds its KS statistic and Wasserstein-1 distance to the reference it was computed with.
    """
    import matplotlib.pyplot as plt
    check_columns(conf_table, (SLM, DATASET, METHOD, CONFIDENCE), "confidence table")
    t = _pick(_pick(conf_table, METHOD, method, "confidence table"), SLM, slm,
              "confidence table")
    t = t[np.isfinite(t[CONFIDENCE].to_numpy(float))]   # discarded (NaN) items
    if t.empty:
        raise ValueError(f"no finite confidence for method {method!r}")
    dist = {}
    if shift is not None:
        check_columns(shift, (SLM, METHOD, DATASET, KS, WASSERSTEIN), "shift table")
        s = shift[(shift[SLM] == t[SLM].iloc[0]) & (shift[METHOD] == method)]
        dist = {r[DATASET]: (r[KS], r[WASSERSTEIN]) for _, r in s.iterrows()}
    pooled = t[CONFIDENCE].to_numpy(float)
    lo, hi = pooled.min(), pooled.max()
    pad = 0.1 * (hi - lo) or 0.05
    x = np.linspace(lo - pad, hi + pad, grid)
    datasets = list(dict.fromkeys(t[DATASET]))
    colors = sns.color_palette("tab10" if len(datasets) <= 10 else "husl", len(datasets))
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    for name, color in zip(datasets, colors):
        v = t.loc[t[DATASET] == name, CONFIDENCE].to_numpy(float)
        label = f"{name} (n={len(v)})"
        if name in dist:
            label += f"  KS={dist[name][0]:.2f}, W1={dist[name][1]:.3g}"
        if len(v) > 1 and np.ptp(v) > 0:
            ax.plot(x, gaussian_kde(v)(x), color=color, lw=1.3, alpha=0.9, label=label)
        else:
            ax.axvline(v[0], color=color, lw=1.3, label=label + " (constant)")
    if np.ptp(pooled) > 0:
        ax.plot(x, gaussian_kde(pooled)(x), color="black", lw=3, label=f"pooled (n={len(pooled)})")
    ax.set(xlabel=f"confidence ({method}; higher = more confident)", ylabel="density",
           title=f"Confidence distributions: {t[SLM].iloc[0]}, {method}")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


# ---- Figure 5 ------------------------------------------------------------------------------
def calibration_vs_full(transfer_table_df: pd.DataFrame, target=None) -> Figure:
    """Thresholds from other data vs. the target's own (paper Figure 5), one row per target.

    Input: :func:`routelib.routing.calibration.transfer_table` (one slm, llm and method). Left: accuracy
    vs. requested routing ratio for each strategy present (``calibration``, ``pooled``,
    ``single``; a strategy with several ``source`` values gets one line per source) and the
    ground truth (``ground_truth_accuracy``: thresholds chosen on the target itself, black).
    Right: realized vs. requested ratio with the y = x diagonal (exact routing).
    """
    import matplotlib.pyplot as plt
    check_columns(transfer_table_df, (TARGET, STRATEGY, SOURCE, RATIO, REALIZED_RATIO, ACCURACY,
                                      GROUND_TRUTH), "transfer table")
    t = transfer_table_df
    for column in (SLM, LLM, METHOD):
        if column in t:
            t = _pick(t, column, None, "transfer table")
    t = _pick(t, TARGET, target, "transfer table") if target is not None else t
    targets = list(dict.fromkeys(t[TARGET]))
    if not targets:
        raise ValueError("the transfer table is empty")
    fig, axes = plt.subplots(len(targets), 2, figsize=(8, 3.2 * len(targets)), squeeze=False,
                             layout="constrained")
    for (acc_ax, real_ax), name in zip(axes, targets):
        d = t[t[TARGET] == name]
        truth = d.drop_duplicates(RATIO).sort_values(RATIO)
        acc_ax.plot(100 * truth[RATIO], 100 * truth[GROUND_TRUTH], color="black", lw=2.2,
                    label="ground truth (own data)")
        strategies = [s for s in STRATEGIES if s in set(d[STRATEGY])]
        strategies += [s for s in dict.fromkeys(d[STRATEGY]) if s not in STRATEGIES]
        for strategy in strategies:
            rows = d[d[STRATEGY] == strategy]
            sources = list(dict.fromkeys(rows[SOURCE]))
            for source in sources:
                c = rows[rows[SOURCE] == source].sort_values(RATIO)
                label = strategy if len(sources) == 1 else f"{strategy} ({source})"
                style = STRATEGY_STYLE.get(strategy, dict(color="tab:gray", ls="-."))
                acc_ax.plot(100 * c[RATIO], 100 * c[ACCURACY], lw=1.5, label=label, **style)
                real_ax.plot(100 * c[RATIO], 100 * c[REALIZED_RATIO], lw=1.5, label=label,
                             **style)
        real_ax.plot([0, 100], [0, 100], color="black", lw=1, label="requested = realized")
        acc_ax.set(title=f"target: {name}", xlabel="requested routing ratio (%)",
                   ylabel="accuracy (%)")
        real_ax.set(title=f"target: {name}", xlabel="requested routing ratio (%)",
                    ylabel="realized routing ratio (%)", xlim=(0, 100), ylim=(0, 100))
        real_ax.set_aspect("equal")
    axes[0][0].legend(fontsize="small")
    first = t.iloc[0]
    who = ", ".join(str(first[c]) for c in (SLM, LLM, METHOD) if c in t)
    fig.suptitle(f"Thresholds transferred to unseen data vs. the target's own\n({who})")
    return fig


def probe_learning_curves(curve: pd.DataFrame) -> Figure:
    """In-domain probe AUROC vs. train items, one panel per SLM, one line per dataset.

    Input: :func:`routelib.uq.learning_curve.learning_curve_table`. Points without an AUROC (one
    class among the train or the evaluation items) are left out; the dashed line is chance."""
    import matplotlib.pyplot as plt
    check_columns(curve, ("slm", DATASET, "n_train", AUROC), "learning-curve table")
    slms = list(dict.fromkeys(curve["slm"]))
    if not slms:
        raise ValueError("the learning-curve table is empty")
    fig, axes = plt.subplots(1, len(slms), figsize=(5 * len(slms), 3.6), squeeze=False,
                             layout="constrained", sharey=True)
    for ax, slm in zip(axes[0], slms):
        d = curve[(curve["slm"] == slm) & curve[AUROC].notna()]
        for ds in dict.fromkeys(curve[DATASET]):
            c = d[d[DATASET] == ds].sort_values("n_train")
            if len(c):
                ax.plot(c["n_train"], c[AUROC], marker="o", lw=1.5, label=ds)
        ax.axhline(0.5, color="black", lw=1, ls="--")
        ax.set_xscale("log")
        ax.set(title=slm, xlabel="train items (log scale)", ylabel="probe AUROC (eval items)")
    axes[0][0].legend(fontsize="small")
    fig.suptitle("Trained probe: AUROC vs. number of train items")
    return fig
