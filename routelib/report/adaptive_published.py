"""The adaptive-threshold study on the published MMLU-Pro outputs (:mod:`routelib.uq.published`),
the second test bed of ``docs/adaptive.md``: the same simulation
(:func:`routelib.routing.adaptive_sim.simulate_adaptive`, leave one of the 14 categories out),
computed once and saved as a cache part (:func:`routelib.routing.adaptive_saved.saved_simulation`),
then a figure, tables and sentences whose every number comes from that part.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from routelib.report.adaptive_md import _by_n, _grid, _pct, _pts, _signed, _table, _than
from routelib.report.adaptive_plots import plot_ratio_error
from routelib.routing.adaptive import dkw_epsilon
from routelib.routing.adaptive_saved import saved_simulation
from routelib.routing.adaptive_sim import RATIOS, SimSettings
from routelib.uq import published

SLMS = published.PAPER_SLMS
LLM_TIER = "llama-3.1-70b-instruct-turbo"   # the paper's open LLM
METHODS = published.METHODS
NS = (0, 10, 25, 50, 100, 200, 300)          # 300 leaves 81 items of the smallest category
ORDERS = 10
FIGURE = "adaptive_published.png"
FIGURE_STRATEGIES = ("calibration", "pooled", "single", "calibration_ties", "adaptive",
                     "adaptive_ties")
COMMAND = "python -m routelib.report.adaptive_page"


def settings() -> SimSettings:
    return SimSettings(ns=NS, orders=ORDERS, llm=LLM_TIER)


def available(directory=None) -> bool:
    """Are the published files there (the section is left out, and says so, when not)?"""
    return (published.published_dir(directory) / published.SUBDIR).is_dir()


def load(directory=None, download: bool = False, root: Path | None = None):
    """(saved parts ``summary`` and ``orders``, the confidence table) of the published outputs."""
    conf, llm = published.tables(SLMS, [LLM_TIER], METHODS, None, directory, download)
    parts = saved_simulation(conf, llm, SLMS, METHODS, settings(), RATIOS, root,
                             label="published MMLU-Pro outputs (routelib.uq.published)")
    return parts, conf


def figure(summary: pd.DataFrame, delta: float = 0.05):
    return plot_ratio_error(summary, list(FIGURE_STRATEGIES), delta)


# ---- sentences -------------------------------------------------------------------------------
def _mean(summary: pd.DataFrame, strategy: str, n: int, method: str | None = None) -> float:
    s = summary[(summary["strategy"] == strategy) & (summary["n"] == n)]
    return s[s["method"] == method]["ratio_error"].mean() if method else s["ratio_error"].mean()


def _gap(rows: pd.DataFrame) -> float:
    return (rows["accuracy"] - rows["ground_truth_accuracy"]).mean()


def _headline(summary: pd.DataFrame, s: SimSettings) -> list[str]:
    per = []
    for m in dict.fromkeys(summary["method"]):
        per.append(f"{m}: static calibration set {_pts(_mean(summary, 'calibration', 0, m))}, "
                   f"with ties randomized {_pts(_mean(summary, 'calibration_ties', 0, m))}, "
                   f"adaptive (ties randomized) after n = 50 "
                   f"{_pts(_mean(summary, 'adaptive_ties', 50, m))}")
    a50 = summary[(summary["strategy"] == "adaptive_ties") & (summary["n"] == 50)]
    cal0 = summary[(summary["strategy"] == "calibration") & (summary["n"] == 0)]
    return [
        f"- Static rules (n = 0), mean |realized − requested ratio| over SLMs, methods, "
        f"categories, ratios and orders: calibration set {_pts(_mean(summary, 'calibration', 0))} "
        f"points, pooled other categories {_pts(_mean(summary, 'pooled', 0))}, one other "
        f"category {_pts(_mean(summary, 'single', 0))}; calibration set with ties randomized "
        f"{_pts(_mean(summary, 'calibration_ties', 0))}. Adaptive with ties randomized after "
        f"n = 50: {_pts(a50['ratio_error'].mean())} (DKW half-width ±"
        f"{_pts(dkw_epsilon(50, s.delta))}).",
        "- Per method (points): " + "; ".join(per) + ".",
        f"- Accuracy minus the category's own curve at the requested ratio: static calibration "
        f"set {_signed(_gap(cal0))} points, adaptive (ties randomized) at n = 50 "
        f"{_signed(_gap(a50))}.", ""]


def _coverage(summary: pd.DataFrame, s: SimSettings) -> list[str]:
    a = summary[(summary["strategy"] == "adaptive_ties") & (summary["n"] > 0)]
    ns = sorted(a["n"].unique())
    band = pd.DataFrame([[dkw_epsilon(n, s.delta) for n in ns]], columns=[f"n={n}" for n in ns],
                        index=pd.Index(["DKW half-width (points)"], name="band"))
    rest = a[a["n"] == max(ns)]["n_rest"]
    return ["### DKW band coverage (published)\n",
            f"Share of (SLM, category, order, ratio) cases, adaptive with ties randomized, whose "
            f"realized ratio on the rest of the category is within eps(n) (delta = {s.delta:g}; "
            f"at least {100 * (1 - s.delta):.0f}% expected), then within the finite-rest band "
            f"(at n = {max(ns)}, {int(rest.min())}–{int(rest.max())} items are left):\n",
            *_table(band), *_table(_by_n(a, ["method"], "in_band"), _pct),
            *_table(_by_n(a, ["method"], "in_band_finite"), _pct)]


def _break_even(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (slm, method): the static set's error (ties randomized), adaptation's at each n, and
    the first n at which adaptation's mean error is below the static one."""
    static = summary[(summary["strategy"] == "calibration_ties") & (summary["n"] == 0)]
    t = _by_n(summary[(summary["strategy"] == "adaptive_ties") & (summary["n"] > 0)],
              ["slm", "method"])
    base = static.groupby(["slm", "method"], sort=False)["ratio_error"].mean()
    first = []
    for key, row in t.iterrows():
        below = [c for c, v in row.items() if v < base[key]]
        first.append(below[0].removeprefix("n=") if below else "never")
    t.insert(0, "static, ties randomized", base.reindex(t.index))
    t["adaptation first better at n"] = first
    return t


def _no_help(summary: pd.DataFrame, orders: pd.DataFrame, conf) -> list[str]:
    keys = ["slm", "method", "target", "ratio"]
    cell = summary[summary["n"] == 10].pivot_table(index=keys, columns="strategy",
                                                   values="ratio_error")
    one = orders[orders["n"] == 10].pivot_table(index=keys + ["order"], columns="strategy",
                                                values="ratio_error")
    be = _break_even(summary)
    never = [f"{a} {b}" for (a, b), v in be["adaptation first better at n"].items()
             if v == "never"]
    v = summary[summary["method"] == "verbal_1s"]
    det = v[(v["strategy"] == "adaptive") & (v["n"] > 0)].groupby("n")["ratio_error"].mean()
    rnd = v[(v["strategy"] == "adaptive_ties") & (v["n"] > 0)].groupby("n")["ratio_error"].mean()
    lines = ["### Where adaptation does not help (published)\n",
             f"- Small n: at n = 10 (DKW half-width ±{_pts(dkw_epsilon(10))} points) adaptation "
             f"with ties randomized misses by more than the static calibration set with ties "
             f"randomized in {_pct((cell['adaptive_ties'] > cell['calibration_ties']).mean())} of "
             f"(SLM, method, category, ratio) cells (errors averaged over orders) and in "
             f"{_pct((one['adaptive_ties'] > one['calibration_ties']).mean())} of single-order "
             f"cases; its 95th-percentile single-order error is "
             f"{_pts(one['adaptive_ties'].quantile(0.95))} points (static set: "
             f"{_pts(one['calibration_ties'].quantile(0.95))}).",
             "- (SLM, method) pairs where adaptation never beats the static set with ties "
             "randomized, up to the largest n: " + (", ".join(never) if never else "none") + "."]
    if len(det):
        lines.append(f"- Ties: verbal_1s with the deterministic adaptive rule misses by "
                     f"{_pts(det.min())}–{_pts(det.max())} points over n > 0, with ties "
                     f"randomized by {_pts(rnd.min())}–{_pts(rnd.max())} (the former's smallest "
                     f"error is {_than(det.min(), rnd.max())} the latter's largest): without "
                     "the randomized rule adaptation cannot fix a tie.")
    if conf is not None:
        lines.append(_distinct(conf))
    return lines + ["", "Per (SLM, method): the static set's error with ties randomized (n = 0) "
                    "and adaptation's (ties randomized) after n queries, points:\n", *_table(be)]


def _distinct(conf: pd.DataFrame) -> str:
    kept = conf[conf["confidence"].notna()]
    parts = []
    for method, g in kept.groupby("method", sort=False):
        per = g.groupby("slm")["confidence"].nunique()
        modal = g.groupby(["slm", "dataset"])["confidence"].agg(
            lambda c: c.value_counts(normalize=True).iloc[0])
        span = f"{per.min()}" if per.min() == per.max() else f"{per.min()}–{per.max()}"
        parts.append(f"{method} {span} distinct values per SLM, the most common "
                     f"holding {100 * modal.mean():.1f}% of a category's items on average")
    return "- Discreteness of the signals: " + "; ".join(parts) + "."


def section(summary: pd.DataFrame, orders: pd.DataFrame, conf=None,
            s: SimSettings | None = None, figure_path: str | None = None) -> list[str]:
    """The published section of ``docs/adaptive.md`` (markdown lines)."""
    s = s or settings()
    slms, methods = list(dict.fromkeys(summary["slm"])), list(dict.fromkeys(summary["method"]))
    out = ["## Second test bed: the published MMLU-Pro outputs\n",
           f"The same simulation on the published outputs of real SLMs "
           f"(`routelib.uq.published`: MMLU-Pro, 12,032 items): SLMs "
           f"{', '.join(slms)}; LLM {', '.join(dict.fromkeys(summary['llm']))}; methods "
           f"{', '.join(methods)}; leave one of the {summary['target'].nunique()} categories "
           f"out; {s.orders} arrival orders per category (seed {s.seed} + k); "
           f"{_grid(summary)}; items without a signal (discards) left out. Computed once and "
           "read from the saved part "
           "(`routelib.routing.adaptive_saved`). These files hold no p(True), verbalization-2s, "
           "Jaccard or probe signal, so those methods are not tested here.\n",
           *_headline(summary, s)]
    if figure_path:
        out.append(f"![{Path(figure_path).stem}]({figure_path})\n")
    out += ["### Realized-ratio error by method and strategy (published, points)\n",
            *_table(_by_n(summary, ["method", "strategy"])), *_coverage(summary, s),
            *_no_help(summary, orders, conf)]
    return out


def missing_section(directory=None) -> list[str]:
    return ["## Second test bed: the published MMLU-Pro outputs\n",
            f"Not computed: the published outputs are not at "
            f"{published.published_dir(directory)}/{published.SUBDIR} (set "
            f"{published.ENV}, see routelib.uq.published).\n"]


def write_section(docs: Path, directory=None) -> list[str]:
    """The section, its figure saved as ``docs/figures/`` :data:`FIGURE` (or the note that the
    published files are missing)."""
    import matplotlib.pyplot as plt
    if not available(directory):
        return missing_section(directory)
    parts, conf = load(directory)
    fig = figure(parts["summary"])
    (docs / "figures").mkdir(parents=True, exist_ok=True)
    fig.savefig(docs / "figures" / FIGURE, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return section(parts["summary"], parts["orders"], conf, figure_path=f"figures/{FIGURE}")
