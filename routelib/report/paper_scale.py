"""The paper's analyses on the published MMLU-Pro outputs (:mod:`routelib.uq.published`).

:func:`load` gives chapter 08 the same :class:`routelib.report.book.Cached` bundle the other
chapters get from the embedded run, so every figure and table there comes from the same
routelib functions (no second implementation). The 14 MMLU-Pro categories play the paper's 14
datasets; the six published SLMs of the paper's kinds and its two LLMs are the defaults.

Insight 2 (:func:`transfer_spread`): the embedded study's leave-one-dataset-out transfer
(:func:`routelib.routing.study.transfer_run_errors`, 3 runs from seed 50) of every signal of
every SLM to each LLM, each category the unseen target in turn, judged by the embedded run's
rule (:func:`routelib.report.verdicts.calibration_transfers`; :func:`insight2_spread` counts a
setting once when the LLMs' errors are identical, as the routed share does not depend on the
LLM). It is computed once and stored under ``<cache>/routing_study/published_transfer__<key>/``
(key: the upstream commit and files' sha256, SLMs, LLMs, signals, runs, seeds, ratios and the
routing study's version); the findings page and chapter 08 read it from there. When it is not
stored, ``python -m routelib findings`` (or chapter 08) computes it, printing one line on stderr
first (102 s to 175 s of compute on the project's shared 2-core machine, depending on load).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from routelib import config
from routelib.columns import CONF_COLUMNS, CORRECT, DATASET, DISCARDED, ITEM_ID, LLM, METHOD, SLM
from routelib.report import book
from routelib.report.verdicts import assess, calibration_transfers
from routelib.routing import saved, study
from routelib.routing.calibration import STRATEGIES, STRATEGY, TARGET
from routelib.routing.simulation import DEFAULT_RATIOS, area_under_curve, simulate
from routelib.routing.transfer_runs import run_spread
from routelib.uq import published
from routelib.uq.metrics import auroc_table
from routelib.uq.published import PAPER_LLMS, PAPER_SLMS, tables


def _routing_means(conf: pd.DataFrame, llm: pd.DataFrame) -> pd.DataFrame:
    """Per (slm, llm, method): mean over categories of the areas under accuracy vs routing
    ratio of the uq, oracle and random routers, on each method's non-discarded items."""
    kept = conf[~conf[DISCARDED]]
    frames = []
    for _, g in kept.groupby([SLM, METHOD], sort=False):
        keys = pd.MultiIndex.from_frame(g[[DATASET, ITEM_ID]])
        rows = llm[pd.MultiIndex.from_frame(llm[[DATASET, ITEM_ID]]).isin(keys)]
        frames.append(simulate(g[list(CONF_COLUMNS)], rows))
    sim = pd.concat(frames, ignore_index=True)
    keys = [SLM, LLM, DATASET, METHOD, "router"]
    areas = sim.groupby(keys, sort=False).apply(area_under_curve, include_groups=False)
    areas = areas.rename("auc").reset_index()
    wide = areas.pivot_table(index=[SLM, LLM, METHOD], columns="router", values="auc",
                             aggfunc="mean")
    return wide.rename(columns=lambda r: f"auc_{r}").reset_index()


def first_look(slms: Sequence[str] = PAPER_SLMS, llms: Sequence[str] = PAPER_LLMS,
               methods=None, directory: str | Path | None = None, download: bool = False,
               opener=None) -> pd.DataFrame:
    """Tidy summary per (slm, llm, method): categories with an AUROC, their mean AUROC, SLM
    and LLM accuracy and discard rate over all items, and the mean over categories of the
    routing areas (uq, random, oracle; discarded items left out, as in the paper)."""
    conf, llm = tables(slms, llms, methods, None, directory, download, opener)
    au = auroc_table(conf).groupby([SLM, METHOD], sort=False).agg(
        categories=("auroc", "count"), mean_auroc=("auroc", "mean")).reset_index()
    per = conf.groupby([SLM, METHOD], sort=False).agg(
        items=(CORRECT, "size"), slm_accuracy=(CORRECT, "mean"),
        discard_rate=(DISCARDED, "mean")).reset_index()
    llm_acc = llm.groupby(LLM, sort=False)[CORRECT].mean().rename("llm_accuracy").reset_index()
    out = per.merge(au, on=[SLM, METHOD]).merge(llm_acc, how="cross")
    out = out.merge(_routing_means(conf, llm), on=[SLM, LLM, METHOD], how="left")
    return out[[SLM, LLM, METHOD, "items", "categories", "mean_auroc", "slm_accuracy",
                "llm_accuracy", "discard_rate", "auc_uq", "auc_random", "auc_oracle"]]


UNTESTABLE = ("p_true", "verbal_2s", "jaccard_degree", "trained_probe", "ood_probe",
              "perplexity")  # the paper's methods these files hold no signal for


def load(slms=None, llms=None, methods=None, categories=None, directory=None,
         download: bool = False) -> book.Cached:
    """The published outputs as the chapters' bundle: confidence table of ``slms`` (default
    the six paper kinds) for ``methods`` (default all three signals) on ``categories``
    (default all 14), and the LLM table of ``llms`` (default both paper LLMs)."""
    slms, llms = list(slms or PAPER_SLMS), list(llms or PAPER_LLMS)
    conf, llm = tables(slms, llms, methods, categories, directory, download)
    return book.Cached(conf, llm, ", ".join(llms))


def describe(cached: book.Cached) -> str:
    """What was loaded, its provenance, and what it cannot test (one line each)."""
    prov = published.provenance()
    c, m = cached.conf, cached.llm
    lines = [f"source: {prov['repository']} at commit {prov['commit'][:12]} ({prov['license']}), "
             f"{prov['dataset']}",
             f"SLMs: {', '.join(cached.slms)}",
             f"LLMs: {', '.join(dict.fromkeys(m[LLM]))}",
             f"categories: {c[DATASET].nunique()}, items per SLM: "
             f"{c.groupby(SLM)[ITEM_ID].nunique().min()}",
             f"methods: {', '.join(dict.fromkeys(c[METHOD]))}; discarded rows: "
             f"{int(c[DISCARDED].sum())} of {len(c)}",
             f"not testable with these files: {', '.join(UNTESTABLE)}"]
    return "\n".join(lines)


def verdicts(auroc: pd.DataFrame, summary: pd.DataFrame, cached: book.Cached,
             transfer_spread: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`routelib.report.verdicts.assess` on the published outputs; Insight 2 needs
    ``transfer_spread`` (:func:`insight2_spread` of :func:`transfer_spread`), else it is
    undecided."""
    return assess(auroc, summary, cached.conf, transfer_spread=transfer_spread)


def one_llm(cached: book.Cached, llm: str) -> book.Cached:
    """``cached`` with the LLM table of ``llm`` alone (calibration transfer takes one LLM)."""
    rows = cached.llm[cached.llm[LLM] == llm]
    if rows.empty:
        raise published.PublishedError(f"LLM {llm!r} is not loaded; loaded: "
                                       f"{', '.join(dict.fromkeys(cached.llm[LLM]))}")
    return book.Cached(cached.conf, rows, llm)


def alignment_table(auroc: pd.DataFrame) -> pd.DataFrame:
    """Mean AUROC over categories per (slm, method), with the categories it is estimable on
    and the median width of its 95% bootstrap intervals."""
    width = auroc["ci_high"] - auroc["ci_low"]
    g = auroc.assign(width=width).groupby([SLM, METHOD], sort=False)
    return g.agg(categories=("auroc", "count"), mean_auroc=("auroc", "mean"),
                 median_ci_width=("width", "median"), items=("n", "sum")).reset_index()


def conclusions(auroc: pd.DataFrame, means: pd.DataFrame, verdict_table: pd.DataFrame) -> str:
    """What chapter 08 shows, in words, every number computed from its tables."""
    al = alignment_table(auroc)
    best = al.loc[al.groupby(SLM, sort=False)["mean_auroc"].idxmax()]
    top = best[METHOD].value_counts()
    below = al[al["mean_auroc"] < 0.5]
    gain = (means["auc_uq"] - means["auc_random"])
    gap = (means["auc_oracle"] - means["auc_random"])
    i = gain.idxmax()
    lines = [
        f"- **Alignment.** Mean AUROC over the 14 categories runs from "
        f"{al['mean_auroc'].min():.3f} to {al['mean_auroc'].max():.3f}. The best method per SLM "
        f"is {', '.join(f'{m} ({n} of {len(best)} SLMs)' for m, n in top.items())}. "
        + (f"Below 0.5 (worse than chance): {', '.join(f'{r.slm} {r.method} ({r.mean_auroc:.3f})' for r in below.itertuples())}. "
           if len(below) else "No mean AUROC is below 0.5. ")
        + f"With about {int(al['items'].median() / max(al['categories'].median(), 1))} items "
        f"per category the 95% bootstrap intervals are narrow: median width "
        f"{al['median_ci_width'].median():.3f}.",
        f"- **Routing.** Averaged over categories, routing by confidence adds at most "
        f"{gain.max():.3f} to the random router's area under accuracy vs. routing ratio "
        f"({means.loc[i, SLM]}, {means.loc[i, METHOD]}, to {means.loc[i, LLM]}); the oracle "
        f"adds {gap.min():.3f} to {gap.max():.3f}. Methods that beat random on fewer than half "
        f"of the categories: {int((means['beats_random'] < means['datasets'] / 2).sum())} of {len(means)} "
        f"(slm, method, LLM) rows.",
        "- **Verdicts** (rule on the findings page): " + "; ".join(
            f"{r.name}: {r.verdict}" + (f" ({r.reason})" if r.reason else
                                         f" ({r.supports} of {r.estimable} settings support, "
                                         f"{r.contradicts} contradict)")
            for r in verdict_table.itertuples()) + "."]
    return "\n".join(lines)


# ---- calibration sets for the router ---------------------------------------------------------
PUBLISHED_SLMS = tuple(k for k, (_, role, _) in published.MODELS.items() if role == "slm")
CALIBRATION_DIR = "calibration_published"  # under the cache: data_cache/calibration_published


def _source(slm: str) -> str:
    prov = published.provenance([slm])
    f = prov["files"][slm]
    return (f"published MMLU-Pro outputs, {prov['repository']} at commit {prov['commit'][:12]} "
            f"({prov['license']}), file {f['path']} (sha256 {f['sha256'][:12]})")


def export_calibration_sets(root: str | Path, slms: Sequence[str] | None = None,
                            directory: str | Path | None = None, download: bool = False,
                            shown_as: str | Path | None = None) -> pd.DataFrame:
    """Algorithm 1 (:func:`routelib.routing.calibration.build_calibration_set`, its defaults)
    on the published outputs of each of ``slms`` (default: the six of the paper's kinds) and method,
    the 14 categories pooled, discards left out; exported like the embedded sets
    (:func:`routelib.routing.study.export_calibration_sets`) to ``root/<slm>__<method>/``, each
    README naming its source file, plus ``root/README.md`` on where they came from and how
    ``route --calibration`` uses them. One row per set (that function's columns)."""
    slms = list(slms or PAPER_SLMS)
    for s in slms:
        if published.spec(s)["role"] != "slm":
            raise published.PublishedError(f"{s!r} is an LLM of the published outputs, not an "
                                           f"SLM; SLMs: {', '.join(PUBLISHED_SLMS)}")
    conf = published.confidence_table(slms, None, None, directory, download)
    root = Path(root)
    sets = pd.concat([study.export_calibration_sets(conf, [s], published.METHODS, root,
                                                    shown_as, _source(s)) for s in slms],
                     ignore_index=True)
    discards = conf.groupby([SLM, METHOD], sort=False)[DISCARDED].sum().rename("discarded")
    sets = sets.merge(discards.reset_index(), on=[SLM, METHOD], how="left")
    (root / "README.md").write_text(calibration_readme(sets), encoding="utf-8")
    return sets


def calibration_readme(sets: pd.DataFrame) -> str:
    """The README of the folder of published calibration sets (``sets``: the export's rows)."""
    prov = published.provenance(list(dict.fromkeys(sets[SLM])))
    lines = [
        "# Calibration sets from the published MMLU-Pro outputs", "",
        f"Derived from the per-item outputs published at {prov['repository']} (commit "
        f"`{prov['commit']}`, {prov['license']}; {prov['dataset']}), read by "
        "`routelib.uq.published` (sha256 and item alignment checked) and written by "
        "`routelib routing --published --export DIR` "
        "(`routelib.report.paper_scale.export_calibration_sets`): Algorithm 1 (30 equal-width "
        "bins, 10% of each, seed 50) on the 14 categories pooled, one set per (SLM, method), "
        "items without a signal left out. Only the sampled confidences are stored, no "
        "question or answer text.", "",
        "Use: `routelib route --slm <the served SLM> --method avg_token_prob --ratio 0.3 "
        "--calibration <this folder>/<slm>__avg_token_prob`. These confidences come from "
        "upstream's zero-shot chain-of-thought answers (avg_token_prob: mean token probability "
        "of the whole response; verbal_1s: the confidence stated in it); a served SLM's "
        "confidences sit on the same scale only with the same prompt and decoding, so take the "
        "`--ratio` threshold as a start and let `--adapt STATE_FILE` follow the served queries. "
        "`linguistic_judge` needs a grader model that `route` does not run: its sets serve "
        "simulations only.", "",
        "Other published SLMs (not exported here): " + (", ".join(
            s for s in PUBLISHED_SLMS if s not in set(sets[SLM])) or "none") + "; "
        "`routelib routing --published SLM ... --export DIR` writes theirs.", "",
        "| set | slm | method | items | pooled | discarded | source file sha256 |",
        "|---|---|---|---:|---:|---:|---|"]
    for r in sets.itertuples():
        lines.append(f"| `{Path(r.csv).parent.name}` | {r.slm} | {r.method} | {r.items} | "
                     f"{r.pooled} | {r.discarded} | `{prov['files'][r.slm]['sha256'][:12]}` |")
    return "\n".join(lines) + "\n"


# ---- Insight 2: leave-one-category-out threshold transfer, computed once and stored -----------
TRANSFER_PART = "published_transfer"  # <cache>/routing_study/published_transfer__<key[:16]>/


def transfer_run_table(cached: book.Cached, methods=None, runs: int = 3,
                       seed: int = config.SEED, ratios=DEFAULT_RATIOS) -> pd.DataFrame:
    """The embedded study's per-run transfer errors
    (:func:`routelib.routing.study.transfer_run_errors`: every strategy, each category the
    unseen target in turn, calibration and random draws with seeds ``seed, seed + 1, ...``) of
    every SLM of ``cached`` and ``methods`` (default all its methods), once per LLM of
    ``cached.llm``; discarded items left out (:func:`routelib.routing.study.routable`)."""
    conf = study.routable(cached.conf)
    methods = list(methods or dict.fromkeys(conf[METHOD]))
    frames = [study.transfer_run_errors(conf, cached.llm[cached.llm[LLM] == llm], cached.slms,
                                        methods, runs_=runs, ratios=ratios, seed=seed)
              for llm in dict.fromkeys(cached.llm[LLM])]
    return pd.concat(frames, ignore_index=True)


def transfer_fields(slms=None, llms=None, methods=None, runs: int = 3,
                    seed: int = config.SEED) -> dict:
    """The key fields of the stored study (:func:`routelib.routing.saved.saved_part`): the
    upstream commit and the sha256 of every file read (the loader checks them), the SLMs, LLMs,
    signals, runs, seeds and ratios, and the routing study's version."""
    slms, llms = list(slms or PAPER_SLMS), list(llms or PAPER_LLMS)
    prov = published.provenance(slms + llms)
    return {"part": TRANSFER_PART,
            "inputs": {"commit": prov["commit"],
                       "sha256": {n: f["sha256"] for n, f in prov["files"].items()}},
            "settings": {"slms": slms, "llms": llms,
                         "signals": [m for m in published.METHODS
                                     if m in set(methods or published.METHODS)], "runs": runs,
                         "seeds": [seed + i for i in range(runs)],
                         "ratios": [float(r) for r in DEFAULT_RATIOS]},
            "version": saved.STUDY_VERSION}


def transfer_path(fields: dict, root: str | Path | None = None) -> Path:
    """The folder the study of ``fields`` is stored in."""
    return Path(root or saved.study_root()) / f"{TRANSFER_PART}__{saved.part_key(fields)[:16]}"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def transfer_spread(slms=None, llms=None, methods=None, runs: int = 3, seed: int = config.SEED,
                    directory=None, root=None, progress=_stderr) -> pd.DataFrame:
    """Insight 2 on the published outputs: :func:`routelib.routing.transfer_runs.run_spread`
    of :func:`transfer_run_table` (defaults: the six paper SLMs, both paper LLMs, the three
    signals, 3 runs from seed 50), read from :func:`transfer_path` under ``root`` (default the
    routing study's folder of the cache) when stored there with this key
    (:func:`transfer_fields`); else computed (``progress`` gets one line first), stored there
    with its wall time, and read back."""
    fields = transfer_fields(slms, llms, methods, runs, seed)
    st = fields["settings"]

    def compute() -> dict:
        progress(f"computing the published transfer study ({len(st['slms'])} SLMs x "
                 f"{len(st['signals'])} signals x 14 categories x {len(st['llms'])} LLMs, "
                 f"{runs} runs; a few minutes, once) into {transfer_path(fields, root)}")
        cached = load(st["slms"], st["llms"], st["signals"], None, directory)
        per_run = transfer_run_table(cached, st["signals"], runs, seed)
        return {"runs": per_run, "spread": run_spread(per_run)}

    def about() -> dict:
        return {"source": f"github:{published.UPSTREAM_REPO}@{published.UPSTREAM_COMMIT}",
                "command": "python -m routelib findings (routelib.report.paper_scale."
                           "transfer_spread)"}
    return saved.saved_part(Path(root or saved.study_root()), fields, compute, about)["spread"]


def transfer_meta(root=None, **kwargs) -> dict:
    """The stored study's ``study.json`` (its key fields, rows, ``compute_seconds``) of
    :func:`transfer_spread`'s ``kwargs``; empty when not stored."""
    meta = transfer_path(transfer_fields(**kwargs), root) / "study.json"
    return json.loads(meta.read_text()) if meta.exists() else {}


def insight2_spread(spread: pd.DataFrame) -> pd.DataFrame:
    """The rows Insight 2's rule counts: the realized routing ratio of a threshold depends on
    the SLM's confidences only, not on the LLM, so when every (slm, method, target, strategy)
    has the same errors for each LLM, the first LLM's rows alone (each setting once;
    ``attrs["llms_identical"]`` True), else all rows."""
    llms = list(dict.fromkeys(spread[LLM]))
    keys, vals = [SLM, METHOD, TARGET, STRATEGY], ["error", "error_sd", "runs"]
    first = spread[spread[LLM] == llms[0]].reset_index(drop=True)
    same = all(first[keys + vals].reset_index(drop=True).equals(
        spread.loc[spread[LLM] == llm, keys + vals].reset_index(drop=True)) for llm in llms[1:])
    out = first if same else spread.reset_index(drop=True)
    out.attrs["llms_identical"] = same
    return out


def insight2_for(cached: book.Cached, runs: int = 3, seed: int = config.SEED,
                 directory=None) -> pd.DataFrame:
    """:func:`insight2_spread` for the bundle ``cached`` (:func:`load`): the stored study of its
    SLMs, LLMs and signals (:func:`transfer_spread`) when it holds all 14 categories, else
    :func:`transfer_run_table` on its categories (not stored)."""
    llms = list(dict.fromkeys(cached.llm[LLM]))
    methods = list(dict.fromkeys(cached.conf[METHOD]))
    if set(cached.datasets) == set(published.CATEGORIES):
        return insight2_spread(transfer_spread(cached.slms, llms, methods, runs, seed, directory))
    return insight2_spread(run_spread(transfer_run_table(cached, methods, runs, seed)))


def insight2_table(spread: pd.DataFrame) -> pd.DataFrame:
    """Per (slm[, llm], method) of an :func:`insight2_spread` table: each strategy's realized-ratio
    error, mean over the targets, and the targets Insight 2's rule counts
    (:func:`routelib.report.verdicts.calibration_transfers`) as estimable, supporting and
    contradicting. Without the ``llm`` column when the LLMs' errors are identical
    (``attrs["llms_identical"]``: each setting counted once)."""
    keys = [SLM, METHOD] if spread.attrs.get("llms_identical") else [SLM, LLM, METHOD]
    rows = []
    for key, g in spread.groupby(keys, sort=False):
        e = calibration_transfers(g)
        err = g.groupby(STRATEGY, sort=False)["error"].mean()
        rows.append({**dict(zip(keys, key)), **{s: err.get(s) for s in STRATEGIES},
                     "targets": e.estimable, "support": e.supports,
                     "contradict": e.contradicts})
    return pd.DataFrame(rows)
