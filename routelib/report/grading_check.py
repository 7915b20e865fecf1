"""How well each candidate CoQA grading rule agrees with answers labelled by reading them.

The labels (``data_cache/labels/coqa_manual.csv``, how they were made: the README beside it)
are compared with the rules below, each applied to the cached answer and the record's gold
answers (the best gold decides, as in :func:`routelib.answers.grading.grade_text`):

- ``f1>=t``: exact match, a yes/no gold matched by the first word, or token F1 >= t;
- ``recall=1``: exact or yes/no match, or every token of a gold appears in the answer;
- ``recall=1 & precision>=0.5``: the same, with at most as many extra tokens as gold ones;
- ``recall=1 or f1>=0.6``: either;
- ``exact``: exact or yes/no match only.
"""
from __future__ import annotations

from collections import Counter

import pandas as pd

from routelib import config, data
from routelib.answers.grading import normalize_text, text_prediction, token_f1, token_recall
from routelib.cache import runs

F1_THRESHOLDS = (0.5, 0.6, 2 / 3, 0.75, 0.8)
LABELS = "labels/coqa_manual.csv"
AGREEMENT_COLUMNS = ("rule", "items", "agree", "agreement", "true_pos", "false_pos",
                     "false_neg", "true_neg", "kappa")


def _precision(pred: str, gold: str) -> float:
    p, g = normalize_text(pred).split(), normalize_text(gold).split()
    return sum((Counter(p) & Counter(g)).values()) / len(p) if p else 0.0


def gold_scores(record, response: str) -> list[dict]:
    """Per gold answer of ``record``: exact, yes/no, F1, recall and precision of the answer."""
    pred = text_prediction(response)
    first = pred.split()[0] if pred else ""
    out = []
    for gold in [str(record.answer), *record.aliases]:
        g = normalize_text(gold)
        out.append(dict(exact=bool(pred) and pred == g,
                        yesno=g in ("yes", "no") and first == g,
                        yesno_gold=g in ("yes", "no"),
                        f1=token_f1(pred, g) if pred else 0.0,
                        recall=token_recall(pred, g) if pred else 0.0,
                        precision=_precision(pred, g)))
    return out


def rules() -> dict:
    """Rule name -> predicate over one gold's scores."""
    def match(s):
        return s["exact"] or s["yesno"]

    def open_gold(s):
        return not s["yesno_gold"]
    out = {f"f1>={t:.2g}": (lambda s, t=t: match(s) or (open_gold(s) and s["f1"] >= t - 1e-9))
           for t in F1_THRESHOLDS}
    out["recall=1"] = lambda s: match(s) or (open_gold(s) and s["recall"] >= 1.0)
    out["recall=1 & precision>=0.5"] = lambda s: match(s) or (
        open_gold(s) and s["recall"] >= 1.0 and s["precision"] >= 0.5)
    out["recall=1 or f1>=0.6"] = lambda s: match(s) or (
        open_gold(s) and (s["recall"] >= 1.0 or s["f1"] >= 0.6 - 1e-9))
    out["exact"] = match
    return out


def labelled_answers(limit: int | None = config.LIMIT) -> pd.DataFrame:
    """The labelled items with their cached response and record (model, item_id, label,
    response, record)."""
    labels = pd.read_csv(config.cache_dir() / LABELS)
    records = {r.id: r for r in data.load("coqa", "eval", limit=limit)}
    frames = []
    for model, rows in labels.groupby("model", sort=False):
        answers = runs.generate(model, "coqa", "eval", limit=limit, backend=_no_model,
                                progress=False).set_index("item_id")
        frames.append(rows.assign(response=[answers.loc[i, "response"] for i in rows["item_id"]],
                                  record=[records[i] for i in rows["item_id"]]))
    return pd.concat(frames, ignore_index=True)


def _no_model():
    raise LookupError("the labelled CoQA answers are not all cached")


def _kappa(tp, fp, fn, tn) -> float:
    n = tp + fp + fn + tn
    po = (tp + tn) / n
    pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n ** 2
    return (po - pe) / (1 - pe) if pe < 1 else float("nan")


def agreement(items: pd.DataFrame) -> pd.DataFrame:
    """Per rule: agreement with the labels, the confusion counts and Cohen's kappa."""
    scores = [gold_scores(rec, resp) for rec, resp in zip(items["record"], items["response"])]
    rows = []
    label = items["label"].astype(bool).to_numpy()
    for name, pred in rules().items():
        ok = [any(pred(s) for s in golds) for golds in scores]
        tp = int(sum(o and l for o, l in zip(ok, label)))
        fp = int(sum(o and not l for o, l in zip(ok, label)))
        fn = int(sum(l and not o for o, l in zip(ok, label)))
        tn = len(ok) - tp - fp - fn
        rows.append(dict(rule=name, items=len(ok), agree=tp + tn, agreement=(tp + tn) / len(ok),
                         true_pos=tp, false_pos=fp, false_neg=fn, true_neg=tn,
                         kappa=_kappa(tp, fp, fn, tn)))
    return pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))


def by_model(items: pd.DataFrame) -> pd.DataFrame:
    """:func:`agreement` per labelled model (a rule chosen on one half can be read on the
    other)."""
    return pd.concat([agreement(g).assign(model=m) for m, g in items.groupby("model", sort=False)],
                     ignore_index=True)


def grading_markdown(items: pd.DataFrame) -> str:
    """The page ``docs/coqa_grading.md``: each rule's agreement with the labels, overall and
    per model, and the rule that agrees best."""
    table = agreement(items)
    best = table.sort_values(["kappa", "agreement"], ascending=False).iloc[0]
    per = by_model(items).pivot(index="rule", columns="model", values="agreement")
    per = per.reindex(table["rule"]).reset_index()
    fmt = table.assign(agreement=table["agreement"].map("{:.2f}".format),
                       kappa=table["kappa"].map("{:.3f}".format))
    return "\n".join([
        "# CoQA grading rules against hand labels\n",
        f"Generated by `routelib.report.grading_check` from the {len(items)} hand-labelled cached "
        "answers in `data_cache/labels/coqa_manual.csv` (how they were sampled and labelled: "
        "`data_cache/labels/README.md`). Each rule is applied to the cached answer and every "
        "gold answer of its record; the best gold decides.\n",
        fmt.to_markdown(index=False), "",
        f"Best agreement: **{best['rule']}** ({best['agree']} of {best['items']} items, Cohen's "
        f"kappa {best['kappa']:.3f}); the rule in use until now, `f1>=0.5`, agrees on "
        f"{int(table.set_index('rule').loc['f1>=0.5', 'agree'])}. The rules were compared on "
        "the same items they are judged on, so the best one's agreement is optimistic; per "
        "model (50 items each):\n",
        per.to_markdown(index=False, floatfmt=".2f"), ""])
