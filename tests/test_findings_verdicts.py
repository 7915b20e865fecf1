"""routelib.report.findings_verdicts: the two-column verdict table and its sentences, and the
committed findings page's verdicts follow their rule from the numbers printed beside them."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from routelib.report import findings_verdicts as FV, verdicts as V

ROOT = Path(__file__).resolve().parents[1]


def assessed(verdicts_, counts):
    rows = []
    for c, v, (e, s, k) in zip(V.CLAIMS, verdicts_, counts):
        rows.append(dict(claim=c.key, name=c.name, paper=c.paper, estimable=e, supports=s,
                         contradicts=k, verdict=v, reason="" if e else "why not"))
    return pd.DataFrame(rows)


def test_table_and_contradictions_by_hand():
    n = len(V.CLAIMS)
    emb = assessed([V.PARTLY] * n, [(10, 3, 1)] * n)
    pub = assessed([V.NOT_REPRODUCED] + [V.PARTLY] * (n - 1), [(20, 0, 15)] + [(10, 3, 1)] * (n - 1))
    md = FV.verdict_markdown(emb, pub)
    assert md.count("\n") == n + 1
    assert "| Observation 1 (Fig. 1) |" in md and "**not reproduced** (0 of 20 settings support, 15 contradict)" in md
    text = FV.contradictions(emb, pub)
    assert "**The published outputs contradict Observation 1 (Fig. 1)**" in text
    assert "15 of 20 estimable settings show the opposite" in text
    assert "partly on the embedded run, not reproduced on the published outputs" in text
    assert "not available" in FV.verdict_markdown(emb, None)
    assert FV.contradictions(emb, None) == "- No body of evidence contradicts a claim."


CELL = re.compile(r"\*\*(reproduced|partly|not reproduced|undecided)\*\* \((\d+) of (\d+) "
                  r"settings support, (\d+) contradict\)")


def test_committed_verdicts_follow_the_rule_from_their_numbers():
    page = (ROOT / "book" / "findings.md").read_text(encoding="utf-8")
    cells = CELL.findall(page)
    assert len(cells) >= 4
    for verdict, s, e, c in cells:
        assert V.decide(V.Evidence(int(e), int(s), int(c))) == verdict, (verdict, s, e, c)
