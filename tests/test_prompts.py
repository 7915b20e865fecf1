"""routelib.answers.prompts: the exact prompt texts of the module docstring, style x task type, plain and
with a chat renderer; continuations, responses, stops and errors."""
from __future__ import annotations

import pytest

from routelib.answers import prompts
from routelib.answers.prompts import Prompt, PromptError, build
from routelib.data import Record

CHAT = lambda u: f"<u>{u}</u>"  # noqa: E731  (a chat template stand-in)
LETTER_LINE = "Answer with the letter of the correct option."
MATH_LINE = 'Answer with a number. End with "The answer is <number>."'
CSQA_LETTERS = "A. bank\nB. library\nC. department store\nD. mall\nE. new york"
CSQA_LABELS = ("A. bank", "B. library", "C. department store", "D. mall", "E. new york")


@pytest.fixture
def mcq(make_record):
    return make_record("mcq", question="  Where do you borrow books?  ")


@pytest.fixture
def tf(make_record):
    return make_record("true_false", question="is the sky blue",
                       context="The sky is blue on a clear day.\n")


# ------------------------------------------------------------------------- MCQ


def test_mcq_options_plain(mcq):
    assert build(mcq, "options") == Prompt(
        "Question: Where do you borrow books?\nAnswer:",
        (" bank", " library", " department store", " mall", " new york"), CSQA_LABELS)


def test_mcq_options_chat(mcq):
    p = build(mcq, "options", chat=CHAT)
    assert p.text == "<u>Question: Where do you borrow books?</u>"
    assert p.continuations == ("bank", "library", "department store", "mall", "new york")
    assert p.responses == CSQA_LABELS
    assert p.is_choice and p.stop == () and p.max_new_tokens == 0


def test_mcq_letters_plain(mcq):
    assert build(mcq, "letters") == Prompt(
        f"Question: Where do you borrow books?\n{CSQA_LETTERS}\n{LETTER_LINE}\nAnswer:",
        (" A", " B", " C", " D", " E"), CSQA_LABELS)


def test_mcq_letters_chat(mcq):
    p = build(mcq, "letters", chat=CHAT)
    assert p.text == f"<u>Question: Where do you borrow books?\n{CSQA_LETTERS}\n{LETTER_LINE}</u>"
    assert p.continuations == ("A", "B", "C", "D", "E")
    assert p.responses == CSQA_LABELS


def test_mcq_generate_lists_the_options(mcq):
    p = build(mcq, "generate")
    assert p == Prompt(
        f"Question: Where do you borrow books?\n{CSQA_LETTERS}\n{LETTER_LINE}\nAnswer:",
        stop=("\n",), max_new_tokens=32)
    assert not p.is_choice
    assert build(mcq, "generate", chat=CHAT).text == (
        f"<u>Question: Where do you borrow books?\n{CSQA_LETTERS}\n{LETTER_LINE}</u>")


def test_two_option_mcq(make_record):
    rec = make_record("mcq", dataset="piqa", question="Open a jar?", choices=["twist", "pull"],
                      answer=0)
    assert build(rec, "letters").text == (
        f"Question: Open a jar?\nA. twist\nB. pull\n{LETTER_LINE}\nAnswer:")
    assert build(rec, "options").continuations == (" twist", " pull")


def test_math_mcq_generate_lists_the_options(make_record):
    rec = make_record("mcq", dataset="aqua", domain="math", question="Price?",
                      choices=["$61", "$65", "$67.40", "$70", "$78.20"], answer=4)
    p = build(rec, "generate")
    assert "\nA. $61\nB. $65\nC. $67.40\nD. $70\nE. $78.20\n" in p.text


# ------------------------------------------------------------------------- true/false


def test_true_false_options_with_context_adds_question_mark(tf):
    assert build(tf, "options") == Prompt(
        "The sky is blue on a clear day.\nQuestion: is the sky blue?\nAnswer:",
        (" yes", " no"), ("yes", "no"))


def test_true_false_keeps_a_single_trailing_question_mark(make_record):
    rec = make_record("true_false", question="is water dry? ", context=None, answer=False)
    assert build(rec, "options").text == "Question: is water dry?\nAnswer:"


def test_true_false_without_context(make_record):
    rec = make_record("true_false", question="is the sky blue", context=None)
    assert build(rec, "options").text == "Question: is the sky blue?\nAnswer:"
    assert build(rec, "letters").text == (
        f"Question: is the sky blue?\nA. yes\nB. no\n{LETTER_LINE}\nAnswer:")


def test_true_false_options_chat(tf):
    p = build(tf, "options", chat=CHAT)
    assert p.text == "<u>The sky is blue on a clear day.\nQuestion: is the sky blue?</u>"
    assert (p.continuations, p.responses) == (("yes", "no"), ("yes", "no"))


def test_true_false_letters(tf):
    assert build(tf, "letters") == Prompt(
        "The sky is blue on a clear day.\nQuestion: is the sky blue?\nA. yes\nB. no\n"
        f"{LETTER_LINE}\nAnswer:", (" A", " B"), ("yes", "no"))
    p = build(tf, "letters", chat=CHAT)
    assert p.text == ("<u>The sky is blue on a clear day.\nQuestion: is the sky blue?\n"
                      f"A. yes\nB. no\n{LETTER_LINE}</u>")
    assert p.continuations == ("A", "B")


def test_true_false_generate(tf):
    assert build(tf, "generate") == Prompt(
        "The sky is blue on a clear day.\nQuestion: is the sky blue?\nAnswer:",
        stop=("\n",), max_new_tokens=32)


# ------------------------------------------------------------------------- free-form


def test_math_generate(make_record):
    rec = make_record("math", question="What is 9 + 9?")
    assert build(rec, "generate") == Prompt(
        f"Question: What is 9 + 9?\n{MATH_LINE}\nAnswer:",
        stop=("\n\n", "Question:", "\nAnswer:"), max_new_tokens=96)
    assert build(rec, "generate", chat=CHAT).text == f"<u>Question: What is 9 + 9?\n{MATH_LINE}</u>"
    assert build(rec, "generate", max_new_tokens=200).max_new_tokens == 200


def test_coqa_generate_later_turn(make_record):
    rec = make_record("coqa", id="coqa-s-2", question="what does he like? ",
                      context="Tom has a cat.\n\nQ: who has a cat?\nA: Tom\n")
    assert build(rec, "generate") == Prompt(
        "Tom has a cat.\n\nQ: who has a cat?\nA: Tom\nQ: what does he like?\nA:",
        stop=("\n",), max_new_tokens=32)
    assert build(rec, "generate", chat=CHAT).text == (
        "<u>Tom has a cat.\n\nQ: who has a cat?\nA: Tom\nQ: what does he like?</u>")
    assert build(rec, "generate", max_new_tokens=8).max_new_tokens == 8


def test_coqa_generate_first_turn_separates_story_by_a_blank_line(make_record):
    rec = make_record("coqa", id="coqa-s-1", question="who has a cat?", context="Tom has a cat.")
    assert build(rec, "generate").text == "Tom has a cat.\n\nQ: who has a cat?\nA:"


def test_other_free_form_generate():
    # no such dataset ships today; the docstring's "other free-form" rule
    rec = Record("t-1", "truthfulqa", "free_form", "commonsense", "What is up?", None, None,
                 "the sky", "the sky")
    assert build(rec, "generate") == Prompt("Question: What is up?\nAnswer:", stop=("\n",),
                                            max_new_tokens=32)
    assert build(rec, "generate", chat=CHAT).text == "<u>Question: What is up?</u>"


# ------------------------------------------------------------------------- labels and errors


def test_option_labels(mcq, tf, make_record):
    assert prompts.option_labels(mcq) == CSQA_LABELS
    assert prompts.option_labels(tf) == ("yes", "no")
    with pytest.raises(PromptError, match="math-1: a free_form record has no options"):
        prompts.option_labels(make_record("math"))


def test_unknown_style(mcq):
    with pytest.raises(PromptError, match="style 'cot' is not known; known: options, letters, "
                                          "generate"):
        build(mcq, "cot")


@pytest.mark.parametrize("style", ["options", "letters"])
def test_choice_style_on_free_form_record(make_record, style):
    with pytest.raises(PromptError, match=f"style '{style}' needs options; gsm8k is free-form"):
        build(make_record("math"), style)
    with pytest.raises(PromptError, match=f"style '{style}' needs options; coqa is free-form"):
        build(make_record("coqa"), style)


def test_26_options_is_the_maximum(make_record):
    choices = [f"o{i}" for i in range(26)]
    p = build(make_record("mcq", dataset="mmlu", domain="problem_solving", choices=choices,
                          answer=25), "letters")
    assert p.continuations[-1] == " Z" and p.responses[-1] == "Z. o25"
    assert "\nZ. o25\n" in p.text


@pytest.mark.parametrize("style", ["options", "letters", "generate"])
def test_more_than_26_options_raises(make_record, style):
    rec = make_record("mcq", id="big", dataset="mmlu", domain="problem_solving",
                      choices=[f"o{i}" for i in range(27)], answer=0)
    with pytest.raises(PromptError, match="big: 27 options exceed A-Z"):
        build(rec, style)
