"""Prompt builders, one per task type, and the answer *styles* that pair a prompt with scoring.

A style says how a model answers a record:

=================  =========================================================================
``options``        (MCQ, true/false) score each option's text as a continuation of a plain
                   ``Question: ...\\nAnswer:`` prompt; the answer is the option with the highest
                   log-likelihood per token (the lm-evaluation-harness ``acc_norm`` rule by
                   token count). True/false options are `` yes`` / `` no``.
``letters``        (MCQ, true/false) list the options as ``A. ...``; the answer is the letter
                   with the highest next-token probability after ``Answer:`` (chat template
                   when the model has one).
``generate``       (any type) greedy generation, graded by :mod:`routelib.answers.grading`. Math asks
                   for ``The answer is <number>``; CoQA gives the story and earlier turns.
=================  =========================================================================

Prompt texts (``{...}`` are record fields; ``<letters>`` is ``A. opt\\nB. opt ...``):

- MCQ/``options``: ``Question: {question}\\nAnswer:`` + `` {option}``
- true/false/``options``: ``{context}\\n`` (BoolQ passage, if any) ``Question: {question}?\\nAnswer:``
  + `` yes`` / `` no``
- MCQ/``letters``: ``Question: {question}\\n<letters>\\nAnswer with the letter of the correct
  option.\\nAnswer:`` + `` A`` / `` B`` ...
- math/``generate``: ``Question: {question}\\nAnswer with a number. End with "The answer is
  <number>."\\nAnswer:`` (stop at a blank line, a new ``Question:`` or a repeated ``Answer:`` line)
- CoQA/``generate``: ``{story}\\n\\nQ: ...\\nA: ...\\nQ: {question}\\nA:`` (earlier turns in
  ``context``; stop at the end of the line)
- other free-form/``generate``: ``Question: {question}\\nAnswer:`` (stop at the end of the line)

With a chat template (``chat=True``), the text before ``Answer:`` becomes the user message and
the assistant turn starts the answer; the continuation then has no leading space.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from routelib.data.schema import Record
from routelib.errors import RoutelibError

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
STYLES = ("options", "letters", "generate")
MATH_INSTRUCTION = 'Answer with a number. End with "The answer is <number>."'
LETTER_INSTRUCTION = "Answer with the letter of the correct option."


class PromptError(RoutelibError, ValueError):
    pass


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt; ``continuations`` non-empty means: choose among them by likelihood."""
    text: str
    continuations: tuple[str, ...] = ()
    responses: tuple[str, ...] = ()   # what the model "said" when it picks continuation i
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 0

    @property
    def is_choice(self) -> bool:
        return bool(self.continuations)


ChatRenderer = Callable[[str], str]  # user message -> full prompt up to the assistant's turn


def option_labels(record: Record) -> tuple[str, ...]:
    """Display strings of a record's options: ``A. text`` (MCQ) or ``yes``/``no`` (true/false)."""
    if record.type == "mcq":
        if len(record.choices) > len(LETTERS):
            raise PromptError(f"{record.id}: {len(record.choices)} options exceed A-Z")
        return tuple(f"{LETTERS[i]}. {c}" for i, c in enumerate(record.choices))
    if record.type == "true_false":
        return ("yes", "no")
    raise PromptError(f"{record.id}: a {record.type} record has no options")


def _question_block(record: Record) -> str:
    q = record.question.strip()
    if record.type == "true_false":
        head = f"{record.context.strip()}\n" if record.context else ""
        return f"{head}Question: {q if q.endswith('?') else q + '?'}"
    return f"Question: {q}"


def _finish(body: str, chat: ChatRenderer | None) -> tuple[str, str]:
    """Return (prompt text, separator before an answer) in plain or chat format."""
    if chat is None:
        return f"{body}\nAnswer:", " "
    return chat(body), ""


def build(record: Record, style: str, chat: ChatRenderer | None = None,
          max_new_tokens: int | None = None) -> Prompt:
    """The prompt for ``record`` in ``style``; ``chat`` renders a chat template (None: plain)."""
    if style not in STYLES:
        raise PromptError(f"style {style!r} is not known; known: {', '.join(STYLES)}")
    if style in ("options", "letters"):
        if record.type == "free_form":
            raise PromptError(f"style {style!r} needs options; {record.dataset} is free-form")
        labels = option_labels(record)
        if style == "options":
            text, sep = _finish(_question_block(record), chat)
            texts = record.choices if record.type == "mcq" else ("yes", "no")
            return Prompt(text, tuple(sep + t for t in texts), labels)
        lines = "\n".join(labels) if record.type == "mcq" else "A. yes\nB. no"
        text, sep = _finish(f"{_question_block(record)}\n{lines}\n{LETTER_INSTRUCTION}", chat)
        n = len(labels)
        return Prompt(text, tuple(sep + LETTERS[i] for i in range(n)), labels)
    # generate
    if record.type == "free_form" and record.context:
        context = record.context.strip()
        sep = "\n" if "\nQ: " in context else "\n\n"  # turn 1: the story alone
        body = f"{context}{sep}Q: {record.question.strip()}"
        text = chat(body) if chat else f"{body}\nA:"
        return Prompt(text, stop=("\n",), max_new_tokens=max_new_tokens or 32)
    if record.domain == "math" and record.type == "free_form":
        body = f"{_question_block(record)}\n{MATH_INSTRUCTION}"
        text, _ = _finish(body, chat)
        return Prompt(text, stop=("\n\n", "Question:", "\nAnswer:"), max_new_tokens=max_new_tokens or 96)
    body = _question_block(record)
    if record.type == "mcq":
        body += "\n" + "\n".join(option_labels(record)) + "\n" + LETTER_INSTRUCTION
    text, _ = _finish(body, chat)
    return Prompt(text, stop=("\n",), max_new_tokens=max_new_tokens or 32)
