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
    note = (f"{len(cached.slms)} SLMs ({', '.join(cached.slms)}) against "
            f"{cached.llm_name}, {cached.conf['item_id'].nunique()} MMLU-Pro items in "
            f"{cached.conf['dataset'].nunique()} categories; signals "
            f"{', '.join(dict.fromkeys(cached.conf['method']))}; not testable there: "
            f"{', '.join(paper_scale.UNTESTABLE)}")
    return paper_scale.verdicts(auroc, summary, cached), note


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
                  n_boot: int = 1000) -> dict[str, str]:
    """The findings page's verdict facts: the rule, the two-column table, the contradictions
    and what the published column rests on."""
    embedded = V.assess(auroc, summary, conf)
    published, note = published_assessment(n_boot)
    return {"verdict_rule": V.rule_text(), "verdict_table": verdict_markdown(embedded, published),
            "verdict_contradictions": contradictions(embedded, published),
            "published_note": note}
