"""Verdicts about the paper, computed by stated rules (never written by hand).

Each of the paper's claims is tested on *settings* (an SLM x dataset x method, or whatever the
claim is about). A setting is *estimable* when the numbers it needs can be estimated (for an
AUROC: at least :data:`MIN_CORRECT` correct and :data:`MIN_WRONG` wrong items). On an estimable
setting the paper's effect either holds significantly (its 95% interval excludes "no effect":
the setting *supports* the claim), its opposite holds significantly (*contradicts*), or neither.
:func:`decide` turns those counts into one of four verdicts, by :data:`RULE`:

- **undecided** when fewer than ``min_settings`` settings are estimable, or when fewer than
  ``max_against`` of them are significant either way (the evidence is too weak to decide);
- **reproduced** when at least ``share`` of the estimable settings support the claim and at
  most ``max_against`` of them contradict it;
- **not reproduced** when at least ``share`` contradict it and at most ``max_against``
  support it, or when some contradict it and none supports it;
- **partly** otherwise, when more settings support than contradict it (a tie is undecided,
  more contradicting than supporting is not reproduced).

The builders below compute the counts from routelib's tidy tables; each says what counts as
support. :func:`rule_text` writes the rule for the page, from the same constants.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from routelib.columns import DATASET, METHOD, SLM
from routelib.routing import factors

REPRODUCED, PARTLY, NOT_REPRODUCED, UNDECIDED = ("reproduced", "partly", "not reproduced",
                                                  "undecided")
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, UNDECIDED)
MIN_CORRECT = MIN_WRONG = 10  # an AUROC needs at least this many correct and wrong items
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Rule:
    """The thresholds of :func:`decide` (see the module docstring)."""
    min_settings: int = 4
    share: float = 0.5
    max_against: float = 0.1


RULE = Rule()


@dataclass(frozen=True)
class Evidence:
    """Counts of settings for one claim: estimable ones, and those that support or contradict
    it significantly."""
    estimable: int
    supports: int
    contradicts: int

    def __post_init__(self):
        if min(self.estimable, self.supports, self.contradicts) < 0 or \
                self.supports + self.contradicts > self.estimable:
            raise ValueError(f"inconsistent evidence counts: {self}")

    def text(self) -> str:
        return (f"{self.supports} of {self.estimable} estimable settings support it, "
                f"{self.contradicts} contradict it")


def decide(e: Evidence, rule: Rule = RULE) -> str:
    """The verdict for evidence ``e`` under ``rule``."""
    if e.estimable < rule.min_settings:
        return UNDECIDED
    s, c = e.supports / e.estimable, e.contradicts / e.estimable
    if s < rule.max_against and c < rule.max_against:
        return UNDECIDED  # too few settings are significant either way
    if s >= rule.share and c <= rule.max_against:
        return REPRODUCED
    if (c >= rule.share and s <= rule.max_against) or (e.supports == 0 < e.contradicts):
        return NOT_REPRODUCED
    if e.supports > e.contradicts:
        return PARTLY
    return NOT_REPRODUCED if e.contradicts > e.supports else UNDECIDED


def rule_text(rule: Rule = RULE) -> str:
    """The rule of :func:`decide` in words, for the findings page."""
    return (f"A claim is *undecided* when fewer than {rule.min_settings} settings can be "
            f"estimated or fewer than {rule.max_against:.0%} of them are significant either "
            f"way; *reproduced* when at least "
            f"{rule.share:.0%} of the estimable settings support it significantly and at most "
            f"{rule.max_against:.0%} contradict it; *not reproduced* when the reverse holds "
            f"(or some contradict it and none supports it); *partly* when more support than "
            f"contradict it. An AUROC is estimable with at least {MIN_CORRECT} correct and "
            f"{MIN_WRONG} wrong items.")


def count(signs) -> Evidence:
    """Evidence from one sign per estimable setting: +1 supports, -1 contradicts, 0 neither
    (NaN: not estimable, left out)."""
    s = np.asarray(list(signs), dtype=float)
    s = s[~np.isnan(s)]
    return Evidence(int(len(s)), int((s > 0).sum()), int((s < 0).sum()))


def interval_sign(a_low, a_high, b_low, b_high) -> float:
    """+1 when interval a lies wholly above interval b, -1 when wholly below, 0 when they
    overlap; NaN when either is missing."""
    vals = [a_low, a_high, b_low, b_high]
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in vals):
        return math.nan
    if a_low > b_high:
        return 1.0
    if a_high < b_low:
        return -1.0
    return 0.0


def estimable_auroc(auroc: pd.DataFrame) -> pd.DataFrame:
    """Rows of an AUROC table (:func:`routelib.uq.metrics.auroc_table` with ``ci=True``) that
    can be estimated: at least MIN_CORRECT correct and MIN_WRONG wrong kept items and an
    interval."""
    kept = auroc["n"] - auroc["n_discarded"] if "n_discarded" in auroc else auroc["n"]
    wrong = kept - auroc["n_correct"]
    ok = (auroc["n_correct"] >= MIN_CORRECT) & (wrong >= MIN_WRONG) & auroc["ci_low"].notna()
    return auroc[ok]


def _best(rows: pd.DataFrame) -> pd.Series | None:
    return None if rows.empty else rows.loc[rows["auroc"].idxmax()]


def group_vs_rest(auroc: pd.DataFrame, group, higher: bool = True) -> Evidence:
    """Per (slm, dataset): does the best estimable method of ``group`` align better
    (``higher``) or worse than the best estimable method outside it? Significance: the two
    methods' 95% intervals do not overlap."""
    signs = []
    for _, rows in estimable_auroc(auroc).groupby([SLM, DATASET], sort=False):
        a = _best(rows[rows[METHOD].isin(group)])
        b = _best(rows[~rows[METHOD].isin(group)])
        if a is None or b is None:
            continue
        sign = interval_sign(a["ci_low"], a["ci_high"], b["ci_low"], b["ci_high"])
        signs.append(sign if higher else -sign)
    return count(signs)


def alignment_routes_better(auroc: pd.DataFrame, summary: pd.DataFrame) -> Evidence:
    """Better alignment gives better routing, per (slm, dataset, method[, llm]): an AUROC
    significantly above 0.5 should beat the method's own random router (``auc_uq >
    auc_random``) and one significantly below 0.5 should lose to it; the reverse contradicts.
    Settings whose AUROC interval contains 0.5 are estimable but neither. With several LLMs in
    ``summary`` each (setting, LLM) counts once."""
    est = estimable_auroc(auroc)[[SLM, DATASET, METHOD, "ci_low", "ci_high"]]
    rows = est.merge(summary, on=[SLM, DATASET, METHOD], how="inner")
    signs = []
    for r in rows.itertuples(index=False):
        gain = float(r.auc_uq) - float(r.auc_random)
        side = 1.0 if r.ci_low > 0.5 else -1.0 if r.ci_high < 0.5 else 0.0
        signs.append(0.0 if side == 0.0 or gain == 0 else side * math.copysign(1.0, gain))
    return count(signs)


def two_proportions_sign(k1: int, n1: int, k2: int, n2: int) -> float:
    """+1 when proportion k1/n1 is significantly above k2/n2 (two-sided 95% z-test, pooled
    variance), -1 when significantly below, 0 otherwise; NaN when either group is empty."""
    if n1 <= 0 or n2 <= 0:
        return math.nan
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0
    z = (k1 / n1 - k2 / n2) / se
    return 1.0 if z > Z95 else -1.0 if z < -Z95 else 0.0


def confident_items_better(conf: pd.DataFrame, keep: float = 0.2) -> Evidence:
    """Fig. 3: per (slm, dataset, method), is the SLM more accurate on its ``keep`` most
    confident items than on the rest (two-proportion test)? Discarded items are left out;
    a setting needs at least MIN_CORRECT correct and MIN_WRONG wrong kept items."""
    signs = []
    for _, g in conf[conf["confidence"].notna()].groupby([SLM, DATASET, METHOD], sort=False):
        ok = g["correct"].to_numpy(bool)
        if ok.sum() < MIN_CORRECT or (~ok).sum() < MIN_WRONG:
            continue
        order = np.argsort(-g["confidence"].to_numpy(float), kind="stable")
        k = int(round(keep * len(g)))
        top, rest = ok[order[:k]], ok[order[k:]]
        signs.append(two_proportions_sign(int(top.sum()), len(top), int(rest.sum()), len(rest)))
    return count(signs)


# ---- the paper's claims --------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """One of the paper's observations or insights (paraphrased: see ``paper``) and the
    methods its test needs (``None``: any)."""
    key: str
    name: str
    paper: str
    needs: tuple | None = None


PROBES_PERPLEXITY = ("trained_probe", "ood_probe", "perplexity")
VERBAL = ("verbal_1s", "verbal_2s", "linguistic_judge")  # stated confidence, numeric or in words
CLAIMS = (
    Claim("obs1", "Observation 1 (Fig. 1)", "Uncertainty-correctness alignment differs across "
          "UQ methods; the trained probe, the OOD probe and perplexity align best.",
          PROBES_PERPLEXITY),
    Claim("obs2", "Observation 2 (Fig. 1)", "Verbalized confidence aligns worst.", VERBAL),
    Claim("obs3", "Observation 3 (Fig. 2)", "Better alignment gives better routing: a method "
          "that ranks correct answers higher buys more accuracy per routed query."),
    Claim("obs4", "Observation 4 (Fig. 3)", "On the queries it is most confident about, the "
          "SLM is more accurate (its accuracy relative to the LLM rises)."),
    Claim("ins1", "Insight 1 (Fig. 4)", "Uncertainty distributions depend more on the SLM and "
          "the UQ method than on the downstream dataset."),
    Claim("ins2", "Insight 2 (Algorithm 1, Fig. 5)", "A small calibration set drawn across "
          "datasets sets routing thresholds for a dataset never seen."),
)
NO_RULE_YET = "no rule-based test yet"
ASSESS_COLUMNS = ("claim", "name", "paper", "estimable", "supports", "contradicts", "verdict",
                  "reason")


def _evidence(claim: Claim, auroc, summary, conf) -> Evidence | None:
    if claim.key == "obs1":
        return group_vs_rest(auroc, claim.needs)
    if claim.key == "obs2":
        return group_vs_rest(auroc, claim.needs, higher=False)
    if claim.key == "obs3":
        return alignment_routes_better(auroc, summary)
    if claim.key == "obs4":
        return confident_items_better(conf)
    if claim.key == "ins1":
        return count(factors.insight1_signs(factors.pair_distances(conf)))
    return None


def assess(auroc: pd.DataFrame, summary: pd.DataFrame, conf: pd.DataFrame,
           rule: Rule = RULE) -> pd.DataFrame:
    """One row per claim of :data:`CLAIMS`: the evidence counts and the verdict by ``rule``;
    ``reason`` says why a claim cannot be tested on these tables (its methods are absent, or
    no rule-based test exists yet), in which case the verdict is undecided."""
    present = set(conf[METHOD]) if len(conf) else set()
    rows = []
    for c in CLAIMS:
        row = dict(claim=c.key, name=c.name, paper=c.paper, estimable=0, supports=0,
                   contradicts=0, verdict=UNDECIDED, reason="")
        if c.needs is not None and not (present & set(c.needs)):
            row["reason"] = f"none of {', '.join(c.needs)} in these outputs"
        elif c.needs is not None and not (present - set(c.needs)):
            row["reason"] = "no other method to compare with"
        else:
            e = _evidence(c, auroc, summary, conf)
            if e is None:
                row["reason"] = NO_RULE_YET
            else:
                row.update(estimable=e.estimable, supports=e.supports,
                           contradicts=e.contradicts, verdict=decide(e, rule))
                if e.estimable < rule.min_settings:
                    row["reason"] = f"only {e.estimable} estimable settings"
        rows.append(row)
    return pd.DataFrame(rows, columns=list(ASSESS_COLUMNS))
