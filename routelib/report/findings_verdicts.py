"""The findings page's verdicts: every Observation and Insight judged by the rules of
:mod:`routelib.report.verdicts`, on two bodies of evidence side by side: the embedded reference
run (our models) and the published MMLU-Pro outputs of the paper's own kind of models
(:mod:`routelib.report.paper_scale`). Nothing here is written by hand but the claims'
paraphrases in :data:`routelib.report.verdicts.CLAIMS`."""
from __future__ import annotations

import pandas as pd

from routelib.report import book, paper_scale, verdicts as V
from routelib.uq import metrics
from routelib.uq.published import PublishedError

EVIDENCE_COLUMNS = ("embedded", "published")


def published_assessment(n_boot: int = 1000) -> tuple[pd.DataFrame | None, str]:
    """(assessment of the published outputs, a note) or (None, why) when they are absent."""
    try:
        cached = paper_scale.load()
    except (PublishedError, OSError) as exc:
        return None, f"published outputs not available here ({exc})"
    auroc = metrics.auroc_table(cached.conf, ci=True, n_boot=n_boot)
    _, summary, _ = book.routing(cached)
    spread = paper_scale.insight2_for(cached)
    note = (f"{len(cached.slms)} SLMs ({', '.join(cached.slms)}) against "
            f"{cached.llm_name}, {cached.conf['item_id'].nunique()} MMLU-Pro items in "
            f"{cached.conf['dataset'].nunique()} categories; signals "
            f"{', '.join(dict.fromkeys(cached.conf['method']))}; not testable there: "
            f"{', '.join(paper_scale.UNTESTABLE)}. {transfer_note(spread)}")
    return paper_scale.verdicts(auroc, summary, cached, transfer_spread=spread), note


def transfer_note(spread: pd.DataFrame) -> str:
    """How Insight 2's published evidence was computed, from the stored study's key fields."""
    meta = paper_scale.transfer_meta()
    st, path = meta["settings"], paper_scale.transfer_path(paper_scale.transfer_fields())
    once = ("the two LLMs' errors are identical on every setting (the routed share does not "
            "depend on the LLM), so each (SLM, signal, category) counts once"
            if spread.attrs.get("llms_identical") else "each LLM counts")
    return (f"Insight 2 there: the embedded study's leave-one-dataset-out transfer "
            f"(`routelib.routing.study.transfer_run_errors`) judged by the same rule, the 14 categories "
            f"as the datasets, each signal of each SLM to each LLM, {st['runs']} calibration "
            f"draws per target (seeds {', '.join(map(str, st['seeds']))}); {once}. Computed "
            f"once ({meta['compute_seconds']:.0f} s here) by `python -m routelib findings` and "
            f"stored in `data_cache/routing_study/{path.name}/`, keyed by the upstream commit "
            f"{meta['inputs']['commit'][:12]}, the files' sha256, the models, signals and "
            f"seeds; the page reads it from there")


def _cell(row: pd.Series | None) -> str:
    if row is None:
        return "not available"
    why = row["reason"] or (f"{row['supports']} of {row['estimable']} settings support, "
                            f"{row['contradicts']} contradict")
    return f"**{row['verdict']}** ({why})"


def verdict_markdown(embedded: pd.DataFrame, published: pd.DataFrame | None) -> str:
    """One row per claim: the paper's claim, then the verdict on each body of evidence."""
    pub = published.set_index("claim") if published is not None else None
    lines = ["| claim | the paper (paraphrased) | embedded reference run | published outputs |",
             "|---|---|---|---|"]
    for _, r in embedded.iterrows():
        p = pub.loc[r["claim"]] if pub is not None else None
        lines.append(f"| {r['name']} | {r['paper']} | {_cell(r)} | {_cell(p)} |")
    return "\n".join(lines)


def contradictions(embedded: pd.DataFrame, published: pd.DataFrame | None) -> str:
    """Plain sentences for each claim that a body of evidence does not reproduce, and each
    claim the two bodies judge differently."""
    out = []
    pub = published.set_index("claim") if published is not None else None
    for _, r in embedded.iterrows():
        p = pub.loc[r["claim"]] if pub is not None else None
        for where, row in (("The embedded run contradicts", r),
                           ("The published outputs contradict", p)):
            if row is not None and row["verdict"] == V.NOT_REPRODUCED:
                out.append(f"- **{where} {r['name']}** "
                           f"(\"{r['paper']}\"): {row['contradicts']} of {row['estimable']} "
                           f"estimable settings show the opposite, {row['supports']} support it.")
        if p is not None and V.UNDECIDED not in (r["verdict"], p["verdict"]) and \
                r["verdict"] != p["verdict"]:
            out.append(f"- {r['name']}: {r['verdict']} on the embedded run, {p['verdict']} on "
                       "the published outputs.")
    return "\n".join(out) if out else "- No body of evidence contradicts a claim."


def verdict_facts(auroc: pd.DataFrame, summary: pd.DataFrame, conf: pd.DataFrame,
                  n_boot: int = 1000, transfer_spread: pd.DataFrame | None = None
                  ) -> dict[str, str]:
    """The findings page's verdict facts: the rule, the two-column table, the contradictions
    and what the published column rests on (``transfer_spread``: Insight 2's evidence, the
    saved study's ``transfer.spread``)."""
    embedded = V.assess(auroc, summary, conf, transfer_spread=transfer_spread)
    published, note = published_assessment(n_boot)
    return {"verdict_rule": V.rule_text(), "insight2_rule": V.INSIGHT2_RULE,
            "verdict_table": verdict_markdown(embedded, published),
            "verdict_contradictions": contradictions(embedded, published),
            "published_note": note}
