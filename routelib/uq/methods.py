"""The paper's eight uncertainty methods (Section 3.1), each a pure function of named statistics.

Every method is a small class with

- ``name``: its key in :data:`METHODS` and in result tables;
- ``requires``: the statistic names (:mod:`routelib.uq.stats`) a pipeline must be able to provide
  for it; ``needed(stats)`` narrows this to one item (only :class:`AvgTokenProb` differs: it
  reads option scores for MCQ items and token log-probs otherwise);
- ``__call__(stats) -> float``: the **confidence** of one item, *higher = more confident*;
- ``compute(items) -> np.ndarray``: the same over a list of statistics dicts (vectorized for
  the probes);
- ``discards``: ``None`` if the method always returns a number, else a sentence saying when it
  returns NaN. A NaN confidence means the item is *discarded* (the paper drops verbalized
  answers without a usable number); it is counted by :func:`n_discarded` and
  :mod:`routelib.uq.metrics`, never silently dropped.

A statistic missing from an item raises :class:`routelib.uq.stats.MissingStatisticError` naming it.

============================  ========================================================
method                        confidence
============================  ========================================================
``avg_token_prob``            MCQ: softmax of the option scores at the chosen option;
                              free-form: mean of exp(log p) over generated tokens
``perplexity``                1 / PPL, PPL = exp(-(1/N) sum ln p(y_i))
``p_true``                    p(True) / (p(True) + p(False)) after the follow-up question
``verbal_1s``, ``verbal_2s``  number parsed by :func:`routelib.uq.verbal.parse_verbal_confidence`
``jaccard_degree``            1 - trace(mI - D) / m^2 over sample Jaccard similarities
``trained_probe``             probe's P(correct | hidden state), in-domain probe
``ood_probe``                 the same with a probe trained on the other datasets
============================  ========================================================
"""
from __future__ import annotations

import math
import string
import unicodedata
from typing import ClassVar, Mapping, Sequence

import numpy as np

from routelib.uq import stats as S
from routelib.uq.verbal import parse_verbal, parse_verbal_confidence  # noqa: F401  (API)


def _logprobs(stats: Mapping, name: str, who: str) -> np.ndarray:
    lp = np.asarray(stats[name], dtype=float).reshape(-1)
    if np.isnan(lp).any():
        raise ValueError(f"method {who!r}: statistic {name!r} contains NaN log-probs")
    if (lp > 1e-6).any():
        raise ValueError(f"method {who!r}: statistic {name!r} has log-probs > 0 ({lp.max():g}); "
                         "pass log-probabilities, not probabilities or logits")
    return lp


class Method:
    """Base class: declared statistics, a per-item ``__call__`` and a list ``compute``."""

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]]
    discards: ClassVar[str | None] = None

    def needed(self, stats: Mapping) -> tuple[str, ...]:
        """The statistics this item needs (default: all of :attr:`requires`)."""
        return self.requires

    def __call__(self, stats: Mapping) -> float:
        S.require(stats, self.needed(stats), self.name)
        return float(self.confidence(stats))

    def confidence(self, stats: Mapping) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self, items: Sequence[Mapping]) -> np.ndarray:
        """Confidences of ``items`` (one statistics dict each), shape ``(len(items),)``."""
        return np.array([self(s) for s in items], dtype=float)

    def discard_reasons(self, items: Sequence[Mapping], confidence) -> list[str]:
        """Per item, why it was discarded (``""`` where its confidence is a number): by default
        :attr:`discards` for every NaN."""
        return [(self.discards or "") if math.isnan(c) else "" for c in confidence]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ---- token-probability methods -------------------------------------------------------------
class AvgTokenProb(Method):
    """Average token probability.

    Free-form answers: ``mean_i exp(ln p(y_i))`` over the greedy answer's tokens.

    MCQ / true-false answers are chosen by option log-likelihood (:mod:`routelib.answers.answer`), not
    generated, so the model's own "token probability" of the choice is the probability of the
    chosen option among the options: ``softmax(OPTION_LOGPROBS)[CHOSEN_OPTION]``. With the
    ``options`` style the scores are per-token mean log-likelihoods, so this is the
    length-normalized analogue of the single answer-token probability a generated letter would
    have; with ``letters`` it is exactly that letter token's probability renormalized over the
    option letters. Discards (NaN) a free-form answer with no generated token.
    """

    name = "avg_token_prob"
    requires = (S.IS_MCQ, S.GREEDY_TOKEN_LOGPROBS, S.OPTION_LOGPROBS, S.CHOSEN_OPTION)
    discards = "a free-form answer with no generated token (empty generation)"

    def needed(self, stats: Mapping) -> tuple[str, ...]:
        S.require(stats, (S.IS_MCQ,), self.name)
        if stats[S.IS_MCQ]:
            return (S.IS_MCQ, S.OPTION_LOGPROBS, S.CHOSEN_OPTION)
        return (S.IS_MCQ, S.GREEDY_TOKEN_LOGPROBS)

    def confidence(self, stats: Mapping) -> float:
        if stats[S.IS_MCQ]:
            scores = np.asarray(stats[S.OPTION_LOGPROBS], dtype=float).reshape(-1)
            k = int(stats[S.CHOSEN_OPTION])
            if not 0 <= k < len(scores):
                raise ValueError(f"method {self.name!r}: chosen option {k} is not among the "
                                 f"{len(scores)} option scores")
            if np.isnan(scores).any() or not np.isfinite(scores.max()):
                raise ValueError(f"method {self.name!r}: option scores must be finite-valued "
                                 f"log-likelihoods, got {scores.tolist()}")
            p = np.exp(scores - scores.max())
            return float(p[k] / p.sum())
        lp = _logprobs(stats, S.GREEDY_TOKEN_LOGPROBS, self.name)
        return float(np.exp(lp).mean()) if lp.size else math.nan


class Perplexity(Method):
    """Inverse perplexity: ``1 / PPL`` with ``PPL = exp(-(1/N) sum_i ln p(y_i))``.

    Equals the geometric mean of the token probabilities, in ``[0, 1]``. For MCQ the tokens
    are those of the chosen option's continuation. Discards (NaN) an empty generation.
    """

    name = "perplexity"
    requires = (S.GREEDY_TOKEN_LOGPROBS,)
    discards = "an answer with no generated token (empty generation)"

    def confidence(self, stats: Mapping) -> float:
        lp = _logprobs(stats, S.GREEDY_TOKEN_LOGPROBS, self.name)
        return float(np.exp(lp.mean())) if lp.size else math.nan


# ---- P(True) --------------------------------------------------------------------------------
def normalized_ptrue(logp_true: float, logp_false: float) -> float:
    """``p(T) / (p(T) + p(F))`` from the two log-probs: ``sigmoid(logp_true - logp_false)``,
    computed without overflow."""
    d = float(logp_true) - float(logp_false)
    if math.isnan(d):
        raise ValueError(f"P(True) is undefined for log-probs ({logp_true}, {logp_false})")
    if d >= 0:
        return 1.0 / (1.0 + math.exp(-d))
    e = math.exp(d)
    return e / (1.0 + e)


class PTrue(Method):
    """P(True): after the answer, the model is asked whether it is true; the next-token
    probabilities of "True" and "False" are renormalized to sum to one and the confidence is
    the share of "True"."""

    name = "p_true"
    requires = (S.PTRUE_LOGPROBS,)

    def confidence(self, stats: Mapping) -> float:
        pair = tuple(stats[S.PTRUE_LOGPROBS])
        if len(pair) != 2:
            raise ValueError(f"method {self.name!r}: {S.PTRUE_LOGPROBS!r} must be "
                             f"(log p(True), log p(False)), got {len(pair)} values")
        return normalized_ptrue(*pair)


# ---- verbalized confidence (the parser: routelib.uq.verbal) ---------------------------------
class _Verbal(Method):
    stat: ClassVar[str]
    discards = ("an output without a usable number, one that states a scale ('0 to 100') or "
                "one out of range (parse_verbal's reason)")

    def confidence(self, stats: Mapping) -> float:
        v = parse_verbal_confidence(stats[self.stat])
        return math.nan if v is None else v

    def discard_reasons(self, items: Sequence[Mapping], confidence) -> list[str]:
        """:func:`routelib.uq.verbal.parse_verbal`'s reason per discarded item."""
        return [parse_verbal(s[self.stat]).reason if math.isnan(c) else ""
                for s, c in zip(items, confidence)]


class Verbal1S(_Verbal):
    """One-stage verbalized confidence: the answer and its probability in one output."""
    name = "verbal_1s"
    stat = S.VERBAL_1S_TEXT
    requires = (S.VERBAL_1S_TEXT,)


class Verbal2S(_Verbal):
    """Two-stage verbalized confidence: the probability asked for after the answer."""
    name = "verbal_2s"
    stat = S.VERBAL_2S_TEXT
    requires = (S.VERBAL_2S_TEXT,)


# ---- sample consistency ---------------------------------------------------------------------
def _is_punct(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def word_set(text: str) -> frozenset[str]:
    """Lower-cased whitespace-separated words, punctuation stripped from each word's ends
    (``"Paris."`` -> ``paris``; ``3.5`` and ``don't`` stay whole); empty words dropped."""
    words = []
    for w in text.lower().split():
        i, j = 0, len(w)
        while i < j and _is_punct(w[i]):
            i += 1
        while j > i and _is_punct(w[j - 1]):
            j -= 1
        if i < j:
            words.append(w[i:j])
    return frozenset(words)


def jaccard(a: frozenset, b: frozenset) -> float:
    """``|a & b| / |a | b|``, with ``J(empty, empty) = 0``: an empty answer matches nothing
    (:class:`JaccardDegree` discards empty samples before it gets here)."""
    union = len(a | b)
    return 0.0 if union == 0 else len(a & b) / union


def jaccard_matrix(texts: Sequence[str]) -> np.ndarray:
    """Symmetric ``(m, m)`` matrix of pairwise Jaccard similarities of the word sets."""
    sets = [word_set(t) for t in texts]
    m = len(sets)
    w = np.eye(m)
    for i in range(m):
        for j in range(i + 1, m):
            w[i, j] = w[j, i] = jaccard(sets[i], sets[j])
    return w


def degree_uncertainty(w: np.ndarray) -> float:
    """``U_Deg = trace(m I - D) / m^2`` with ``D = diag(sum_j W_ij)`` (Lin et al. 2023)."""
    w = np.asarray(w, dtype=float)
    m = w.shape[0]
    d = np.diag(w.sum(axis=1))
    return float(np.trace(m * np.eye(m) - d) / m ** 2)


class JaccardDegree(Method):
    """Degree-matrix consistency of the m sampled answers with Jaccard similarity.

    ``W_ij`` = Jaccard similarity of the word sets of samples i and j (``W_ii = 1``),
    ``D = diag(sum_j W_ij)``, ``U = trace(mI - D) / m^2 = 1 - mean(W)``, and the
    confidence is ``1 - U = mean(W)``, in ``[1/m, 1]``.

    The answers compared: free-form items, the sampled texts (``SAMPLE_TEXTS``); MCQ and
    true/false items, the options the samples named (``SAMPLE_ANSWERS``, sampled from the
    letters prompt, :mod:`routelib.uq.passes`), so the method measures whether the model keeps
    choosing the same option. A sample that is empty (no word) or names no option is
    discarded, never counted as agreeing; the degree is computed over the samples left, and an
    item with fewer than 2 left is discarded (NaN, counted by the confidence table).
    :func:`usable_samples` says which samples an item keeps.

    Direction. The paper writes the confidence as ``trace(mI - D)/m^2``; taken literally that
    is *high when the samples disagree*: ``D_ii`` sums sample i's similarities, so agreeing
    samples give ``D = mI`` and ``trace(mI - D) = 0``, while pairwise-disjoint samples give
    ``D = I`` and ``trace = m^2 - m``. The quantity is the degree-matrix *uncertainty*
    ``U_Deg`` of Lin, Trivedi & Sun (2023, "Generating with Confidence"), which LM-Polygraph's
    ``DegMat`` also returns as an uncertainty (higher = more uncertain; it computes
    ``trace(m - D)``, the same number). We therefore compute the formula exactly as ``U`` and
    report ``1 - U`` so that higher = more confident, the convention of every method here.
    Unlike LM-Polygraph's Jaccard (``lower().split()``), punctuation is stripped from words.
    """

    name = "jaccard_degree"
    requires = (S.SAMPLE_TEXTS,)
    discards = "fewer than 2 usable samples (the others empty or naming no option)"

    def confidence(self, stats: Mapping) -> float:
        texts = stats[S.SAMPLE_TEXTS]
        if isinstance(texts, str) or len(texts) < 2:
            raise ValueError(f"method {self.name!r} needs a list of at least 2 sampled texts in "
                             f"{S.SAMPLE_TEXTS!r} (the paper uses m={S.N_SAMPLES})")
        kept = usable_samples(stats)
        return 1.0 - degree_uncertainty(jaccard_matrix(kept)) if len(kept) >= 2 else math.nan


def usable_samples(stats: Mapping) -> list[str]:
    """The answers :class:`JaccardDegree` compares for one item: the named options
    (``SAMPLE_ANSWERS``, when present) or the sampled texts, without the empty or unparsable
    ones."""
    answers = stats.get(S.SAMPLE_ANSWERS, stats[S.SAMPLE_TEXTS])
    return [a for a in answers if a is not None and word_set(a)]


# ---- probes ---------------------------------------------------------------------------------
class _Probe(Method):
    requires = (S.HIDDEN_STATE,)

    def __init__(self, probe):
        """``probe``: a fitted classifier with ``predict_proba`` (e.g.
        :class:`routelib.uq.probe.MLPProbe`), class 1 = the answer is correct."""
        if not hasattr(probe, "predict_proba"):
            raise TypeError(f"method {self.name!r} needs a fitted probe with predict_proba, got "
                            f"{type(probe).__name__}")
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted
        is_fitted = getattr(probe, "__sklearn_is_fitted__", None)  # e.g. a stored probe
        if is_fitted is None:
            check_is_fitted(probe)
        elif not is_fitted():
            raise NotFittedError(f"method {self.name!r}: the probe is not fitted")
        self.probe = probe

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.probe!r})"

    def _features(self, items: Sequence[Mapping]) -> np.ndarray:
        rows = [np.asarray(s[S.HIDDEN_STATE], dtype=np.float32).reshape(-1) for s in items]
        if len({r.shape[0] for r in rows}) > 1:
            raise ValueError(f"method {self.name!r}: hidden states of different sizes "
                             f"{sorted({r.shape[0] for r in rows})}")
        return np.stack(rows)

    def confidence(self, stats: Mapping) -> float:
        return float(self.probe.predict_proba(self._features([stats]))[0, 1])

    def compute(self, items: Sequence[Mapping]) -> np.ndarray:
        items = list(items)
        for s in items:
            S.require(s, self.requires, self.name)
        if not items:
            return np.zeros(0)
        return np.asarray(self.probe.predict_proba(self._features(items))[:, 1], dtype=float)


class TrainedProbe(_Probe):
    """P(correct) from the hidden state, by a probe trained on the same dataset's train
    split (see :mod:`routelib.uq.probe`)."""
    name = "trained_probe"


class OODProbe(_Probe):
    """P(correct) from the hidden state, by a probe trained on every *other* dataset
    (:func:`routelib.uq.probe.fit_ood_probe`); one instance per held-out dataset."""
    name = "ood_probe"


# the registry: one entry per method, in the paper's order
METHODS: dict[str, type[Method]] = {
    "avg_token_prob": AvgTokenProb,
    "perplexity": Perplexity,
    "p_true": PTrue,
    "verbal_1s": Verbal1S,
    "verbal_2s": Verbal2S,
    "jaccard_degree": JaccardDegree,
    "trained_probe": TrainedProbe,
    "ood_probe": OODProbe,
}

PROBE_METHODS = ("trained_probe", "ood_probe")  # their constructors take a fitted probe


def make(name: str, **kwargs) -> Method:
    """An instance of method ``name`` (probes: ``make("trained_probe", probe=fitted)``)."""
    if name not in METHODS:
        raise KeyError(f"UQ method {name!r} is not known; known: {', '.join(METHODS)}")
    return METHODS[name](**kwargs)


def n_discarded(confidence) -> int:
    """How many confidences are NaN (discarded items)."""
    return int(np.isnan(np.asarray(confidence, dtype=float)).sum())
