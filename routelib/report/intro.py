"""The book's intro page, rendered from the committed cache: the main findings in a few
sentences and one figure, every number computed here.

:func:`facts` reads the one loader's tables (:func:`routelib.routing.tables.load`) and the saved
routing study and returns the sentences of the "What we found" section as fields of the template
``book/intro.md.in``; :func:`summary_figure` draws the figure it shows
(:func:`routelib.report.plots.method_summary`: per method and SLM, the mean AUROC and the
routing area gain over a random router). :func:`write` renders both; ``python -m routelib
findings`` calls it after the findings page, and ``tests/test_committed_results.py`` renders the
page again and compares.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from routelib import config
from routelib.models.registry import DEFAULT_LLM
from routelib.report import findings, plots
from routelib.report.conclusions import NEAR_CHANCE, SMALL_GAIN
from routelib.report.uq_page import method_ranking
from routelib.routing import calibration as cal, saved, simulation as R, tables
from routelib.uq import metrics

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "book" / "intro.md.in"
OUTPUT = REPO_ROOT / "book" / "intro.md"
FIGURE = REPO_ROOT / "book" / "figures" / "summary.png"
FIGURE_LINK = "figures/summary.png"   # as book/intro.md links it


def _pct(x) -> str:
    return f"{100 * float(x):.1f}%"


def _range(values, fmt=lambda v: f"{v:.3f}") -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)} to {fmt(hi)}"


def study_tables(slms, llm: str = DEFAULT_LLM, limit: int | None = config.LIMIT):
    """(loader tables, method ranking, routing means, transfer means) from the cache."""
    t = tables.load(slms, llm, limit=limit)
    rs = saved.RoutingStudy(t)
    ranking = method_ranking(metrics.auroc_table(t.conf))
    return t, ranking, rs.routing.means, rs.transfer.means


def _alignment(ranking: pd.DataFrame) -> str:
    best = {slm: g.sort_values(["mean_rank", "method"]).iloc[0]
            for slm, g in ranking.groupby(R.SLM, sort=False)}
    methods = list(dict.fromkeys(b["method"] for b in best.values()))
    who = (f"`{methods[0]}` aligns best for every SLM" if len(methods) == 1 else
           "; ".join(f"`{b['method']}` aligns best for `{s}`" for s, b in best.items()))
    far = float((ranking["mean_auroc"] - 0.5).abs().max())
    verdict = ("with these SLMs, confidence says little about correctness"
               if far < NEAR_CHANCE else "some methods carry real signal")
    return (f"**Alignment** ([chapter 2](chapters/02_alignment)). {who} (mean rank over the "
            f"datasets; mean AUROC {_range([b['mean_auroc'] for b in best.values()])}), and "
            f"every method's mean AUROC is within {far:.3f} of chance (0.5): {verdict}.")


def _routing(means: pd.DataFrame, t) -> str:
    gain = means["auc_uq"] - means["auc_random"]   # each method against its own random router
    best = means.assign(gain=gain).loc[gain.groupby(means[R.SLM], sort=False).idxmax()]
    oracle = (means["auc_oracle"] - means["auc_random"]).groupby(means[R.SLM]).mean()
    slm_acc = t.conf.drop_duplicates([R.SLM, R.DATASET, R.ITEM_ID]).groupby(
        R.SLM, sort=False)[R.CORRECT].mean()
    return (f"**Routing** ([chapter 3](chapters/03_routing)). Routing by the best method beats a "
            "random router's area under the accuracy-vs-routing-ratio curve by "
            + ", ".join(f"{r['gain']:+.3f} (`{r[R.SLM]}`, `{r[R.METHOD]}`)"
                        for _, r in best.iterrows())
            + f"; an oracle router would gain {_range(oracle.tolist(), lambda v: f'{v:+.3f}')}. "
            + ("The gains are small; " if best["gain"].max() < SMALL_GAIN else "")
            + f"the LLM tier's mean accuracy is {_pct(t.llm[R.CORRECT].mean())}, the SLMs' "
            + ", ".join(f"{_pct(v)} (`{s}`)" for s, v in slm_acc.items()) + ".")


def _transfer(tmeans: pd.DataFrame) -> str:
    per = tmeans.groupby(cal.STRATEGY)["mean_abs_ratio_error"]
    lo, hi = per.min(), per.max()
    parts = ", ".join(f"{s} {_range([lo[s], hi[s]], _pct)}" for s in cal.STRATEGIES if s in lo)
    return (f"**Thresholds for unseen data** ([chapter 6](chapters/06_calibration)). Chosen "
            f"leave-one-dataset-out, the realized routing ratio misses the requested one by "
            f"(mean over targets, range over SLMs and methods): {parts}; the calibration set "
            "(Algorithm 1) is what `route --ratio` ships.")


def facts(slms, llm: str = DEFAULT_LLM, limit: int | None = config.LIMIT) -> dict[str, str]:
    """The intro's fields: the models and the three findings sentences (``alignment``,
    ``routing``, ``transfer``), all computed from the cache."""
    t, ranking, means, tmeans = study_tables(slms, llm, limit)
    return {"slms": ", ".join(f"`{s}`" for s in slms), "llm": f"`{llm}`", "limit": str(limit),
            "datasets": str(t.conf[R.DATASET].nunique()),
            "alignment": _alignment(ranking), "routing": _routing(means, t),
            "transfer": _transfer(tmeans) if len(tmeans) else "", "figure": FIGURE_LINK,
            "incomplete": "; ".join(t.notes())}


def summary_figure(slms, llm: str = DEFAULT_LLM, limit: int | None = config.LIMIT):
    """:func:`routelib.report.plots.method_summary` of the cached study."""
    _, ranking, means, _ = study_tables(slms, llm, limit)
    fig = plots.method_summary(ranking, means)
    fig.suptitle("Per UQ method: alignment and routing gain, mean over the datasets",
                 fontsize="medium")
    return fig


def write(slms, llm: str = DEFAULT_LLM, limit: int | None = config.LIMIT,
          out: Path = OUTPUT, figure: Path | None = FIGURE, template: Path = TEMPLATE) -> str:
    """Render the intro (and, unless ``figure`` is None, save its figure as PNG); returns the
    page's text."""
    text = findings.render(facts(slms, llm, limit), template)
    Path(out).write_text(text, encoding="utf-8")
    if figure is not None:
        import matplotlib
        matplotlib.use("Agg")
        Path(figure).parent.mkdir(parents=True, exist_ok=True)
        fig = summary_figure(slms, llm, limit)
        fig.savefig(figure, dpi=100, metadata={"Software": None})
    return text
