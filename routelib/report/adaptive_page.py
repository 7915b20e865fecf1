"""``python -m routelib.report.adaptive_page``: the adaptive-threshold study on the committed reference
run, written to ``docs/adaptive.md`` with ``docs/figures/adaptive_*.png`` (every number computed
here, from the cached confidence tables and LLM answers; no model is loaded).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from routelib import config
from routelib.report import adaptive_published
from routelib.report.adaptive_md import _by_n, _grid, _pct, _pts, _signed, _table, _than
from routelib.report.adaptive_plots import plot_drift, plot_ratio_error
from routelib.routing import study
from routelib.routing.adaptive import dkw_epsilon
from routelib.routing.adaptive_sim import (ADAPTIVE, DriftSettings, SimSettings, simulate_adaptive,
                                           simulate_drift)

SLMS = ("smollm2-135m", "gemma3-270m")
LLM_TIER = config.REFERENCE_LLM
METHODS = ("perplexity", "avg_token_prob", "ood_probe", "verbal_1s")
REPORT_NS = (0, 10, 25, 50, 100, 150)  # n = 200 would leave no rest of a 200-item target
FIGURE, DRIFT_FIGURE = "adaptive_ratio_error.png", "adaptive_drift.png"
ROOT = Path(__file__).resolve().parents[2]


def load_reference(slms=SLMS, llm: str = LLM_TIER, limit: int = config.LIMIT):
    """(confidence table of the SLMs, LLM table) of the committed reference run."""
    folder = config.cache_dir() / "confidence"
    conf = pd.concat([pd.read_parquet(folder / f"{s}__n{limit}.parquet") for s in slms],
                     ignore_index=True)
    datasets = sorted(set(conf["dataset"]))
    return conf, study.llm_answers(llm, datasets, limit=limit, cached_only=True)


def run_reference(conf, llm_table, methods=METHODS, settings=None, drift_settings=None):
    """(simulation, drift simulation) for every SLM of ``conf`` and every method."""
    s = settings or SimSettings(ns=REPORT_NS)
    d = drift_settings or DriftSettings()
    slms = list(dict.fromkeys(conf["slm"]))
    sim = pd.concat([simulate_adaptive(conf, llm_table, slm, m, settings=s)
                     for slm in slms for m in methods], ignore_index=True)
    drift = pd.concat([simulate_drift(conf, slm, m, settings=d) for slm in slms for m in methods],
                      ignore_index=True)
    return sim, drift


# ---- markdown --------------------------------------------------------------------------------
def _headline(sim: pd.DataFrame, s: SimSettings) -> list[str]:
    sim = sim.assign(gap=sim["accuracy"] - sim["ground_truth_accuracy"])
    n0, n50 = sim[sim["n"] == 0], sim[sim["n"] == 50]
    static = {k: n0.loc[n0["strategy"] == k, "ratio_error"].mean()
              for k in ("calibration", "pooled", "single", "calibration_ties")}
    ad, cal0 = n50[n50["strategy"] == "adaptive_ties"], n0[n0["strategy"] == "calibration"]
    out = ["## Headline\n",
           f"- Static rules (n = 0), mean |realized − requested ratio| over SLMs, methods, "
           f"targets, ratios and orders: calibration set (the paper's) "
           f"{_pts(static['calibration'])} points, pooled other datasets "
           f"{_pts(static['pooled'])}, one other dataset "
           f"{_pts(static['single'])}; the calibration set with ties randomized "
           f"{_pts(static['calibration_ties'])}.",
           f"- Adaptive with ties randomized after n = 50 unlabeled target queries: "
           f"{_pts(ad['ratio_error'].mean())} points; the DKW half-width at n = 50 is "
           f"±{_pts(dkw_epsilon(50, s.delta))} points (delta = {s.delta:g}); the realized ratio "
           f"on the rest of the target fell inside it in {100 * ad['in_band'].mean():.1f}% of "
           f"(target, order, ratio) cases, inside the finite-rest band in "
           f"{100 * ad['in_band_finite'].mean():.1f}%.",
           f"- Accuracy minus the target's own curve at the requested ratio (same items), mean "
           f"(mean absolute): static calibration set {_signed(cal0['gap'].mean())} points "
           f"({_pts(cal0['gap'].abs().mean())}), adaptive with ties randomized at n = 50 "
           f"{_signed(ad['gap'].mean())} ({_pts(ad['gap'].abs().mean())}).", ""]
    per = sim[sim["strategy"].isin(["calibration", "adaptive", "adaptive_ties"])]
    t = _by_n(per, ["method", "strategy"])
    out += ["Mean error (points) per method, both SLMs:\n", *_table(t)]
    return out


def _coverage(sim: pd.DataFrame, s: SimSettings) -> list[str]:
    a = sim[sim["strategy"].isin(ADAPTIVE) & (sim["n"] > 0)]
    ns = sorted(a["n"].unique())
    band = pd.DataFrame([[dkw_epsilon(n, s.delta) for n in ns]], columns=[f"n={n}" for n in ns],
                        index=pd.Index(["DKW half-width (points)"], name="band"))
    big = a[(a["n"] == max(ns)) & (a["strategy"] == "adaptive_ties")]
    note = (f"At n = {max(ns)} only {int(big['n_rest'].min())}–{int(big['n_rest'].max())} items "
            f"are left in a target: adaptive (ties randomized) falls inside eps(n) in "
            f"{_pct(big['in_band'].mean())} of cases there, because eps(n) bounds the routing "
            f"probability, not the share of a small finite rest; the finite-rest band covers "
            f"{_pct(big['in_band_finite'].mean())}. Cases are not independent (the same targets "
            "and ratios recur across orders), so these shares are descriptive.\n")
    return ["## DKW band coverage\n",
            f"Share of (target, order, ratio) cases whose realized ratio on the rest of the target "
            f"is within eps(n) = sqrt(ln(2/delta)/(2n)) of the requested one (delta = "
            f"{s.delta:g}; it should be at least {100 * (1 - s.delta):.0f}% where the order is "
            "exchangeable and the rule can realize r), then within the finite-rest band "
            "eps(n, delta/2) + eps(m, delta/2) (m = items left in the target):\n",
            *_table(band),
            *_table(_by_n(a, ["method", "strategy"], "in_band"), _pct),
            *_table(_by_n(a, ["method", "strategy"], "in_band_finite"), _pct), note]


def _small_n(sim: pd.DataFrame, s: SimSettings) -> list[str]:
    keys = ["slm", "method", "target", "ratio", "n"]
    err = sim.groupby(keys + ["strategy"])["ratio_error"].mean().unstack("strategy")
    lines = ["### Small n\n"]
    for n in (n for n in (10, 25) if n in err.index.get_level_values("n")):
        e = err.xs(n, level="n")
        lines.append(f"- n = {n}: the DKW half-width is ±{_pts(dkw_epsilon(n, s.delta))} points. "
                     f"Adaptive (ties randomized) misses by more than the paper's static "
                     f"calibration set in {_pct((e['adaptive_ties'] > e['calibration']).mean())} "
                     f"of (SLM, method, target, ratio) cells (errors averaged over orders), and "
                     f"by more than the static set with ties randomized in "
                     f"{_pct((e['adaptive_ties'] > e['calibration_ties']).mean())}.")
    if 10 not in err.index.get_level_values("n"):
        return lines + [""]
    one = sim[sim["n"] == 10].pivot_table(index=["slm", "method", "target", "ratio", "order"],
                                          columns="strategy", values="ratio_error")
    lines.append(f"- In a single arrival order (no averaging), adaptation at n = 10 misses by more "
                 f"than the static set (ties randomized in both) in "
                 f"{_pct((one['adaptive_ties'] > one['calibration_ties']).mean())} of (SLM, "
                 f"method, target, ratio, order) cases; its 95th-percentile error is "
                 f"{_pts(one['adaptive_ties'].quantile(0.95))} points (static set: "
                 f"{_pts(one['calibration_ties'].quantile(0.95))}).")
    e10 = err.xs(10, level="n")
    t = e10.groupby(["slm", "method"])[["calibration_ties", "adaptive_ties"]].mean()
    worse = (e10["adaptive_ties"] > e10["calibration_ties"]).groupby(["slm", "method"]).mean()
    t["cells where adaptive is worse"] = worse.map(_pct)
    return lines + ["", "At n = 10, per (SLM, method): mean error (points) of the static set and "
                    "of adaptation (ties randomized in both), and the share of (target, ratio) "
                    "cells where adaptation misses by more:\n", *_table(t)]


def _ties(sim: pd.DataFrame, conf: pd.DataFrame | None) -> list[str]:
    lines = ["### Discrete confidences (ties)\n"]
    if conf is not None:
        for (slm, method), g in conf[conf["confidence"].notna()].groupby(["slm", "method"]):
            if method != "verbal_1s":
                continue
            modal = g.groupby("dataset")["confidence"].agg(
                lambda c: c.value_counts(normalize=True).iloc[0])
            lines.append(f"- {slm}, {method}: the most common confidence value holds "
                         f"{100 * modal.mean():.1f}% of a dataset's items on average "
                         f"(min {100 * modal.min():.1f}%, max {100 * modal.max():.1f}%).")
    v = sim[sim["method"] == "verbal_1s"]
    if v.empty:
        return lines + [""]
    later = v[v["n"] > 0]
    det = later[later["strategy"] == "adaptive"].groupby("n")["ratio_error"].mean()
    rnd = later[later["strategy"] == "adaptive_ties"].groupby("n")["ratio_error"].mean()
    ties0 = v[(v["strategy"] == "calibration_ties") & (v["n"] == 0)]["ratio_error"].mean()
    t = _by_n(v[v["strategy"].isin(["calibration", "calibration_ties", "adaptive",
                                    "adaptive_ties"])], ["slm", "strategy"])
    return lines + [
        "", f"- verbal_1s, both SLMs: the deterministic adaptive threshold misses by "
        f"{_pts(det.min())}–{_pts(det.max())} points over n > 0 and the randomized one by "
        f"{_pts(rnd.min())}–{_pts(rnd.max())} (the deterministic rule's smallest error is "
        f"{_than(det.min(), rnd.max())} the randomized rule's largest): a threshold alone cannot "
        f"split a tie, however many queries it has seen. Randomizing the tie in the static "
        f"calibration set alone (n = 0) gives {_pts(ties0)} points. Mean error (points):\n",
        *_table(t)]


def _drift(drift: pd.DataFrame, d: DriftSettings) -> list[str]:
    err = _by_n(drift, ["method", "variant"])
    cov = _by_n(drift, ["variant"], "in_band")
    m = drift.groupby(["variant", "n"])["ratio_error"].mean()
    h50 = drift[(drift["variant"] == "history") & (drift["n"] == 50)]
    w, before = d.window, max([n for n in d.ns if 0 < n < d.window], default=None)
    text = [f"Every ordered pair (source, target) of datasets of one (SLM, method): the stream is "
            f"all of the source, then the target; {d.orders} orders (seed {d.seed} + k); ties "
            f"randomized; window W = {w}. After 50 target queries the whole-history threshold "
            f"misses by {_pts(h50['ratio_error'].mean())} points on average, and its DKW band "
            f"(which counts every seen query: ±{_pts(h50['band'].mean())} points) covers "
            f"{_pct(h50['in_band'].mean())} of cases: the band assumes one distribution."]
    if w in d.ns and before is not None:
        text.append(f" The window at n = {w} misses by {_pts(m['window', w])} points (target "
                    f"only: {_pts(m['target_only', w])}); at n = {before}, while it still holds "
                    f"source queries, by {_pts(m['window', before])} (target only: "
                    f"{_pts(m['target_only', before])}, whole history: "
                    f"{_pts(m['history', before])}).")
    return ["### Drift\n", "".join(text) + "\n", "Mean error (points):\n", *_table(err),
            "Share inside the DKW band of the n the threshold rests on:\n", *_table(cov, _pct)]


def _dropped(sim: pd.DataFrame, s: SimSettings) -> list[str]:
    """Which (SLM, method) lose targets at larger n (fewer than n + min_rest routable items)."""
    counts = sim.groupby(["slm", "method", "n"])["target"].nunique().unstack("n")
    full = counts.max(axis=1)
    short = [f"{slm} {method}: " + ", ".join(f"n = {n}: {int(c)} of {int(full[slm, method])}"
                                             for n, c in row.items() if c < full[slm, method])
             for (slm, method), row in counts.iterrows() if (row < full[slm, method]).any()]
    if not short:
        return []
    return [f"Targets with fewer than n + {s.min_rest} routable items (discarded verbalized "
            "answers) leave the rows of that n, so a column's mean can move for that reason "
            "alone; targets kept: " + "; ".join(short) + ".\n"]


def _overrouting(gap: pd.DataFrame) -> list[str]:
    """The static rule's accuracy gap split by whether it routed more or less than asked."""
    g = gap[(gap["strategy"] == "calibration") & (gap["n"] == 0)]
    over, under = g[g["realized_ratio"] > g["ratio"]], g[g["realized_ratio"] < g["ratio"]]
    methods = list(dict.fromkeys(g["method"]))
    share = (over.groupby("method").size() / g.groupby("method").size()).reindex(methods)
    t = pd.DataFrame({"routed more than asked (share of cases)": share.fillna(0).map(_pct),
                      "accuracy gap then": over.groupby("method")["gap"].mean().map(_signed),
                      "accuracy gap when it routed less":
                      under.groupby("method")["gap"].mean().map(_signed)}).reindex(methods)
    t.index.name = "method"
    return ["The gap is taken at the *requested* ratio, so a rule that misses the ratio is off "
            "the curve in either direction: routing more than asked pays for extra LLM calls, and "
            "whether a miss gains or loses accuracy depends on the shape of the target's curve. "
            "Adaptation brings the accuracy onto the curve (what a requested ratio promises), "
            "which is not the same as higher accuracy than a rule that missed. The static "
            "calibration set (n = 0), split by the sign of its miss (gap in points):\n",
            *_table(t.fillna("–"))]


def adaptive_markdown(sim: pd.DataFrame, drift: pd.DataFrame | None = None, conf=None,
                      settings: SimSettings | None = None, drift_settings=None,
                      figures=()) -> str:
    """The page: setup, headline, error table, band coverage, accuracy, and where it fails."""
    s, d = settings or SimSettings(ns=REPORT_NS), drift_settings or DriftSettings()
    slms, methods = list(dict.fromkeys(sim["slm"])), list(dict.fromkeys(sim["method"]))
    out = ["# Adaptive thresholds on a new dataset (beyond the paper)\n",
           f"Generated by `python -m routelib.report.adaptive_page` (`routelib.report.adaptive_page."
           f"adaptive_markdown`) from the committed reference run: SLMs {', '.join(slms)}, LLM "
           f"{', '.join(dict.fromkeys(sim['llm']))}, methods {', '.join(methods)}; leave one "
           f"dataset out over {sim['target'].nunique()} datasets; {s.orders} arrival orders per "
           f"target (seed {s.seed} + k); {_grid(sim)}; prior weight "
           f"{s.prior_weight:g} pseudo-observations. Errors are |realized − requested routing "
           "ratio| in percentage points on the rest of the target. Nothing here is typed by "
           "hand.\n", *_dropped(sim, s), *_headline(sim, s)]
    out += [f"![{Path(f).stem}]({f})\n" for f in figures]
    out += ["## Realized-ratio error by strategy (points)\n",
            *_table(_by_n(sim, ["slm", "method", "strategy"])), *_coverage(sim, s)]
    gap = sim.assign(gap=sim["accuracy"] - sim["ground_truth_accuracy"])
    out += ["## Accuracy against the target's own curve\n",
            "Mean of accuracy reached minus the target's own-data curve at the requested ratio "
            "(same items; points; < 0: lost accuracy):\n", *_table(_by_n(gap, ["method",
                                                                            "strategy"], "gap")),
            *_overrouting(gap)]
    out += ["## Where adaptation does not help\n", *_small_n(sim, s), *_ties(sim, conf)]
    if drift is not None:
        out += _drift(drift, d)
    prior = sim[sim["strategy"].isin(["adaptive_ties", "adaptive_prior"])]
    pm = prior.groupby(["strategy", "n"])["ratio_error"].mean()
    n_cmp = [n for n in (10, 50) if n in pm.index.get_level_values("n")] or \
        sorted(set(pm.index.get_level_values("n")))[-1:]
    out += ["### The calibration prior\n",
            f"With the calibration set mixed in as {s.prior_weight:g} pseudo-observations "
            f"(ties randomized in both): " + "; ".join(
                f"at n = {n} the error is {_pts(pm['adaptive_prior', n])} points, "
                f"{_than(pm['adaptive_prior', n], pm['adaptive_ties', n])} without the prior "
                f"({_pts(pm['adaptive_ties', n])})" for n in n_cmp) + ". The prior pulls the "
            "threshold toward the other datasets' distribution, the one the target shifted away "
            "from. Mean error (points), all SLMs and methods:\n",
            *_table(_by_n(prior, ["strategy"]))]
    return "\n".join(out)


def write(docs: Path = ROOT / "docs", conf=None, llm_table=None, methods=METHODS,
          published: bool = True) -> str:
    """Run the study and write ``docs/adaptive.md`` and its figures; returns the page. With
    ``published``, the section on the published MMLU-Pro outputs follows
    (:mod:`routelib.report.adaptive_published`, read from its saved part)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if conf is None or llm_table is None:
        conf, llm_table = load_reference()
    sim, drift = run_reference(conf, llm_table, methods)
    (docs / "figures").mkdir(parents=True, exist_ok=True)
    for name, fig in ((FIGURE, plot_ratio_error(sim)), (DRIFT_FIGURE, plot_drift(drift))):
        fig.savefig(docs / "figures" / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
    page = adaptive_markdown(sim, drift, conf, figures=[f"figures/{FIGURE}",
                                                        f"figures/{DRIFT_FIGURE}"])
    if published:
        page += "\n" + "\n".join(adaptive_published.write_section(docs))
    (docs / "adaptive.md").write_text(page, encoding="utf-8")
    return page


if __name__ == "__main__":
    np.seterr(all="ignore")
    write()
