"""routelib.answers.answer with the fake backend (hand-computed scores and rows), plus the pure helpers
of routelib.models.backend (GenRequest.params, cut_at_stop, request_seed, length_batches)."""
from __future__ import annotations

import hashlib
import json

import pytest

from routelib.answers import answer
from routelib.answers.answer import ANSWER_COLUMNS, AnswerConfig, answer_records, request_key
from routelib.data import DataError
from routelib.models.backend import GenRequest, cut_at_stop, length_batches, request_seed
from routelib.models.fake import FakeBackend

CSQA_PROMPT = "Question: Where do you borrow books?\nAnswer:"
CSQA_CONTS = [" bank", " library", " department store", " mall", " new york"]
MATH_PROMPT = ('Question: What is 9 + 9?\nAnswer with a number. End with "The answer is '
               '<number>."\nAnswer:')


def table_scorer(table: dict, seen: list | None = None):
    """A scorer returning a fixed total log-prob per continuation (and logging contexts)."""
    def score(ctx, cont):
        if seen is not None:
            seen.append((ctx, cont))
        return table[cont]
    return score


@pytest.fixture
def mcq(make_record):
    return make_record("mcq", id="cs-1")   # gold: B. library


@pytest.fixture
def math(make_record):
    return make_record("math", id="g-1", question="What is 9 + 9?", answer="18",
                       answer_text="18")


# ------------------------------------------------------------------------- choice styles


def test_options_picks_highest_mean_log_prob_per_token(mcq):
    seen = []
    # totals -2.0, -1.5, -2.0, -3.0, -2.8 over 1, 1, 2, 1, 2 whitespace tokens:
    # per token -2.0, -1.5, -1.0, -3.0, -1.4 -> "department store" (C) wins although
    # " library" has the highest total
    scorer = table_scorer(dict(zip(CSQA_CONTS, [-2.0, -1.5, -2.0, -3.0, -2.8])), seen)
    be = FakeBackend(scorer=scorer)
    [row] = answer_records(be, [mcq], AnswerConfig("options"))
    assert seen == [(CSQA_PROMPT, c) for c in CSQA_CONTS]
    assert row["choice"] == 2
    assert row["response"] == "C. department store"
    assert row["option_scores"] == [-2.0, -1.5, -1.0, -3.0, -1.4]
    assert row["token_logprobs"] == [-1.0, -1.0]
    assert row["n_tokens"] == 2
    assert (row["correct"], row["extracted"], row["grade_rule"]) == (False, "C", "mcq_letter")
    assert row["finish_reason"] == "choice"
    assert row["prompt"] == CSQA_PROMPT
    assert (be.calls["loglikelihood"], be.calls["generate"]) == (5, 0)


def test_options_favouring_the_gold_is_correct(mcq):
    scorer = table_scorer(dict(zip(CSQA_CONTS, [-4.0, -0.5, -4.0, -4.0, -4.0])))
    [row] = answer_records(FakeBackend(scorer=scorer), [mcq], AnswerConfig("options"))
    assert (row["choice"], row["response"], row["correct"]) == (1, "B. library", True)
    assert row["option_scores"] == [-4.0, -0.5, -2.0, -4.0, -2.0]
    assert row["token_logprobs"] == [-0.5]


def test_options_default_scorer_normalizes_by_tokens(mcq):
    # default scorer: minus the continuation's length in characters:
    # " bank" -5/1, " library" -8/1, " department store" -17/2, " mall" -5/1, " new york" -9/2
    [row] = answer_records(FakeBackend(), [mcq], AnswerConfig("options"))
    assert row["option_scores"] == [-5.0, -8.0, -8.5, -5.0, -4.5]
    assert (row["choice"], row["response"]) == (4, "E. new york")
    assert row["token_logprobs"] == [-4.5, -4.5]


def test_letters_picks_by_raw_log_prob(mcq):
    seen = []
    scorer = table_scorer({" A": -3.0, " B": -2.5, " C": -2.0, " D": -0.7, " E": -4.0}, seen)
    [row] = answer_records(FakeBackend(scorer=scorer), [mcq], AnswerConfig("letters"))
    assert [c for _, c in seen] == [" A", " B", " C", " D", " E"]
    assert seen[0][0] == ("Question: Where do you borrow books?\nA. bank\nB. library\n"
                          "C. department store\nD. mall\nE. new york\n"
                          "Answer with the letter of the correct option.\nAnswer:")
    assert row["option_scores"] == [-3.0, -2.5, -2.0, -0.7, -4.0]
    assert (row["choice"], row["response"], row["correct"]) == (3, "D. mall", False)
    assert row["token_logprobs"] == [-0.7]


def test_ties_go_to_the_first_option(mcq):
    # the default scorer gives every " X" letter -2.0
    [row] = answer_records(FakeBackend(), [mcq], AnswerConfig("letters"))
    assert row["option_scores"] == [-2.0] * 5
    assert (row["choice"], row["response"]) == (0, "A. bank")


def test_true_false_options_with_chat(make_record):
    rec = make_record("true_false", id="b-1")   # gold True
    seen = []
    be = FakeBackend(chat=True, scorer=lambda ctx, cont: seen.append((ctx, cont)) or
                     -float(len(cont)))
    [row] = answer_records(be, [rec], AnswerConfig("options", chat=True))
    ctx = "<user>The sky is blue on a clear day.\nQuestion: is the sky blue?</user><assistant>"
    assert seen == [(ctx, "yes"), (ctx, "no")]     # no leading space in chat format
    assert row["option_scores"] == [-3.0, -2.0]
    assert (row["choice"], row["response"], row["extracted"]) == (1, "no", "false")
    assert (row["correct"], row["grade_rule"], row["chat"]) == (False, "bool_word", True)


def test_non_finite_log_prob_raises(mcq):
    be = FakeBackend(scorer=lambda ctx, cont: float("-inf"))
    with pytest.raises(ValueError, match="cs-1: non-finite token log-prob from fake"):
        answer_records(be, [mcq], AnswerConfig("options"))


# ------------------------------------------------------------------------- generation


def test_generation_row_for_math(math):
    be = FakeBackend(respond=lambda prompt: "The answer is 18.")
    [row] = answer_records(be, [math], AnswerConfig("generate"), split="train")
    assert list(row) == list(ANSWER_COLUMNS)
    assert row["prompt"] == MATH_PROMPT
    assert row["response"] == "The answer is 18."
    assert row["token_logprobs"] == pytest.approx([-0.1, -0.2, -0.3, -0.4])
    assert row["n_tokens"] == 4
    assert (row["option_scores"], row["choice"]) == (None, None)
    assert row["finish_reason"] == "eos"
    assert (row["correct"], row["extracted"], row["grade_rule"]) == (True, "18",
                                                                     "number_after_marker")
    assert (row["dataset"], row["split"], row["item_id"]) == ("gsm8k", "train", "g-1")
    assert (row["model"], row["model_id"], row["style"], row["chat"], row["seed"]) == (
        "fake", "fake:fake", "generate", False, 50)
    assert (be.calls["generate"], be.calls["loglikelihood"]) == (1, 0)


def test_generation_stops_at_a_blank_line(math):
    be = FakeBackend(respond=lambda prompt: "9 + 9 = 17. The answer is 17.\n\nQuestion: next")
    [row] = answer_records(be, [math], AnswerConfig("generate"))
    assert row["response"] == "9 + 9 = 17. The answer is 17."
    assert row["n_tokens"] == 9   # 9 + 9 = 17. The answer is 17.
    assert row["finish_reason"] == "stop"
    assert (row["correct"], row["extracted"]) == (False, "17")


def test_max_new_tokens_truncates(math):
    be = FakeBackend(respond=lambda prompt: "The answer is 18.")
    [row] = answer_records(be, [math], AnswerConfig("generate", max_new_tokens=2))
    assert row["response"] == "The answer"
    assert row["token_logprobs"] == pytest.approx([-0.1, -0.2])
    assert row["correct"] is False


def test_generation_with_chat(math):
    seen = []
    be = FakeBackend(chat=True, respond=lambda p: seen.append(p) or "18")
    [row] = answer_records(be, [math], AnswerConfig("generate", chat=True))
    assert seen == ['<user>Question: What is 9 + 9?\nAnswer with a number. End with "The answer '
                    'is <number>."</user><assistant>']
    assert (row["correct"], row["grade_rule"]) == (True, "number_last")


def test_chat_without_template_raises(mcq):
    be = FakeBackend(chat=False)
    with pytest.raises(ValueError, match="model 'fake' has no chat template; use chat=False"):
        answer_records(be, [mcq], AnswerConfig("options", chat=True))
    assert sum(be.calls.values()) == 0


# ------------------------------------------------------------------------- order


def test_rows_follow_input_order_for_mixed_choice_records(make_record):
    recs = [make_record("true_false", id="t1", answer=False),
            make_record("mcq", id="m1"),
            make_record("true_false", id="t2", answer=True),
            make_record("mcq", id="m2", dataset="piqa", choices=["up", "down"], answer=0)]
    rows = answer_records(FakeBackend(), recs, AnswerConfig("options"))
    assert [r["item_id"] for r in rows] == ["t1", "m1", "t2", "m2"]
    # default scorer: " yes" -4 < " no" -3; " up" -3 > " down" -5
    assert [r["response"] for r in rows] == ["no", "E. new york", "no", "A. up"]
    assert [r["correct"] for r in rows] == [True, False, False, True]


def test_rows_follow_input_order_for_mixed_generation(make_record, math):
    recs = [make_record("coqa", id="coqa-s-1"), math, make_record("true_false", id="t1"),
            make_record("mcq", id="m1")]

    def respond(prompt):
        if "\nQ: " in prompt:
            return "Felix"
        if "number" in prompt:
            return "The answer is 18."
        if "letter" in prompt:
            return "B"
        return "yes"
    rows = answer_records(FakeBackend(respond=respond), recs, AnswerConfig("generate"))
    assert [r["item_id"] for r in rows] == ["coqa-s-1", "g-1", "t1", "m1"]
    assert [r["response"] for r in rows] == ["Felix", "The answer is 18.", "yes", "B"]
    assert [r["grade_rule"] for r in rows] == ["text_em", "number_after_marker", "bool_word",
                                               "mcq_letter"]
    assert all(r["correct"] for r in rows)


def test_empty_input():
    assert answer_records(FakeBackend(), [], AnswerConfig("options")) == []


# ------------------------------------------------------------------------- request keys


def test_request_key_is_sha256_of_sorted_json():
    blob = '{"model": "m", "params": {"a": 1, "b": [2]}, "prompt": "p"}'
    assert request_key("m", "p", {"b": [2], "a": 1}) == hashlib.sha256(blob.encode()).hexdigest()
    assert request_key("m", "p", {"a": 1, "b": [2]}) == request_key("m", "p", {"b": [2], "a": 1})
    assert request_key("m", "p", {"a": 1}) != request_key("m2", "p", {"a": 1})
    assert request_key("m", "p", {"a": 1}) != request_key("m", "p ", {"a": 1})
    assert request_key("m", "p", {"a": 1}) != request_key("m", "p", {"a": 2})


def test_choice_row_key(mcq):
    [row] = answer_records(FakeBackend(), [mcq], AnswerConfig("options"))
    params = {"kind": "choice", "style": "options", "continuations": CSQA_CONTS}
    blob = json.dumps({"model": "fake:fake", "prompt": CSQA_PROMPT, "params": params},
                      sort_keys=True)
    assert row["request_key"] == hashlib.sha256(blob.encode()).hexdigest()


def test_row_keys_change_with_prompt_model_and_params(make_record, math):
    def key(rec=math, cfg=AnswerConfig("generate"), name="fake"):
        return answer_records(FakeBackend(name=name), [rec], cfg)[0]["request_key"]

    base = key()
    assert key() == base                                             # stable
    assert key(rec=make_record("math", id="other-id", question="What is 9 + 9?")) == base
    assert key(rec=make_record("math", question="What is 9 + 8?")) != base   # prompt
    assert key(name="other") != base                                 # model_id
    assert key(cfg=AnswerConfig("generate", max_new_tokens=50)) != base      # decoding
    # greedy decoding ignores the seed, so the key does too
    assert key(cfg=AnswerConfig("generate", seed=7)) == base


def test_choice_keys_change_with_style_and_chat(mcq):
    plain = answer_records(FakeBackend(chat=True), [mcq], AnswerConfig("options"))[0]
    chat = answer_records(FakeBackend(chat=True), [mcq], AnswerConfig("options", chat=True))[0]
    letters = answer_records(FakeBackend(chat=True), [mcq], AnswerConfig("letters"))[0]
    assert len({plain["request_key"], chat["request_key"], letters["request_key"]}) == 3
    again = answer_records(FakeBackend(chat=True), [mcq], AnswerConfig("options"))[0]
    assert again["request_key"] == plain["request_key"]


# ------------------------------------------------------------------------- configs


@pytest.mark.parametrize("dataset, group", [
    ("gsm8k", "math"), ("multiarith", "math"), ("svamp", "math"),
    ("aqua", "mcq"), ("commonsenseqa", "mcq"), ("hellaswag", "mcq"), ("openbookqa", "mcq"),
    ("piqa", "mcq"), ("siqa", "mcq"), ("truthfulqa", "mcq"), ("winogrande", "mcq"),
    ("mmlu", "mcq"), ("boolq", "true_false"), ("coqa", "conversational"),
])
def test_answer_group_and_default_config(dataset, group):
    assert answer.answer_group(dataset) == group
    style = "generate" if group in ("math", "conversational") else "options"
    assert answer.default_config(dataset) == AnswerConfig(style, chat=False,
                                                          max_new_tokens=None, seed=50)
    assert answer.default_config(dataset, "some-model") == AnswerConfig(style)


def test_selected_config_overrides_the_default_per_group(monkeypatch):
    from routelib.models import registry
    monkeypatch.setitem(registry.MODELS, "m", registry.ModelSpec(
        "m", "M", answer_styles=(("mcq", "letters", True),)))
    assert answer.default_config("mmlu", "m") == AnswerConfig("letters", chat=True)
    assert answer.default_config("aqua", "m") == AnswerConfig("letters", chat=True)
    assert answer.default_config("boolq", "m") == AnswerConfig("options")
    assert answer.default_config("mmlu", "other") == AnswerConfig("options")
    assert answer.default_config("mmlu") == AnswerConfig("options")


def test_the_embedded_models_carry_the_documented_choices():
    """docs/accuracy.md's table of chosen configurations, read from the model specs."""
    def row(model):
        chosen = answer.chosen_configs(model)
        return [chosen[g].style + ("-chat" if chosen[g].chat else "") for g in answer.ANSWER_GROUPS]
    assert row("smollm2-135m") == ["options", "letters", "generate", "generate"]
    assert row("gemma3-270m") == ["options", "options", "generate", "generate"]
    assert row("qwen2.5-coder-0.5b") == ["options-chat", "options-chat", "generate-chat",
                                         "generate"]
    # a backend is looked up by its spec, else by its name; an unknown label has no choice
    assert answer.chosen_configs(FakeBackend(name="gemma3-270m"))["true_false"] == \
        AnswerConfig("options")
    assert answer.chosen_configs(FakeBackend(name="not-a-model")) == {}


def test_unknown_dataset_group():
    with pytest.raises(DataError, match="dataset 'nope' is not known"):
        answer.answer_group("nope")


def test_answer_config_to_dict():
    assert AnswerConfig("letters", True, 12, 3).to_dict() == {
        "style": "letters", "chat": True, "max_new_tokens": 12, "seed": 3}


# ------------------------------------------------------------------------- backend helpers


def test_gen_request_params():
    greedy = GenRequest("p", max_new_tokens=8, seed=9, stop=("\n",))
    assert greedy.params() == {"max_new_tokens": 8, "temperature": 0.0, "n": 1, "seed": None,
                               "stop": ["\n"], "top_k": 5}
    sampled = GenRequest("p", temperature=0.7, n=3, seed=9, top_k=0)
    assert sampled.params() == {"max_new_tokens": 64, "temperature": 0.7, "n": 3, "seed": 9,
                                "stop": [], "top_k": 0}


@pytest.mark.parametrize("text, stop, expected", [
    ("abc\n\ndef", ("\n\n", "Question:"), ("abc", True)),
    ("x Question: y\n\nz", ("\n\n", "Question:"), ("x ", True)),   # earliest stop wins
    ("no stop here", ("\n",), ("no stop here", False)),
    ("abc", (), ("abc", False)),
    ("abc", ("",), ("abc", False)),                                   # empty stop ignored
    ("\nfirst", ("\n",), ("", True)),
])
def test_cut_at_stop(text, stop, expected):
    assert cut_at_stop(text, stop) == expected


def test_request_seed():
    h = hashlib.sha256(b"50\x00hello").digest()
    assert request_seed(GenRequest("hello")) == int.from_bytes(h[:4], "big")
    # decoding parameters other than the seed do not enter it
    assert request_seed(GenRequest("hello", max_new_tokens=3, temperature=1.0, n=4)) == \
        request_seed(GenRequest("hello"))
    assert request_seed(GenRequest("hello", seed=51)) != request_seed(GenRequest("hello"))


def test_length_batches():
    assert length_batches([3, 5, 5, 1], 2) == [[1, 2], [0, 3]]
    assert length_batches([2, 7, 4], 5) == [[1, 2, 0]]
    assert length_batches([1, 1, 1], 1) == [[0], [1], [2]]
    assert length_batches([], 4) == []
