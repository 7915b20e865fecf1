"""Statistic names: the one place where the per-item inputs of the UQ methods are defined.

A *statistic* is one value per item, produced by a model pass (greedy answer, option scoring, a
follow-up prompt, sampling, a hidden-state read) and consumed by the uncertainty methods of
:mod:`routelib.uq.methods`, each of which declares the names it needs and is a pure function of them.
A statistics dict for one item maps these names to values; a name a pass did not produce is
absent (never ``None``).

==========================  ===========================  ==================================
name (constant)             type / shape, per item       meaning
==========================  ===========================  ==================================
``GREEDY_TOKEN_LOGPROBS``   ``list[float]``, length N    log-probs of the greedy answer's
                                                         tokens (MCQ: the chosen option's
                                                         continuation tokens, as in
                                                         :mod:`routelib.answers.answer`); N may be 0
``OPTION_LOGPROBS``         ``list[float]``, length K    per-option score (``options`` style:
                                                         per-token mean log-likelihood;
                                                         ``letters``: the letter's log-prob);
                                                         MCQ / true-false only, else absent
``CHOSEN_OPTION``           ``int`` in ``[0, K)``        index of the chosen option (MCQ only)
``IS_MCQ``                  ``bool``                     the answer was chosen among options
``PTRUE_LOGPROBS``          ``tuple[float, float]``      ``(log p("True"), log p("False"))``
                                                         of the next token after the P(True)
                                                         follow-up question
``VERBAL_1S_TEXT``          ``str``                      raw output of the one-stage verbal
                                                         confidence prompt (answer + number)
``VERBAL_2S_TEXT``          ``str``                      raw output of the second stage of the
                                                         two-stage verbal prompt (number only)
``SAMPLE_TEXTS``            ``list[str]``, length m (5)  answers sampled at temperature 1
``SAMPLE_ANSWERS``          ``list[str | None]``, m      the option each sample names (its
                                                         text; ``None``: empty or
                                                         unparsable); MCQ / true-false only,
                                                         else absent
``HIDDEN_STATE``            ``np.ndarray``, ``(d,)``     hidden state at the last token of
                                                         prompt + answer, after the 8th-to-last
                                                         layer (routelib.uq.passes)
==========================  ===========================  ==================================

The string values are short and stable: they are keys of cached tables and must not change.
"""
from __future__ import annotations

from typing import Iterable, Mapping

from routelib.errors import RoutelibError

GREEDY_TOKEN_LOGPROBS = "greedy_token_logprobs"
OPTION_LOGPROBS = "option_logprobs"
CHOSEN_OPTION = "chosen_option"
IS_MCQ = "is_mcq"
PTRUE_LOGPROBS = "ptrue_logprobs"
VERBAL_1S_TEXT = "verbal_1s_text"
VERBAL_2S_TEXT = "verbal_2s_text"
SAMPLE_TEXTS = "sample_texts"
SAMPLE_ANSWERS = "sample_answers"
HIDDEN_STATE = "hidden_state"

# every statistic name with its one-line description (the table above, for messages and docs)
STATISTICS: dict[str, str] = {
    GREEDY_TOKEN_LOGPROBS: "list[float]: log-probs of the greedy answer's tokens",
    OPTION_LOGPROBS: "list[float]: per-option normalized log-likelihood score (MCQ only)",
    CHOSEN_OPTION: "int: index of the chosen option (MCQ only)",
    IS_MCQ: "bool: the answer was chosen among options",
    PTRUE_LOGPROBS: "tuple[float, float]: log p('True'), log p('False') after the follow-up",
    VERBAL_1S_TEXT: "str: raw output of the one-stage verbalized-confidence prompt",
    VERBAL_2S_TEXT: "str: raw output of the two-stage verbalized-confidence prompt",
    SAMPLE_TEXTS: "list[str]: m answers sampled at temperature 1",
    SAMPLE_ANSWERS: "list[str | None]: the option each sample names, None if none (MCQ only)",
    HIDDEN_STATE: "np.ndarray (d,): hidden state after the 8th-to-last layer",
}

# number of samples drawn for SAMPLE_TEXTS (the paper's m)
N_SAMPLES = 5
# layer read for HIDDEN_STATE (negative counts from the end)
HIDDEN_LAYER = -8


class MissingStatisticError(RoutelibError, KeyError):
    """A method was given a statistics dict without a statistic it needs."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def require(stats: Mapping, names: Iterable[str], who: str) -> None:
    """Raise :class:`MissingStatisticError` naming every statistic of ``names`` not in ``stats``."""
    missing = [n for n in names if n not in stats]
    if missing:
        desc = "; ".join(f"{n!r} ({STATISTICS.get(n, 'unknown statistic')})" for n in missing)
        raise MissingStatisticError(
            f"method {who!r} needs statistic(s) {desc}, absent from this item's statistics "
            f"(present: {sorted(stats)}); compute them with the pass that produces them")
