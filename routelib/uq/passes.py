r"""Model passes: from answer rows to the per-item statistics dicts of :mod:`routelib.uq.methods`.

A pass is ``(backend, records, rows) -> list[dict]`` (batch in, list out, same order; at most one
backend call) producing the statistics of :data:`PASS_PROVIDES`. ``rows`` are the greedy answer
rows of :func:`routelib.cache.runs.generate` (DataFrame or dicts, aligned with ``records``).
:func:`compute_stats` runs each pass the methods need exactly once and merges per item.

- ``greedy`` (no model call): the row's ``token_logprobs``; choice styles: ``option_scores``,
  ``choice``.
- ``p_true``: log p of `` True`` / `` False`` after ``<answered> + PTRUE_FOLLOWUP``, one
  ``loglikelihood`` call with 2 requests per item.
- ``verbal_1s``: greedy reply (48 tokens, stop at a blank line) to
  ``<question>\n + VERBAL_1S_INSTRUCTION + \nAnswer:``.
- ``verbal_2s``: greedy reply (16 tokens, stop at a line end) to ``<answered> +
  VERBAL_2S_FOLLOWUP``.
- ``samples``: m = 5 samples at temperature 1, seed 50. Free-form rows: of the answer prompt,
  with the greedy answer's stop strings and default token limit (an ``AnswerConfig.max_new_tokens``
  override is not stored in the row). Choice-style (MCQ / true-false) rows: of the *letters*
  prompt (the question with its ``A. option`` lines and the letter instruction,
  :func:`routelib.answers.prompts.build`, in the row's chat format), whatever style chose the
  greedy answer, ``CHOICE_SAMPLE_MAX_TOKENS`` (4) new tokens, stop at a line end; each sample is
  parsed (:func:`parse_choice`) into the option it names, ``SAMPLE_ANSWERS`` (``None`` when it
  names none: empty or unparsable, a discard for the Jaccard degree). Jaccard similarity then
  compares the options the samples chose, the answer the method is about. (Before this, choice
  rows sampled 32 free tokens after a prompt without the options: unrelated text, often empty.)
- ``hidden``: hidden state after layer ``stats.HIDDEN_LAYER`` at the last token of ``<answered>``.

``<answered>``: the row's prompt, a space (none after a chat template's assistant turn), its
response. ``<question>``: context (if any), ``Question: {question}``, MCQ ``A. option`` lines.

- ``PTRUE_FOLLOWUP = "\nIs the proposed answer correct? Answer True or False.\nAnswer:"``
- ``VERBAL_1S_INSTRUCTION = 'Give your answer and your confidence that it is correct, as a
  percentage between 0 and 100%, in the form "Answer: <answer>\nConfidence: <number>%".'``
- ``VERBAL_2S_FOLLOWUP = "\nHow confident are you that the proposed answer is correct? Give a
  percentage between 0 and 100%.\nConfidence:"``

Chat format (the backend has a chat template and the answer row used it; a plain-format answer
gets plain follow-ups): p(True) and two-stage prompts are one
user message ``<question>\nProposed answer: {response}\n`` + the follow-up's question line
(without its trailing ``Answer:`` / ``Confidence:``); p(True) then scores ``True`` / ``False``
without a leading space (as :mod:`routelib.answers.prompts` does). One-stage: the user message is
``<question>\n + VERBAL_1S_INSTRUCTION``.
"""
from __future__ import annotations

import math
import re
from typing import Callable, Sequence

from routelib.answers import prompts
from routelib.config import SEED
from routelib.errors import RoutelibError
from routelib.models.backend import GenRequest, LoglikRequest
from routelib.uq import stats as S
from routelib.uq.methods import METHODS

PTRUE_FOLLOWUP = "\nIs the proposed answer correct? Answer True or False.\nAnswer:"
VERBAL_1S_INSTRUCTION = ('Give your answer and your confidence that it is correct, as a percentage '
                         'between 0 and 100%, in the form "Answer: <answer>\nConfidence: '
                         '<number>%".')
VERBAL_2S_FOLLOWUP = ("\nHow confident are you that the proposed answer is correct? Give a "
                      "percentage between 0 and 100%.\nConfidence:")
PTRUE_CONTINUATIONS = (" True", " False")
VERBAL_1S_MAX_TOKENS, VERBAL_2S_MAX_TOKENS, SAMPLE_TEMPERATURE = 48, 16, 1.0
CHOICE_SAMPLE_MAX_TOKENS, CHOICE_SAMPLE_STOP = 4, ("\n",)
# a sample names option k when, markdown "*" removed, it starts with k's letter (after an
# optional "(", "[" or "Option ") alone or followed by . ) : ] ; true/false samples may also
# say the option's word (yes / no)
_LETTER = re.compile(r"^\s*(?:option\s+)?[\(\[]?([A-Z])(?:\s*[.):\]]|\s*$)", re.IGNORECASE)


class PassError(RoutelibError, ValueError):
    """Records and rows do not match, or a row's prompt is not today's prompt."""


# ---- helpers --------------------------------------------------------------------------------
def _is_choice(row) -> bool:
    s = row.get("option_scores")
    return s is not None and not (isinstance(s, float) and math.isnan(s))


def _chat(backend, row=None) -> bool:
    """Follow-ups use the chat format when the backend has one and the answer used it."""
    return backend.render_chat("x") is not None and (row is None or bool(row.get("chat")))


def _question(record) -> str:
    head = f"{record.context.strip()}\n" if record.context else ""
    body = f"{head}Question: {record.question.strip()}"
    if record.type == "mcq":
        body += "\n" + "\n".join(prompts.option_labels(record))
    return body


def _answered(row) -> str:
    """The answer prompt followed by the model's response (the greedy answer in context)."""
    return f"{row['prompt']}{'' if row['chat'] else ' '}{row['response']}"


def _followup(backend, record, row, followup: str) -> str:
    """Plain: answered prompt + follow-up. Chat: one user message with question, proposed
    answer and the follow-up's question line."""
    if not _chat(backend, row):
        return _answered(row) + followup
    ask = followup.strip().rsplit("\n", 1)[0]
    return backend.render_chat(f"{_question(record)}\nProposed answer: {row['response']}\n{ask}")


# ---- passes ---------------------------------------------------------------------------------
def greedy_pass(backend, records, rows) -> list[dict]:
    """Statistics of the greedy answer itself; no model call."""
    out = [{S.GREEDY_TOKEN_LOGPROBS: [float(x) for x in row["token_logprobs"]],
            S.IS_MCQ: _is_choice(row)} for row in rows]
    for d, row in zip(out, rows):
        if d[S.IS_MCQ]:  # absent (never None) for free-form rows
            d.update({S.OPTION_LOGPROBS: [float(x) for x in row["option_scores"]],
                      S.CHOSEN_OPTION: int(row["choice"])})
    return out


def ptrue_pass(backend, records, rows) -> list[dict]:
    reqs = [LoglikRequest(_followup(backend, rec, row, PTRUE_FOLLOWUP),
                          c.lstrip() if _chat(backend, row) else c)
            for rec, row in zip(records, rows) for c in PTRUE_CONTINUATIONS]
    lls = backend.loglikelihood(reqs) if reqs else []
    return [{S.PTRUE_LOGPROBS: (lls[2 * i].logprob, lls[2 * i + 1].logprob)}
            for i in range(len(rows))]


def _texts(backend, reqs: list[GenRequest]) -> list[list[str]]:
    return [[g.text for g in gens] for gens in backend.generate(reqs)] if reqs else []


def verbal_1s_pass(backend, records, rows) -> list[dict]:
    bodies = [f"{_question(r)}\n{VERBAL_1S_INSTRUCTION}" for r in records]
    texts = [backend.render_chat(b) if _chat(backend, row) else f"{b}\nAnswer:"
             for b, row in zip(bodies, rows)]
    reqs = [GenRequest(t, max_new_tokens=VERBAL_1S_MAX_TOKENS, stop=("\n\n",)) for t in texts]
    return [{S.VERBAL_1S_TEXT: t} for [t] in _texts(backend, reqs)]


def verbal_2s_pass(backend, records, rows) -> list[dict]:
    reqs = [GenRequest(_followup(backend, rec, row, VERBAL_2S_FOLLOWUP),
                       max_new_tokens=VERBAL_2S_MAX_TOKENS, stop=("\n",))
            for rec, row in zip(records, rows)]
    return [{S.VERBAL_2S_TEXT: t} for [t] in _texts(backend, reqs)]


def _sample_request(backend, record, row) -> GenRequest:
    chat = backend.render_chat if row["chat"] else None
    if _is_choice(row):
        text = prompts.build(record, "letters", chat=chat).text
        limit, stop = CHOICE_SAMPLE_MAX_TOKENS, CHOICE_SAMPLE_STOP
    else:
        built = prompts.build(record, "generate", chat=chat)
        if built.text != row["prompt"]:
            raise PassError(f"{record.id}: the row's prompt is not today's 'generate' prompt "
                            "(prompts changed since the run?); regenerate the answers")
        text, limit, stop = row["prompt"], built.max_new_tokens, built.stop
    return GenRequest(text, max_new_tokens=limit, temperature=SAMPLE_TEMPERATURE,
                      n=S.N_SAMPLES, seed=SEED, stop=stop)


def parse_choice(text: str, record) -> str | None:
    """The text of the option a sampled reply to the letters prompt names (MCQ: the option's
    text; true/false: ``yes`` / ``no``), or ``None`` when it names none (empty, another letter,
    free text)."""
    options = list(record.choices) if record.type == "mcq" else ["yes", "no"]
    text = (text or "").replace("*", "")
    m = _LETTER.match(text)
    if m and (m.group(1).isupper() or text.lower().lstrip().startswith("option")):
        k = prompts.LETTERS.index(m.group(1).upper())
        return options[k] if k < len(options) else None
    if record.type == "true_false":
        word = re.match(r"^\s*([A-Za-z]+)", text)
        if word and word.group(1).lower() in options:
            return word.group(1).lower()
    return None


def samples_pass(backend, records, rows) -> list[dict]:
    reqs = [_sample_request(backend, rec, row) for rec, row in zip(records, rows)]
    out = []
    for rec, row, texts in zip(records, rows, _texts(backend, reqs)):
        d = {S.SAMPLE_TEXTS: texts}
        if _is_choice(row):
            d[S.SAMPLE_ANSWERS] = [parse_choice(t, rec) for t in texts]
        out.append(d)
    return out


def hidden_pass(backend, records, rows) -> list[dict]:
    texts = [_answered(row) for row in rows]
    h = backend.hidden_states(texts, layer=S.HIDDEN_LAYER) if texts else []
    return [{S.HIDDEN_STATE: h[i]} for i in range(len(texts))]


# ---- registry -------------------------------------------------------------------------------
PASSES: dict[str, Callable] = {
    "greedy": greedy_pass, "p_true": ptrue_pass, "verbal_1s": verbal_1s_pass,
    "verbal_2s": verbal_2s_pass, "samples": samples_pass, "hidden": hidden_pass,
}

PASS_PROVIDES: dict[str, tuple[str, ...]] = {
    "greedy": (S.GREEDY_TOKEN_LOGPROBS, S.OPTION_LOGPROBS, S.CHOSEN_OPTION, S.IS_MCQ),
    "p_true": (S.PTRUE_LOGPROBS,), "verbal_1s": (S.VERBAL_1S_TEXT,),
    "verbal_2s": (S.VERBAL_2S_TEXT,), "samples": (S.SAMPLE_TEXTS, S.SAMPLE_ANSWERS),
    "hidden": (S.HIDDEN_STATE,),
}

# Bump when a pass's prompt or decoding changes in a way PASS_PARAMS does not show: it is part of
# every cached statistic's key (routelib.uq.statcache).
PASS_VERSION = 1

# Everything that determines a pass's output besides the model and the answer row; hashed into
# the cache key of the statistics it produced.
PASS_PARAMS: dict[str, dict] = {
    "greedy": {},
    "p_true": {"followup": PTRUE_FOLLOWUP, "continuations": PTRUE_CONTINUATIONS},
    "verbal_1s": {"instruction": VERBAL_1S_INSTRUCTION, "max_new_tokens": VERBAL_1S_MAX_TOKENS,
                  "stop": ["\n\n"]},
    "verbal_2s": {"followup": VERBAL_2S_FOLLOWUP, "max_new_tokens": VERBAL_2S_MAX_TOKENS,
                  "stop": ["\n"]},
    # free-form runs; the two choice_* entries are what choice rows used before CHOICE_SAMPLES
    # (kept so that the cached free-form samples keep their key)
    "samples": {"n": S.N_SAMPLES, "temperature": SAMPLE_TEMPERATURE, "seed": SEED,
                "choice_max_new_tokens": 32, "choice_stop": ["\n"],
                "sampler": "per-row-generator-v2"},
    "hidden": {"layer": S.HIDDEN_LAYER, "position": "last token of prompt + answer"},
}
# the samples pass of a choice-style (MCQ / true-false) answer run
CHOICE_SAMPLES_PARAMS = {"n": S.N_SAMPLES, "temperature": SAMPLE_TEMPERATURE, "seed": SEED,
                         "prompt": "letters", "max_new_tokens": CHOICE_SAMPLE_MAX_TOKENS,
                         "stop": list(CHOICE_SAMPLE_STOP), "parse": "letter or yes/no v2",
                         "sampler": "per-row-generator-v2"}
CHOICE_STYLES = ("options", "letters")


def pass_params(name: str, answer_spec: dict) -> dict:
    """What determines pass ``name``'s output on the answer run ``answer_spec`` (hashed into
    its cache key): :data:`PASS_PARAMS`, except the samples of a choice-style run."""
    if name == "samples" and answer_spec["answer"]["style"] in CHOICE_STYLES:
        return CHOICE_SAMPLES_PARAMS
    return PASS_PARAMS[name]

_PROVIDER = {stat: p for p, names in PASS_PROVIDES.items() for stat in names}


def passes_for(methods: Sequence) -> list[str]:
    """Pass names (in :data:`PASSES` order) producing every statistic the methods require;
    ``methods``: names or :mod:`routelib.uq.methods` method instances."""
    names = [m if isinstance(m, str) else getattr(m, "name", None) for m in methods]
    for name in names:
        if name not in METHODS:
            raise KeyError(f"UQ method {name!r} is not known; known: {', '.join(METHODS)}")
    need = {_PROVIDER[s] for name in names for s in METHODS[name].requires}
    return [p for p in PASSES if p in need]


def compute_stats(backend, records: Sequence, rows, methods: Sequence) -> list[dict]:
    """One statistics dict per record: each needed pass run once, results merged per item."""
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    records = list(records)
    if len(rows) != len(records):
        raise PassError(f"{len(records)} records but {len(rows)} answer rows")
    bad = next(((r.id, w["item_id"]) for r, w in zip(records, rows) if r.id != w["item_id"]), None)
    if bad:
        raise PassError(f"records and rows are not aligned: record {bad[0]!r} has row {bad[1]!r}; "
                        "pass the rows of runs.generate in data order")
    out: list[dict] = [{} for _ in records]
    for name in passes_for(methods):
        produced = PASSES[name](backend, records, rows)
        for item, d in zip(out, produced):
            item.update(d)
    return out
