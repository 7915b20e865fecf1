"""Choose each model's prompt style and scoring on train/dev data only.

For every answer *group* (MCQ, true/false, free-form math, conversational) the candidate
:class:`~routelib.answers.answer.AnswerConfig` s are run on the ``"train"`` split of that group's
selection datasets (their train/dev split, or the carved-out part of an eval-only dataset, never
an evaluation item), and the one with the highest mean accuracy over those datasets wins
(ties: the earlier candidate). The answers are cached like any other run, so the choice can be
audited from ``data_cache/``.
"""
from __future__ import annotations

import pandas as pd

from routelib import data
from routelib.answers.answer import ANSWER_GROUPS as GROUPS, AnswerConfig, answer_group as group_of
from routelib.cache import runs
from routelib.models import registry as models


# datasets whose "train" split decides each group (all have a real train/dev split, except
# coqa, whose carved-out part is disjoint from its evaluation items)
SELECTION_DATASETS: dict[str, tuple[str, ...]] = {
    "mcq": ("commonsenseqa", "openbookqa", "mmlu", "aqua"),
    "true_false": ("boolq",),
    "math": ("gsm8k", "svamp"),
    "conversational": ("coqa",),
}
SELECTION_LIMITS = {"mcq": 50, "true_false": 50, "math": 30, "conversational": 30}


def candidates(group: str, chat_model: bool) -> list[AnswerConfig]:
    if group in ("mcq", "true_false"):
        out = [AnswerConfig("options"), AnswerConfig("letters")]
        if chat_model:
            out += [AnswerConfig("options", chat=True), AnswerConfig("letters", chat=True)]
        return out
    out = [AnswerConfig("generate")]
    if chat_model:
        out.append(AnswerConfig("generate", chat=True))
    return out


def run_selection(model: str, groups=GROUPS, backend=None, progress: bool = True,
                  max_items: int | None = None) -> pd.DataFrame:
    """Accuracy of every candidate on every selection dataset; one row per (group, config, dataset).

    ``max_items`` caps :data:`SELECTION_LIMITS` (items per dataset), for slow models.
    """
    spec = models.get_spec(model)
    rows = []
    for group in groups:
        for cfg in candidates(group, spec.chat):
            for ds in SELECTION_DATASETS[group]:
                limit = min(SELECTION_LIMITS[group], max_items or SELECTION_LIMITS[group])
                df = runs.generate(model, ds, "train", limit=limit, cfg=cfg,
                                   backend=backend, progress=progress)
                rows.append({"model": model, "group": group, "style": cfg.style,
                             "chat": cfg.chat, "dataset": ds, "n": len(df),
                             "accuracy": float(df["correct"].mean())})
    return pd.DataFrame(rows)


def choose(results: pd.DataFrame) -> pd.DataFrame:
    """The winning config per (model, group): highest mean accuracy over the group's datasets."""
    mean = (results.groupby(["model", "group", "style", "chat"], sort=False)["accuracy"]
            .mean().reset_index())
    best = mean.loc[mean.groupby(["model", "group"], sort=False)["accuracy"].idxmax()]
    return best.reset_index(drop=True)


def selection_markdown(results: pd.DataFrame) -> str:
    """Mean train/dev accuracy per (model, group, config); the chosen config in bold."""
    best = {(r.model, r.group, r.style, r.chat) for r in choose(results).itertuples()}
    mean = (results.groupby(["model", "group", "style", "chat"], sort=False)
            .agg(accuracy=("accuracy", "mean"), n=("n", "sum"),
                 per_dataset=("accuracy", lambda a: " / ".join(f"{100 * x:.0f}" for x in a)))
            .reset_index())
    lines = ["| model | group | config | mean accuracy | per dataset (%) | items |",
             "|---|---|---|---|---|---|"]
    for r in mean.itertuples():
        cfg = r.style + ("-chat" if r.chat else "")
        acc = f"{100 * r.accuracy:.1f}%"
        if (r.model, r.group, r.style, r.chat) in best:
            cfg, acc = f"**{cfg}**", f"**{acc}**"
        lines.append(f"| {r.model} | {r.group} | {cfg} | {acc} | {r.per_dataset} | {r.n} |")
    return "\n".join(lines) + "\n"
