"""routelib.uq.methods: a contract test over every registered method, hand-computed values, and the
verbalized-confidence parser's rules."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from routelib.uq import methods as uq, stats as S, verbal
from routelib.uq.probe import MLPProbe
from routelib.uq.stats import MissingStatisticError

D = 8  # hidden size of the tiny probe


@pytest.fixture(scope="module")
def tiny_probe():
    """A small probe fitted on two separated blobs: class 1 around +1, class 0 around -1."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(1.0, 0.3, (40, D)), rng.normal(-1.0, 0.3, (40, D))])
    y = np.r_[np.ones(40), np.zeros(40)]
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # shared test cores: one intra-op thread is much faster
    try:
        return MLPProbe(hidden=(16, 8, 4), epochs=30, lr=1e-2).fit(X, y)
    finally:
        torch.set_num_threads(before)


def build(name: str, probe) -> uq.Method:
    return uq.make(name, probe=probe) if name in uq.PROBE_METHODS else uq.make(name)


def item(mcq: bool = False, **overrides) -> dict:
    """A valid statistics dict holding every statistic (free-form unless ``mcq``)."""
    s = {
        S.IS_MCQ: mcq,
        S.GREEDY_TOKEN_LOGPROBS: [-0.1, -0.5, -0.2],
        S.PTRUE_LOGPROBS: (-0.3, -1.5),
        S.VERBAL_1S_TEXT: "Guess: Paris\nProbability: 0.8",
        S.VERBAL_2S_TEXT: "0.7",
        S.SAMPLE_TEXTS: ["Paris", "Paris.", "paris", "Lyon", "It is Paris"],
        S.HIDDEN_STATE: np.full(D, 0.5, dtype=np.float32),
    }
    if mcq:
        s.update({S.OPTION_LOGPROBS: [-2.0, -0.5, -3.0, -1.0], S.CHOSEN_OPTION: 1})
    s.update(overrides)
    return s


# per method: (peaked item, flat item); the peaked one must be more confident
PEAKED_FLAT = {
    "avg_token_prob": (item(**{S.GREEDY_TOKEN_LOGPROBS: [-0.01, -0.02, -0.01]}),
                       item(**{S.GREEDY_TOKEN_LOGPROBS: [-3.0, -4.0, -2.5]})),
    "perplexity": (item(**{S.GREEDY_TOKEN_LOGPROBS: [-0.01, -0.02]}),
                   item(**{S.GREEDY_TOKEN_LOGPROBS: [-3.0, -4.0]})),
    "p_true": (item(**{S.PTRUE_LOGPROBS: (math.log(0.9), math.log(0.1))}),
               item(**{S.PTRUE_LOGPROBS: (math.log(0.5), math.log(0.5))})),
    "verbal_1s": (item(**{S.VERBAL_1S_TEXT: "Guess: Paris\nConfidence: 95%"}),
                  item(**{S.VERBAL_1S_TEXT: "Guess: Paris\nConfidence: 20%"})),
    "verbal_2s": (item(**{S.VERBAL_2S_TEXT: "95%"}), item(**{S.VERBAL_2S_TEXT: "20%"})),
    "jaccard_degree": (item(**{S.SAMPLE_TEXTS: ["the answer is paris"] * 5}),
                       item(**{S.SAMPLE_TEXTS: ["paris", "lyon", "nice", "lille", "metz"]})),
    "trained_probe": (item(**{S.HIDDEN_STATE: np.full(D, 1.0)}),
                      item(**{S.HIDDEN_STATE: np.full(D, -1.0)})),
    "ood_probe": (item(**{S.HIDDEN_STATE: np.full(D, 1.0)}),
                  item(**{S.HIDDEN_STATE: np.full(D, -1.0)})),
}
MCQ_PEAKED_FLAT = (item(mcq=True, **{S.OPTION_LOGPROBS: [-5.0, -0.1, -6.0, -5.5]}),
                   item(mcq=True, **{S.OPTION_LOGPROBS: [-1.0, -0.9, -1.0, -1.1]}))


def test_every_method_has_a_contract_case():
    assert set(PEAKED_FLAT) == set(uq.METHODS)


def test_registry_is_consistent():
    for key, cls in uq.METHODS.items():
        assert cls.name == key
        assert cls.requires and all(r in S.STATISTICS for r in cls.requires)
        assert cls.discards is None or isinstance(cls.discards, str)


@pytest.mark.parametrize("name", list(uq.METHODS))
class TestContract:
    def test_finite_confidence_of_right_shape(self, name, tiny_probe):
        m = build(name, tiny_probe)
        items = [item(), item(mcq=True), *PEAKED_FLAT[name]]
        one = m(items[0])
        assert isinstance(one, float) and math.isfinite(one)
        many = m.compute(items)
        assert isinstance(many, np.ndarray) and many.shape == (len(items),)
        assert np.isfinite(many).all()
        np.testing.assert_allclose(many, [m(s) for s in items], rtol=1e-6)

    @pytest.mark.parametrize("mcq", [False, True])
    def test_missing_statistic_is_named(self, name, mcq, tiny_probe):
        m = build(name, tiny_probe)
        full = item(mcq=mcq)
        needed = m.needed(full)
        assert set(needed) <= set(m.requires)
        for stat in needed:
            broken = {k: v for k, v in full.items() if k != stat}
            with pytest.raises(MissingStatisticError, match=stat):
                m(broken)
            with pytest.raises(MissingStatisticError, match=name):
                m.compute([full, broken])

    def test_peaked_more_confident_than_flat(self, name, tiny_probe):
        m = build(name, tiny_probe)
        peaked, flat = PEAKED_FLAT[name]
        assert m(peaked) > m(flat)

    def test_pure_function_of_its_statistics(self, name, tiny_probe):
        m = build(name, tiny_probe)
        full = item()
        only = {k: full[k] for k in m.needed(full)}
        extra = {**full, "unrelated": object()}
        assert m(only) == m(full) == m(extra)


def test_avg_token_prob_mcq_peaked_vs_flat():
    m = uq.AvgTokenProb()
    assert m(MCQ_PEAKED_FLAT[0]) > m(MCQ_PEAKED_FLAT[1])


def test_unknown_method_and_unfitted_probe():
    with pytest.raises(KeyError, match="known: avg_token_prob"):
        uq.make("ppl")
    with pytest.raises(Exception, match="not fitted"):
        uq.make("trained_probe", probe=MLPProbe())
    with pytest.raises(TypeError, match="predict_proba"):
        uq.TrainedProbe(object())


# ---- hand-computed values -------------------------------------------------------------------
def test_perplexity_known_values():
    # PPL = exp(-(ln .5 + ln .25)/2) = exp((ln 2 + ln 4)/2) = sqrt(8) = 2.8284...
    s = item(**{S.GREEDY_TOKEN_LOGPROBS: [math.log(0.5), math.log(0.25)]})
    assert uq.Perplexity()(s) == pytest.approx(1 / math.sqrt(8))
    assert uq.Perplexity()(s) == pytest.approx(0.35355, abs=1e-5)
    assert uq.Perplexity()(item(**{S.GREEDY_TOKEN_LOGPROBS: [0.0, 0.0]})) == 1.0


def test_avg_token_prob_known_values():
    s = item(**{S.GREEDY_TOKEN_LOGPROBS: [math.log(0.5), math.log(0.25)]})
    assert uq.AvgTokenProb()(s) == pytest.approx(0.375)
    # MCQ: softmax of option scores [ln 1, ln 2, ln 1] at option 1 -> 2/4
    mcq = item(mcq=True, **{S.OPTION_LOGPROBS: [0.0, math.log(2), 0.0], S.CHOSEN_OPTION: 1})
    assert uq.AvgTokenProb()(mcq) == pytest.approx(0.5)
    # huge scores do not overflow
    big = item(mcq=True, **{S.OPTION_LOGPROBS: [-1000.0, -1001.0], S.CHOSEN_OPTION: 0})
    assert uq.AvgTokenProb()(big) == pytest.approx(1 / (1 + math.exp(-1)))
    with pytest.raises(ValueError, match="chosen option 5"):
        uq.AvgTokenProb()(item(mcq=True, **{S.CHOSEN_OPTION: 5}))


def test_token_methods_discard_empty_generation_and_reject_bad_logprobs():
    empty = item(**{S.GREEDY_TOKEN_LOGPROBS: []})
    for m in (uq.AvgTokenProb(), uq.Perplexity()):
        assert math.isnan(m(empty)) and m.discards
        with pytest.raises(ValueError, match="log-probs > 0"):
            m(item(**{S.GREEDY_TOKEN_LOGPROBS: [0.5, 0.9]}))
    assert uq.n_discarded(uq.Perplexity().compute([empty, item(), empty])) == 2


def test_p_true_normalization():
    assert uq.PTrue()(item(**{S.PTRUE_LOGPROBS: (-1.0, -2.0)})) == pytest.approx(
        1 / (1 + math.exp(-1)))  # 0.7311
    assert uq.normalized_ptrue(-1.0, -2.0) == pytest.approx(0.731059, abs=1e-6)
    assert uq.normalized_ptrue(math.log(0.3), math.log(0.1)) == pytest.approx(0.75)
    assert uq.normalized_ptrue(-0.5, -0.5) == 0.5
    # numerically stable far in the tails and with one impossible token
    assert uq.normalized_ptrue(-1000.0, -1.0) == pytest.approx(0.0, abs=1e-300)
    assert uq.normalized_ptrue(-1.0, -2000.0) == 1.0
    assert uq.normalized_ptrue(-1.0, -math.inf) == 1.0
    with pytest.raises(ValueError, match="undefined"):
        uq.normalized_ptrue(-math.inf, -math.inf)
    with pytest.raises(ValueError, match="log p\\(True\\)"):
        uq.PTrue()(item(**{S.PTRUE_LOGPROBS: (-1.0,)}))


def test_jaccard_degree_by_hand():
    texts = ["The cat sat.", "the cat ran", "A dog!"]
    # word sets {the,cat,sat}, {the,cat,ran}, {a,dog}: J12 = 2/4, J13 = J23 = 0
    w = uq.jaccard_matrix(texts)
    np.testing.assert_allclose(w, [[1, .5, 0], [.5, 1, 0], [0, 0, 1]])
    # D = diag(1.5, 1.5, 1); trace(3I - D) = 1.5 + 1.5 + 2 = 5; U = 5/9
    assert uq.degree_uncertainty(w) == pytest.approx(5 / 9)
    assert uq.JaccardDegree()(item(**{S.SAMPLE_TEXTS: texts})) == pytest.approx(4 / 9)


@pytest.mark.parametrize("m", [2, 3, 5])
def test_jaccard_degree_direction(m):
    same = ["Paris is the capital"] * m
    assert uq.degree_uncertainty(uq.jaccard_matrix(same)) == 0.0
    assert uq.JaccardDegree()(item(**{S.SAMPLE_TEXTS: same})) == 1.0
    disjoint = [f"word{i} other{i}" for i in range(m)]
    u = uq.degree_uncertainty(uq.jaccard_matrix(disjoint))
    assert u == pytest.approx((m * m - m) / m ** 2) and u == pytest.approx(1 - 1 / m)
    assert uq.JaccardDegree()(item(**{S.SAMPLE_TEXTS: disjoint})) == pytest.approx(1 / m)


def test_word_sets_and_empty_answers():
    assert uq.word_set("Paris. PARIS, (paris)!") == {"paris"}
    assert uq.word_set("It's 3.5 -- \u201cdone\u201d") == {"it's", "3.5", "done"}
    assert uq.jaccard(uq.word_set(""), uq.word_set("...")) == 0.0   # empty matches nothing
    assert uq.jaccard(uq.word_set(""), uq.word_set("x")) == 0.0
    # empty free-form samples are discarded: 3 usable, {paris} x2 and {lyon}
    st = item(**{S.SAMPLE_TEXTS: ["Paris", "", "paris.", "...", "Lyon"]})
    assert uq.usable_samples(st) == ["Paris", "paris.", "Lyon"]
    assert uq.JaccardDegree()(st) == pytest.approx((3 + 2) / 9)
    assert math.isnan(uq.JaccardDegree()(item(**{S.SAMPLE_TEXTS: ["", "", " ", ".", "x"]})))
    with pytest.raises(ValueError, match="at least 2"):
        uq.JaccardDegree()(item(**{S.SAMPLE_TEXTS: ["only one"]}))


# ---- verbalized confidence ------------------------------------------------------------------
VERBAL_CASES = [
    ("Confidence: 85%", 0.85),
    ("confidence: 0.85", 0.85),
    ("I am 90% sure", 0.90),
    ("85/100", 0.85),
    ("Probability: 0.7", 0.70),
    ("100%", 1.0),
    ("0.0", 0.0),
    ("0.95.", 0.95),
    ("150%", None),
    ("confidence: high", None),
    ("I'm 7/10 sure", 0.70),
    ("I'd say 8 out of 10", 0.80),
    ("", None),
    ("   ", None),
    ("Guess: 42\nProbability: 0.9", 0.90),
    ("Guess: 3/4\nProbability: 0.6", 0.60),
    ("Guess: 3/4\nI am fairly sure.", None),
    ("The answer is 42.", None),
    ("Confidence: 85", 0.85),
    ("Confidence: 1", 1.0),
    ("Confidence: .85", 0.85),
    ("Confidence level: 95 percent", 0.95),
    ("My confidence is around 80-90%", 0.85),
    ("Confidence: 80%-90%", 0.85),
    ("Probability (0.0 to 1.0): 0.75", 0.75),
    ("Confidence level (0-100): 85", 0.85),
    ("Probability: <the probability between 0.0 and 1.0 that your guess is correct>", None),
    ("Confidence: -0.2", None),
    ("-5%", None),
    ("Probability: 1.5", None),
    ("Probability: 85", None),
    ("Confidence: 250", None),
    ("My confidence was 50% at first, but final confidence: 80%", 0.80),
    ("I am 60% sure, maybe 70%", 0.70),
    ("Confidence: high (90%)", 0.90),
    ("Confidence: high. The answer is 42", None),
    ("On 3/4/2020 it rained.", None),
    ("Certainty: 3/4", 0.75),
    (None, None),
]


@pytest.mark.parametrize("text,expected", VERBAL_CASES)
def test_parse_verbal_confidence(text, expected):
    got = uq.parse_verbal_confidence(text)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_verbal_methods_discard_unparseable():
    stats = [item(**{S.VERBAL_2S_TEXT: t}) for t in ("0.9", "no idea", "150%", "20%")]
    conf = uq.Verbal2S().compute(stats)
    np.testing.assert_allclose(conf[[0, 3]], [0.9, 0.2])
    assert np.isnan(conf[[1, 2]]).all() and uq.n_discarded(conf) == 2
    assert uq.Verbal1S().discards and uq.Verbal2S().discards


def test_probe_methods_batch_and_check_sizes(tiny_probe):
    m = uq.TrainedProbe(tiny_probe)
    conf = m.compute([item(**{S.HIDDEN_STATE: np.full(D, v)}) for v in (1.0, 0.0, -1.0)])
    assert conf.shape == (3,) and conf[0] > 0.9 > 0.1 > conf[2]
    np.testing.assert_allclose(conf, tiny_probe.predict_proba(
        np.array([[1.0] * D, [0.0] * D, [-1.0] * D]))[:, 1], rtol=1e-6)
    assert m.compute([]).shape == (0,)
    with pytest.raises(ValueError, match="different sizes"):
        m.compute([item(), item(**{S.HIDDEN_STATE: np.zeros(D + 1)})])


# ---- the parser on real cached outputs (tests/fixtures/verbal_outputs.csv) ------------------
FIXTURE = Path(__file__).parent / "fixtures" / "verbal_outputs.csv"


def real_outputs():
    import csv
    with open(FIXTURE, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_fixture_holds_enough_real_outputs_with_scales():
    rows = real_outputs()
    assert len(rows) >= 20
    assert sum(r["reason"] == "STATED_SCALE" for r in rows) >= 7


@pytest.mark.parametrize("row", real_outputs(), ids=lambda r: r["name"])
def test_parse_real_outputs(row):
    got = verbal.parse_verbal(row["text"])
    if row["value"] == "":
        assert got.value is None and got.reason == getattr(verbal, row["reason"])
    else:
        assert got.value == pytest.approx(float(row["value"]), abs=1e-9) and got.reason == ""


STATED_SCALES = ["0 to 100", "from 0% to 100%", "1-10", "0-1", "0 - 100%", "Confidence: 0 to 100",
                 "1 to 10", "from 0 to 100%"]


@pytest.mark.parametrize("text", STATED_SCALES)
def test_stated_scale_is_a_named_discard_not_a_midpoint(text):
    got = verbal.parse_verbal(text)
    assert got == verbal.VerbalParse(None, verbal.STATED_SCALE)


def test_ranges_that_are_not_scales_and_other_reasons():
    assert verbal.parse_verbal("80-90%").value == pytest.approx(0.85)
    assert verbal.parse_verbal("0.7 to 0.9").value == pytest.approx(0.8)
    assert verbal.parse_verbal("0 to 100\n80%").value == pytest.approx(0.8)  # a number follows
    assert verbal.parse_verbal("between 0 and 100%") == verbal.VerbalParse(None, verbal.STATED_SCALE)
    assert verbal.parse_verbal("150%") == verbal.VerbalParse(None, verbal.OUT_OF_RANGE)
    assert verbal.parse_verbal("no idea") == verbal.VerbalParse(None, verbal.NO_NUMBER)
    assert verbal.parse_verbal("90%\nQuestion: is 20% of 50 ten?").value == pytest.approx(0.9)


def test_verbal_discard_reasons_are_per_item():
    stats = [item(**{S.VERBAL_2S_TEXT: t}) for t in ("0 to 100", "no idea", "150%", "20%")]
    m = uq.Verbal2S()
    conf = m.compute(stats)
    assert m.discard_reasons(stats, conf) == [verbal.STATED_SCALE, verbal.NO_NUMBER,
                                              verbal.OUT_OF_RANGE, ""]


def test_split_one_stage():
    assert verbal.split_one_stage(" B\nConfidence: 80%") == ("B", "Confidence: 80%")
    assert verbal.split_one_stage("Answer: 42 apples\nConfidence: 9/10") == ("42 apples",
                                                                             "Confidence: 9/10")
    assert verbal.split_one_stage("100%") == ("100%", "100%")
    assert verbal.split_one_stage("A.\nThe answer is: A.")[0] == "A."
    assert verbal.split_one_stage("")[0] == ""
