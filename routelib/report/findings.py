"""The book's findings page, rendered from the committed cache: every number on it is computed
here, never typed by hand.

:func:`facts` computes the numbers (AUROC means and ranks, routing areas, relative accuracy,
distribution-shift variance shares, transfer errors, judge agreement) as formatted strings under
flat names such as ``rank__smollm2_135m__trained_probe``; :func:`render` fills the template
``book/findings.md.in`` (prose and verdicts, written by people) with them and fails on a name
the facts lack. ``python -m routelib findings`` writes ``book/findings.md``;
``tests/test_committed_results.py`` renders it again and compares.
"""
from __future__ import annotations

import re
import string
from pathlib import Path

import numpy as np
import pandas as pd

from routelib import config
from routelib.models.registry import DEFAULT_LLM
from routelib.report import book, findings_tables, findings_verdicts, uq_page as uq_report
from routelib.routing import (calibration as cal, distributions as D, saved, simulation as R, study,
                              tables)
from routelib.uq import metrics
from routelib.uq.confidence import PROBE_TRAIN_LIMIT

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "book" / "findings.md.in"
OUTPUT = REPO_ROOT / "book" / "findings.md"
TOP = 0.2  # "most confident" = the top 20% (paper Fig. 3 reads the curve there)


def tag(name: str) -> str:
    """A model or method name as part of a fact name: ``smollm2-135m`` -> ``smollm2_135m``."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_")


def _f(x, digits: int = 3) -> str:
    return study.fmt(float(x) if x is not None else None, digits)


def _pct(x) -> str:
    return "–" if x is None or np.isnan(x) else f"{100 * x:.1f}%"


def facts(slms, llm: str = DEFAULT_LLM, limit: int | None = config.LIMIT,
          judge_name: str | None = DEFAULT_LLM, n_boot: int = 1000,
          judge_limit: int | None = config.JUDGE_LIMIT) -> dict[str, str]:
    """Every number of the findings page, formatted, from the cache (no model is loaded): the
    tables of the one loader (:func:`routelib.routing.tables.load`) and the saved routing study
    (:class:`routelib.routing.saved.RoutingStudy`). ``incomplete``: what the loader left out
    ("" when nothing), which :func:`render` prints under the title."""
    t = tables.load(slms, llm, limit=limit).require_rows()
    rs = saved.RoutingStudy(t)
    out: dict[str, str] = {"slms": ", ".join(slms), "llm": llm, "limit": str(limit),
                           "train_limit": f"{PROBE_TRAIN_LIMIT:,}",
                           "judge_limit": str(judge_limit), "incomplete": "; ".join(t.notes())}
    out["llm_accuracy"] = _pct(t.llm[R.CORRECT].mean())
    auc = metrics.auroc_table(t.conf, ci=True, n_boot=n_boot)
    out.update(_alignment(t.conf, auc))
    out.update(_routing(rs.routing.means))
    out.update(_relative(rs.routing.relative))
    out.update(_shift(t.conf))
    out.update(_transfer(rs.transfer.means, rs.transfer.spread))
    out.update(findings_verdicts.verdict_facts(auc, rs.routing.summary, t.conf, n_boot,
                                               transfer_spread=_spread(rs)))
    out.update(_tables(auc, rs))
    if judge_name:
        out.update(_judge(slms, t.conf, judge_name, judge_limit))
    return out


def _tables(auc: pd.DataFrame, rs: saved.RoutingStudy) -> dict[str, str]:
    """The page's per-claim tables (:mod:`routelib.report.findings_tables`)."""
    means = rs.routing.means
    out = {"table_alignment": findings_tables.alignment(auc),
           "table_confident": findings_tables.confident(rs.routing.relative, TOP)}
    for slm in dict.fromkeys(means[R.SLM]):
        out[f"table_routing__{tag(slm)}"] = findings_tables.routing(means, slm)
    try:
        out["table_transfer"] = findings_tables.transfer(rs.transfer.means, _spread(rs))
    except cal.CalibrationError:
        out["table_transfer"] = "–"
    return out


def _spread(rs: saved.RoutingStudy) -> pd.DataFrame | None:
    try:
        return rs.transfer.spread
    except cal.CalibrationError:
        return None


def _extremes(g: pd.DataFrame, s: str) -> dict[str, str]:
    """The lowest and highest mean AUROC of one SLM's methods; '–' when no method is
    estimable anywhere (a small run: every setting under MIN_CORRECT / MIN_WRONG)."""
    known = g[g["mean_auroc"].notna()]
    if known.empty:
        return {f"auroc_{k}{x}__{s}": "–" for k in ("min", "max") for x in ("", "_method")}
    lo, hi = known.loc[known["mean_auroc"].idxmin()], known.loc[known["mean_auroc"].idxmax()]
    return {f"auroc_min__{s}": _f(lo["mean_auroc"]), f"auroc_min_method__{s}": lo["method"],
            f"auroc_max__{s}": _f(hi["mean_auroc"]), f"auroc_max_method__{s}": hi["method"]}


def _alignment(conf: pd.DataFrame, auc: pd.DataFrame) -> dict[str, str]:
    """Fig. 1: AUROC means, extremes and ranks per SLM and method (``auc``: the AUROC table
    with intervals)."""
    out = {}
    for slm, g in uq_report.method_ranking(auc).groupby(R.SLM, sort=False):
        s = tag(slm)
        out[f"datasets__{s}"] = str(conf.loc[conf[R.SLM] == slm, R.DATASET].nunique())
        out.update(_extremes(g, s))
        ordered = g[g["mean_rank"].notna()].sort_values(["mean_rank", "method"])
        unranked = g.loc[g["mean_rank"].isna(), "method"].tolist()
        out[f"rank_order__{s}"] = ", ".join(
            f"{r['method']} {_f(r['mean_rank'], 2)}" for _, r in ordered.iterrows()) + (
            f"; not ranked (estimable on fewer than half the datasets): {', '.join(unranked)}"
            if unranked else "")
        out[f"best__{s}"], out[f"worst__{s}"] = (ordered.iloc[0]["method"],
                                                  ordered.iloc[-1]["method"]) if len(ordered) \
            else ("–", "–")
        for _, r in g.iterrows():
            m = tag(r["method"])
            out[f"rank__{s}__{m}"] = _f(r["mean_rank"], 2)
            out[f"auroc__{s}__{m}"] = _f(r["mean_auroc"])
            out[f"above_chance__{s}__{m}"] = str(int(r["n_above_chance"]))
        v1 = uq_report.verbal_1s_accuracy(conf[conf[R.SLM] == slm])
        if len(v1):
            out[f"verbal_1s_acc__{s}"] = _pct(v1["verbal_1s_accuracy"].mean())
            out[f"greedy_acc__{s}"] = _pct(v1["greedy_accuracy"].mean())
        flat = auc[(auc[R.SLM] == slm) & (auc[R.METHOD] == "verbal_1s")]
        if len(flat) and "ci_low" in flat:
            const = ((flat["ci_high"] - flat["ci_low"]).abs() < 1e-12) | flat["auroc"].isna()
            out[f"verbal_1s_constant__{s}"] = str(int(const.sum()))
    return out


def _routing(means: pd.DataFrame) -> dict[str, str]:
    """Fig. 2: routing areas, ratios to reach 95% of the LLM, and the order of the methods,
    each method against its *own* random and oracle routers (on exactly the items it scored,
    ``items``); never against a baseline pooled over methods."""
    out = {}
    for _, r in means.iterrows():
        s, m = tag(r[R.SLM]), tag(r[R.METHOD])
        out[f"auc__{s}__{m}"] = _f(r["auc_uq"])
        out[f"beats__{s}__{m}"] = str(int(r["beats_random"]))
        out[f"auc_random__{s}__{m}"] = _f(r["auc_random"])
        out[f"auc_oracle__{s}__{m}"] = _f(r["auc_oracle"])
        out[f"gain__{s}__{m}"] = f"{r['auc_uq'] - r['auc_random']:+.3f}"
        out[f"items__{s}__{m}"] = str(int(r["items"]))
        out[f"ratio95__{s}__{m}"] = _pct(r["ratio_95_uq"])
        out[f"ratio95_random__{s}__{m}"] = _pct(r["ratio_95_random"])
    for slm, g in means.groupby(R.SLM, sort=False):
        s = tag(slm)
        # the references of the method that scored the most items (nearly all of them)
        ref = g.loc[g["items"].idxmax()]
        out[f"ref_method__{s}"], out[f"ref_items__{s}"] = ref[R.METHOD], str(int(ref["items"]))
        out[f"auc_oracle__{s}"], out[f"slm_accuracy__{s}"] = _f(ref["auc_oracle"]), \
            _pct(ref["slm_accuracy"])
        out[f"auc_random__{s}"] = _f(ref["auc_random"])
        out[f"llm_accuracy__{s}"] = _pct(ref["llm_accuracy"])
        gain = g["auc_uq"] - g["auc_random"]
        best = g.loc[gain.idxmax()]
        out[f"gain_best_method__{s}"] = best[R.METHOD]
        out[f"gain_best__{s}"] = f"{gain.max():+.3f}"
        out[f"routing_order__{s}"] = ", ".join(
            f"{r[R.METHOD]} {_f(r['auc_uq'])} vs its random {_f(r['auc_random'])} "
            f"({int(r['beats_random'])}/{int(r['datasets'])} datasets, N = {int(r['items'])})"
            for _, r in g.assign(_gain=gain).sort_values("_gain", ascending=False).iterrows())
    return out


def _relative(topk: pd.DataFrame) -> dict[str, str]:
    """Fig. 3: accuracy and relative accuracy on the most confident :data:`TOP` vs. all."""
    both = findings_tables.top_vs_all(topk, TOP)
    out = {"top_share": f"{TOP:.0%}"}
    for (slm, m), g in both.groupby([R.SLM, R.METHOD], sort=False):
        s, t = tag(slm), tag(m)
        out[f"top_acc__{s}__{t}"] = _pct(g["slm_accuracy_top"].mean())
        out[f"all_acc__{s}__{t}"] = _pct(g["slm_accuracy_all"].mean())
        out[f"top_rel__{s}__{t}"] = _f(g["slm_accuracy_top"].mean()
                                       / g["llm_accuracy_top"].mean(), 2)
        out[f"all_rel__{s}__{t}"] = _f(g["slm_accuracy_all"].mean()
                                       / g["llm_accuracy_all"].mean(), 2)
        out[f"top_gain_datasets__{s}__{t}"] = \
            f"{int((g['slm_accuracy_top'] > g['slm_accuracy_all']).sum())}/{len(g)}"
    return out


def _shift(conf: pd.DataFrame) -> dict[str, str]:
    """Fig. 4, Insight 1: variance shares of the shift, and moving the SLM vs. the dataset."""
    routable = study.routable(conf)
    dec = book.decompose(D.distribution_shift(routable, reference="pooled"))
    out = {"decomposition_scope": dec.attrs.get("note", "")}
    for _, r in dec.iterrows():
        out[f"share__{tag(str(r[D.FACTOR]))}"] = _pct(r[D.SHARE])
    # the direct comparison: move the SLM (same method and data) vs. move the dataset (same
    # SLM and method); KS is unchanged by a method's scale
    across_slm = D.slm_shift(routable)
    across_ds = D.distribution_shift(routable, reference="others")
    if len(across_slm):
        out["ks_across_slms"] = _f(across_slm[D.KS].mean())
        out["ks_across_datasets"] = _f(across_ds[D.KS].mean())
        per_m = across_slm.groupby(R.METHOD)[D.KS].mean()
        per_d = across_ds.groupby(R.METHOD)[D.KS].mean()
        both = pd.concat([per_m.rename("slm"), per_d.rename("ds")], axis=1).dropna()
        out["ks_slm_wins"] = f"{int((both['slm'] > both['ds']).sum())}/{len(both)}"
    return out


def _transfer(means: pd.DataFrame, spread: pd.DataFrame) -> dict[str, str]:
    """Section 4: mean transfer errors per SLM, method and strategy; the mean over targets of
    each strategy's spread (sd over runs); on how many targets the calibration set's error is
    below the plain random sample's."""
    out = {}
    for _, r in means.iterrows():
        s, m, st = tag(r[R.SLM]), tag(r[R.METHOD]), r[cal.STRATEGY]
        out[f"transfer__{s}__{m}__{st}"] = _f(r["mean_abs_ratio_error"])
        out[f"transfer_max__{s}__{m}__{st}"] = _f(r["max_abs_ratio_error"])
        out[f"transfer_gap__{s}__{m}__{st}"] = _f(r["mean_accuracy_gap"])
    for (slm, m), g in spread.groupby([R.SLM, R.METHOD], sort=False):
        s, t = tag(slm), tag(m)
        for st, h in g.groupby(cal.STRATEGY, sort=False):
            out[f"transfer_sd__{s}__{t}__{st}"] = _f(h["error_sd"].mean())
        w = g.pivot_table(index="target", columns=cal.STRATEGY, values="error")
        if {"calibration", "random"} <= set(w.columns):
            out[f"cal_beats_random__{s}__{t}"] = \
                f"{int((w['calibration'] < w['random']).sum())}/{len(w)}"
    return out


def _judge(slms, conf: pd.DataFrame, judge_name: str, judge_limit) -> dict[str, str]:
    """Grading: the LLM judge against the rule-based grader, per SLM whose verdicts are
    cached."""
    from routelib.report import judge
    out = {}
    for slm in slms:
        try:
            t = judge.judge_table(slm, judge_name, limit=judge_limit, cached_only=True,
                                  progress=False)
        except LookupError:
            continue
        a = judge.agreement(t)
        r = a[a["dataset"] == "all"].iloc[0]
        s = tag(slm)
        out[f"judge_items__{s}"] = str(int(r["items"]))
        out[f"judge_discarded__{s}"] = str(int(r["discarded"]))
        out[f"judge_kappa__{s}"] = _f(r["kappa"], 2)
        out[f"judge_agreement__{s}"] = _pct(r["agreement"])
        out[f"judge_rule_acc__{s}"] = _pct(r["rule_accuracy"])
        out[f"judge_judge_acc__{s}"] = _pct(r["judge_accuracy"])
        out[f"judge_judge_only__{s}"] = str(int(r["judge_only"]))
        out[f"judge_rule_only__{s}"] = str(int(r["rule_only"]))
        ab = judge.auroc_by_grader(conf[conf[R.SLM] == slm], t)
        d = ab["delta"].astype(float).abs()
        out[f"judge_auroc_shift__{s}"] = _f(d.mean())
        out[f"judge_auroc_shift_max__{s}"] = _f(d.max())
    return out


class _Strict(dict):
    def __missing__(self, key):
        raise KeyError(f"the findings template uses {{{key}}}, which the facts lack")


def fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def render(facts_: dict[str, str], template: Path = TEMPLATE) -> str:
    """The template with every ``{name}`` replaced by its fact (``{{``/``}}`` for braces); when
    the loader left something out (``facts_["incomplete"]``), an "Incomplete cache" note under
    the title names it."""
    text = template.read_text(encoding="utf-8").format_map(_Strict(facts_))
    if facts_.get("incomplete"):
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n> **Incomplete cache:** {facts_['incomplete']}\n{rest}"
    return text
