"""Answer records with a backend: prompt, score or generate, grade; one row per record.

The row's columns are :data:`ANSWER_COLUMNS` (defined here once). For choice styles
(``options``, ``letters``) the model "answers" with the option of highest score: per-token mean
log-likelihood for ``options`` (lm-eval's length-normalized rule), the single letter token's
log-prob for ``letters``. ``response`` is then that option's label (``B. text`` or ``yes``), and
``token_logprobs`` are the log-probs of the chosen continuation's tokens, so downstream
uncertainty methods see the choice exactly as if it had been generated under a constraint.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Sequence

from routelib.answers import grading, prompts
from routelib.config import SEED
from routelib.data.schema import Record, spec
from routelib.models import registry as models
from routelib.models.backend import Backend, GenRequest, LoglikRequest
from routelib.models.spec import ANSWER_GROUPS, ModelError  # noqa: F401 (ANSWER_GROUPS: API)

ANSWER_COLUMNS = (
    "dataset", "split", "item_id", "model", "model_id", "style", "chat", "prompt", "response",
    "token_logprobs", "n_tokens", "option_scores", "choice", "finish_reason", "extracted",
    "correct", "grade_rule", "grade_detail", "request_key", "seed",
)


@dataclass(frozen=True)
class AnswerConfig:
    """How a model answers: the prompt style and whether to use its chat template."""
    style: str
    chat: bool = False
    max_new_tokens: int | None = None
    seed: int = SEED

    def to_dict(self) -> dict:
        return {"style": self.style, "chat": self.chat, "max_new_tokens": self.max_new_tokens,
                "seed": self.seed}


# The documented default per answer group, for a model without a chosen configuration: option
# log-likelihood for choice datasets, plain-format generation otherwise, never the chat template.
DEFAULT_CONFIGS: dict[str, AnswerConfig] = {
    "mcq": AnswerConfig("options"),
    "true_false": AnswerConfig("options"),
    "math": AnswerConfig("generate"),
    "conversational": AnswerConfig("generate"),
}


def answer_group(dataset: str) -> str:
    """``mcq``, ``true_false``, ``math`` (free-form math) or ``conversational`` (CoQA)."""
    s = spec(dataset)
    if s.type == "free_form":
        return "math" if s.domain == "math" else "conversational"
    return s.type


def chosen_configs(model) -> dict[str, AnswerConfig]:
    """The configurations chosen on train/dev data for a model, per group (only the groups that
    have one). ``model``: any model reference (:func:`routelib.models.registry.resolve`), or a
    backend or backend factory (its ``spec`` when it has one, else a backend's ``name``).

    A registered model's choice is part of its spec (``ModelSpec.answer_styles``, chosen by
    ``python -m routelib select`` and written there by hand); for any other model it is what
    ``select`` saved for its model id with :func:`routelib.models.registry.save_answer_styles`.
    A name that is no model (a test backend's label) has no choice."""
    if getattr(model, "spec", None) is not None:  # a backend or factory that knows its model
        model = model.spec
    elif hasattr(model, "generate"):  # a backend without one: its name may be registered
        model = getattr(model, "name", "")
    try:
        styles = models.answer_styles(model)
    except ModelError:
        return {}
    return {group: AnswerConfig(style, chat) for group, style, chat in styles}


def default_config(dataset: str, model=None) -> AnswerConfig:
    """The chosen configuration of ``model`` for the dataset's answer group
    (:func:`chosen_configs`), else the documented default (:data:`DEFAULT_CONFIGS`)."""
    group = answer_group(dataset)
    chosen = chosen_configs(model) if model is not None else {}
    return chosen.get(group, DEFAULT_CONFIGS[group])


def request_key(model_id: str, prompt: str, params: dict) -> str:
    """Content address of one model request: model file hash, prompt, decoding params, seed."""
    blob = json.dumps({"model": model_id, "prompt": prompt, "params": params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def answer_records(backend: Backend, records: Sequence[Record], cfg: AnswerConfig,
                   split: str = "eval") -> list[dict]:
    """Answer ``records`` (all with the same config) and return one row dict each, in order."""
    chat = backend.render_chat if cfg.chat else None
    if cfg.chat and backend.render_chat("x") is None:
        raise ValueError(f"model {backend.name!r} has no chat template; use chat=False")
    built = [prompts.build(r, cfg.style, chat=chat, max_new_tokens=cfg.max_new_tokens)
             for r in records]
    rows: list[dict | None] = [None] * len(records)
    choice_idx = [i for i, p in enumerate(built) if p.is_choice]
    gen_idx = [i for i, p in enumerate(built) if not p.is_choice]

    flat = [(i, k) for i in choice_idx for k in range(len(built[i].continuations))]
    # only choice styles score options (an API backend may have no loglikelihood at all)
    lls = backend.loglikelihood([LoglikRequest(built[i].text, built[i].continuations[k])
                                 for i, k in flat]) if flat else []
    by_item: dict[int, list] = {}
    for (i, k), ll in zip(flat, lls):
        by_item.setdefault(i, []).append(ll)
    for i in choice_idx:
        p, options = built[i], by_item[i]
        scores = [ll.logprob / ll.n_tokens if cfg.style == "options" else ll.logprob
                  for ll in options]
        best = max(range(len(scores)), key=lambda k: (scores[k], -k))
        params = {"kind": "choice", "style": cfg.style, "continuations": list(p.continuations)}
        rows[i] = _row(backend, records[i], cfg, split,
                       Answered(p.text, p.responses[best], options[best].token_logprobs,
                                "choice", params, scores, best))

    reqs = [GenRequest(built[i].text, max_new_tokens=built[i].max_new_tokens, temperature=0.0,
                       seed=cfg.seed, stop=built[i].stop) for i in gen_idx]
    for i, req, gens in zip(gen_idx, reqs, backend.generate(reqs) if reqs else []):
        g = gens[0]
        rows[i] = _row(backend, records[i], cfg, split,
                       Answered(req.prompt, g.text, g.token_logprobs, g.finish_reason,
                                req.params()))
    return rows  # type: ignore[return-value]


@dataclass(frozen=True)
class Answered:
    """What the model did with one record: the prompt, its response and that response's token
    log-probs, why it ended, the request's parameters (they enter the request key) and, for
    choice styles, every option's score and the chosen option's index."""
    prompt: str
    response: str
    token_logprobs: Sequence[float]
    finish_reason: str
    params: dict
    option_scores: Sequence[float] | None = None
    choice: int | None = None


def _row(backend, record: Record, cfg: AnswerConfig, split: str, a: Answered) -> dict:
    g = grading.grade(record, a.response)
    lp = [float(x) for x in a.token_logprobs]
    if any(not math.isfinite(x) for x in lp):
        raise ValueError(f"{record.id}: non-finite token log-prob from {backend.name}")
    return {
        "dataset": record.dataset, "split": split, "item_id": record.id, "model": backend.name,
        "model_id": backend.model_id, "style": cfg.style, "chat": cfg.chat, "prompt": a.prompt,
        "response": a.response, "token_logprobs": lp, "n_tokens": len(lp),
        "option_scores": None if a.option_scores is None else [float(s) for s in a.option_scores],
        "choice": a.choice, "finish_reason": a.finish_reason, "extracted": g.extracted,
        "correct": bool(g.correct), "grade_rule": g.rule, "grade_detail": g.detail,
        "request_key": request_key(backend.model_id, a.prompt, a.params), "seed": cfg.seed,
    }
