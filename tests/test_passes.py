"""routelib.uq.passes with the fake backend: which passes run, what they ask, and hand-checked
statistics fed into the UQ methods."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from routelib.answers.answer import AnswerConfig, answer_records
from routelib.models.fake import FakeBackend
from routelib.uq import methods as uq, passes, stats as S
from routelib.uq.passes import PTRUE_FOLLOWUP, PassError, compute_stats, passes_for

MATH_PROMPT = ('Question: What is 9 + 9?\nAnswer with a number. End with "The answer is '
               '<number>."\nAnswer:')
ANSWER = "The answer is 42."          # the fake's default reply, tokens lp -0.1 .. -0.4


class Spy(FakeBackend):
    """A fake backend that also keeps every batch it was given, per method."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.batches = {"generate": [], "loglikelihood": [], "hidden_states": []}

    def generate(self, requests):
        self.batches["generate"].append(list(requests))
        return super().generate(requests)

    def loglikelihood(self, requests):
        self.batches["loglikelihood"].append(list(requests))
        return super().loglikelihood(requests)

    def hidden_states(self, texts, layer=-8):
        self.batches["hidden_states"].append((list(texts), layer))
        return super().hidden_states(texts, layer)


@pytest.fixture
def records(make_record):
    return [make_record("math", id="g-1", question="What is 9 + 9?", answer="18",
                        answer_text="18"),
            make_record("math", id="g-2", question="What is 2 + 2?", answer="4",
                        answer_text="4")]


@pytest.fixture
def rows(records):
    return answer_records(FakeBackend(), records, AnswerConfig("generate"))


# ---------------------------------------------------------------------- passes_for


@pytest.mark.parametrize("method, expected", [
    ("avg_token_prob", ["greedy"]), ("perplexity", ["greedy"]), ("p_true", ["p_true"]),
    ("verbal_1s", ["verbal_1s"]), ("verbal_2s", ["verbal_2s"]), ("jaccard_degree", ["samples"]),
    ("trained_probe", ["hidden"]), ("ood_probe", ["hidden"]),
])
def test_passes_for_each_method(method, expected):
    assert passes_for([method]) == expected


def test_passes_for_several_methods_in_registry_order_once_each():
    assert passes_for(["ood_probe", "jaccard_degree", "perplexity", "trained_probe",
                       "avg_token_prob"]) == ["greedy", "samples", "hidden"]
    assert passes_for([uq.make("p_true"), "verbal_2s"]) == ["p_true", "verbal_2s"]
    assert passes_for([]) == []


def test_passes_for_unknown_method_names_the_known_ones():
    with pytest.raises(KeyError, match="'ptrue' is not known; known: avg_token_prob"):
        passes_for(["ptrue"])


def test_registries_cover_every_statistic_once():
    assert list(passes.PASSES) == list(passes.PASS_PROVIDES)
    provided = [s for names in passes.PASS_PROVIDES.values() for s in names]
    assert sorted(provided) == sorted(S.STATISTICS)


# ---------------------------------------------------------------------- greedy pass


@pytest.mark.parametrize("methods", [["avg_token_prob"], ["perplexity"],
                                     ["avg_token_prob", "perplexity"]])
def test_greedy_only_methods_make_no_backend_call(records, rows, methods):
    be = Spy()
    out = compute_stats(be, records, rows, methods)
    assert sum(be.calls.values()) == 0 and be.batches == {k: [] for k in be.batches}
    assert out[0] == {S.GREEDY_TOKEN_LOGPROBS: pytest.approx([-0.1, -0.2, -0.3, -0.4]),
                      S.IS_MCQ: False}
    conf = uq.METHODS["perplexity"]().compute(out)
    np.testing.assert_allclose(conf, [math.exp(-0.25)] * 2)        # exp(mean(-.1..-.4))
    avg = uq.METHODS["avg_token_prob"]().compute(out)
    expected = (math.exp(-0.1) + math.exp(-0.2) + math.exp(-0.3) + math.exp(-0.4)) / 4
    np.testing.assert_allclose(avg, [expected] * 2)


def test_greedy_pass_of_choice_rows(make_record):
    rec = make_record("mcq", id="cs-1")
    [row] = answer_records(FakeBackend(), [rec], AnswerConfig("options"))
    # default scorer: -len(continuation) spread over its words; per-token means
    # " bank" -5, " library" -8, " department store" -8.5, " mall" -5, " new york" -4.5
    [st] = compute_stats(FakeBackend(), [rec], [row], ["avg_token_prob"])
    assert st == {S.GREEDY_TOKEN_LOGPROBS: [-4.5, -4.5], S.IS_MCQ: True,
                  S.OPTION_LOGPROBS: [-5.0, -8.0, -8.5, -5.0, -4.5], S.CHOSEN_OPTION: 4}
    z = [math.exp(s) for s in st[S.OPTION_LOGPROBS]]
    assert uq.METHODS["avg_token_prob"]()(st) == pytest.approx(z[4] / sum(z))


def test_rows_from_a_parquet_round_trip(records, rows, tmp_path):
    pd.DataFrame(rows).to_parquet(tmp_path / "r.parquet")
    df = pd.read_parquet(tmp_path / "r.parquet")
    out = compute_stats(FakeBackend(), records, df, ["perplexity"])
    assert out[1][S.GREEDY_TOKEN_LOGPROBS] == pytest.approx([-0.1, -0.2, -0.3, -0.4])
    assert type(out[1][S.GREEDY_TOKEN_LOGPROBS]) is list


def test_misaligned_rows_are_refused(records, rows):
    with pytest.raises(PassError, match="record 'g-1' has row 'g-2'"):
        compute_stats(FakeBackend(), records, rows[::-1], ["perplexity"])
    with pytest.raises(PassError, match="2 records but 1 answer rows"):
        compute_stats(FakeBackend(), records, rows[:1], ["perplexity"])


# ---------------------------------------------------------------------- p(True)


def test_ptrue_one_batch_two_requests_per_item_in_order(records, rows):
    # item 1 ("9 + 9"): log p(True) = -0.5; item 2: -3.0; log p(False) = -2.0 for both
    def scorer(ctx, cont):
        if cont == " False":
            return -2.0
        return -0.5 if "9 + 9" in ctx else -3.0
    be = Spy(scorer=scorer)
    out = compute_stats(be, records, rows, ["p_true"])
    [batch] = be.batches["loglikelihood"]
    assert be.calls == {"loglikelihood": 4}
    assert [r.continuation for r in batch] == [" True", " False"] * 2
    assert batch[0].context == f"{MATH_PROMPT} {ANSWER}{PTRUE_FOLLOWUP}"
    assert PTRUE_FOLLOWUP == "\nIs the proposed answer correct? Answer True or False.\nAnswer:"
    assert batch[0].context == batch[1].context and "2 + 2" in batch[2].context
    assert [o[S.PTRUE_LOGPROBS] for o in out] == [(-0.5, -2.0), (-3.0, -2.0)]
    conf = uq.METHODS["p_true"]().compute(out)
    # sigmoid(-0.5 - -2.0) = 1 / (1 + e^-1.5); sigmoid(-1.0)
    np.testing.assert_allclose(conf, [1 / (1 + math.exp(-1.5)), 1 / (1 + math.exp(1.0))])


def test_ptrue_chat_backend_one_user_message(records):
    rows = answer_records(FakeBackend(chat=True), records[:1], AnswerConfig("generate", chat=True))
    be = Spy(chat=True)
    compute_stats(be, records[:1], rows, ["p_true"])
    [batch] = be.batches["loglikelihood"]
    assert batch[0].context == ("<user>Question: What is 9 + 9?\nProposed answer: The answer is "
                                "42.\nIs the proposed answer correct? Answer True or False."
                                "</user><assistant>")
    assert [r.continuation for r in batch] == ["True", "False"]


# ---------------------------------------------------------------------- samples


# the fake's draws (" #k", k from the request's own seed) for seed 50 on the math prompts
SAMPLES_G1 = ["The answer is 42. #1", "The answer is 42. #2", "The answer is 42. #1",
              "The answer is 42. #2", "The answer is 42. #2"]


def test_samples_five_reproducible_texts_at_temperature_one_seed_50(records, rows):
    be = Spy()
    out = compute_stats(be, records, rows, ["jaccard_degree"])
    [batch] = be.batches["generate"]
    assert [(r.prompt, r.temperature, r.n, r.seed) for r in batch] == [
        (rows[0]["prompt"], 1.0, 5, 50), (rows[1]["prompt"], 1.0, 5, 50)]
    # free-form rows keep the greedy answer's stop strings and token limit
    assert batch[0].stop == ("\n\n", "Question:", "\nAnswer:") and batch[0].max_new_tokens == 96
    assert out[0][S.SAMPLE_TEXTS] == SAMPLES_G1
    assert [len(o[S.SAMPLE_TEXTS]) for o in out] == [5, 5]
    assert compute_stats(Spy(), records, rows, ["jaccard_degree"]) == out
    # word sets share {the, answer, is, 42}: same k -> J = 1, different k -> 4/6.
    # k = 1,2,1,2,2: ordered pairs (i != j) with equal k: 2*1 + 3*2 = 8 of 20, so
    # mean(W) = (5 diagonal + 8 * 1 + 12 * 2/3) / 25 = 21/25
    conf = uq.METHODS["jaccard_degree"]()(out[0])
    assert conf == pytest.approx(0.84)


class Scripted(Spy):
    """Replies to sampled requests with the given texts, in order (then the fake's own)."""

    def __init__(self, texts, **kw):
        super().__init__(**kw)
        self.texts = list(texts)

    def generate(self, requests):
        out = super().generate(requests)
        for gens in out:
            for g in gens:
                if self.texts:
                    g.text = self.texts.pop(0)
        return out


@pytest.mark.parametrize("style", ["options", "letters"])
def test_choice_samples_come_from_the_letters_prompt_and_name_options(make_record, style):
    rec = make_record("mcq", id="cs-1")
    [row] = answer_records(FakeBackend(), [rec], AnswerConfig(style))
    be = Scripted([" B", " B. library", "(B) the library", " C.", " E"])
    [st] = compute_stats(be, [rec], [row], ["jaccard_degree"])
    [[req]] = be.batches["generate"]
    # the options are in the prompt whatever style chose the greedy answer
    assert req.prompt == ("Question: Where do you borrow books?\nA. bank\nB. library\n"
                          "C. department store\nD. mall\nE. new york\nAnswer with the letter "
                          "of the correct option.\nAnswer:")
    assert (req.max_new_tokens, req.stop, req.temperature, req.n, req.seed) == (
        passes.CHOICE_SAMPLE_MAX_TOKENS, ("\n",), 1.0, 5, 50)
    assert st[S.SAMPLE_ANSWERS] == ["library", "library", "library", "department store",
                                    "new york"]
    # W: the three "library" agree (1), "department store" / "new york" / "library" share no
    # word (0): mean(W) = (5 + 3 * 2) / 25
    assert uq.JaccardDegree()(st) == pytest.approx(11 / 25)


def test_empty_or_unparsable_choice_samples_are_discarded_not_matches(make_record):
    rec = make_record("true_false", id="tf-1")
    [row] = answer_records(FakeBackend(), [rec], AnswerConfig("options"))
    be = Scripted(["", " ", " A", "The sky", " no"])
    [st] = compute_stats(be, [rec], [row], ["jaccard_degree"])
    assert st[S.SAMPLE_ANSWERS] == [None, None, "yes", None, "no"]
    assert uq.usable_samples(st) == ["yes", "no"]
    assert uq.JaccardDegree()(st) == pytest.approx(0.5)   # yes vs no: (2 + 0) / 4
    # all empty: before, J(empty, empty) = 1 made this a perfect 1.0; now a discard
    [st2] = compute_stats(Scripted([""] * 5), [rec], [row], ["jaccard_degree"])
    assert st2[S.SAMPLE_ANSWERS] == [None] * 5
    assert math.isnan(uq.JaccardDegree()(st2))
    [st3] = compute_stats(Scripted([" A", "", "", " F", "?"]), [rec], [row], ["jaccard_degree"])
    assert math.isnan(uq.JaccardDegree()(st3))   # one usable sample: nothing to compare


@pytest.mark.parametrize("text, expected", [
    ("A", "bank"), (" B.", "library"), ("(C) store", "department store"), ("[D]", "mall"),
    (" E: new york", "new york"), ("**Option D**", "mall"), ("option b", "library"),
    ("D . 4", "mall"), ("A person", None), ("F", None), ("", None), ("b", None),
    ("1. A", None), ("The answer is B", None), ("BC what", None)])
def test_parse_choice_by_hand(make_record, text, expected):
    assert passes.parse_choice(text, make_record("mcq")) == expected


def test_parse_choice_true_false_words(make_record):
    rec = make_record("true_false")
    assert [passes.parse_choice(t, rec) for t in (" Yes, it is", "no", "B", "C", "maybe")] == [
        "yes", "no", "no", None, None]


def test_choice_samples_have_their_own_cache_key_free_form_keep_theirs():
    free = {"answer": {"style": "generate"}}
    assert passes.pass_params("samples", free) is passes.PASS_PARAMS["samples"]
    for style in ("options", "letters"):
        assert passes.pass_params("samples", {"answer": {"style": style}}) == \
            passes.CHOICE_SAMPLES_PARAMS
    assert passes.pass_params("hidden", free) is passes.PASS_PARAMS["hidden"]


def test_samples_refuse_a_row_whose_prompt_changed(records, rows):
    changed = [dict(rows[0], prompt="Question: something else\nAnswer:"), rows[1]]
    with pytest.raises(PassError, match="g-1: the row's prompt is not today's"):
        compute_stats(FakeBackend(), records, changed, ["jaccard_degree"])


# ---------------------------------------------------------------------- verbal, hidden


def _respond(prompt: str) -> str:
    if "How confident are you" in prompt:
        return "Confidence: 80%"
    if "Give your answer and your confidence" in prompt:
        return "Answer: 42\nConfidence: 90%"
    return ANSWER


def test_verbal_passes_give_the_models_text(records, rows):
    be = Spy(respond=_respond)
    out = compute_stats(be, records, rows, ["verbal_1s", "verbal_2s"])
    one, two = be.batches["generate"]
    assert one[0].prompt == ('Question: What is 9 + 9?\n' + passes.VERBAL_1S_INSTRUCTION
                             + "\nAnswer:")
    assert (one[0].max_new_tokens, one[0].temperature) == (48, 0.0)
    assert two[0].prompt == f"{MATH_PROMPT} {ANSWER}{passes.VERBAL_2S_FOLLOWUP}"
    assert (two[0].max_new_tokens, two[0].temperature) == (16, 0.0)
    # the fake joins its whitespace tokens with single spaces
    assert out[0] == {S.VERBAL_1S_TEXT: "Answer: 42 Confidence: 90%",
                      S.VERBAL_2S_TEXT: "Confidence: 80%"}
    np.testing.assert_allclose(uq.METHODS["verbal_2s"]().compute(out), [0.8, 0.8])
    np.testing.assert_allclose(uq.METHODS["verbal_1s"]().compute(out), [0.9, 0.9])


def test_hidden_states_one_row_per_item(records, rows):
    be = Spy(hidden_size=8)
    out = compute_stats(be, records, rows, ["trained_probe"])
    [(texts, layer)] = be.batches["hidden_states"]
    assert texts == [f"{MATH_PROMPT} {ANSWER}", f"{rows[1]['prompt']} {ANSWER}"]
    assert layer == S.HIDDEN_LAYER == -8
    h = np.stack([o[S.HIDDEN_STATE] for o in out])
    assert h.shape == (2, 8)
    np.testing.assert_array_equal(h, FakeBackend().hidden_states(texts, layer=-8))


def test_all_methods_each_pass_once(records, rows):
    be = Spy(respond=_respond)
    out = compute_stats(be, records, rows, list(uq.METHODS))
    # generate: verbal_1s, verbal_2s, samples; one batch each
    assert {k: len(v) for k, v in be.batches.items()} == {
        "generate": 3, "loglikelihood": 1, "hidden_states": 1}
    assert set(out[0]) == {S.GREEDY_TOKEN_LOGPROBS, S.IS_MCQ, S.PTRUE_LOGPROBS, S.VERBAL_1S_TEXT,
                           S.VERBAL_2S_TEXT, S.SAMPLE_TEXTS, S.HIDDEN_STATE}
