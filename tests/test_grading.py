"""Hand-written cases for routelib.answers.grading: each checks correct, extracted and rule."""
import pytest

from routelib.answers.grading import (TEXT_F1_THRESHOLD, Grade, extract_letter, extract_number,
                                      format_number, grade, grade_mcq, grade_number, grade_text,
                                      grade_true_false, letter_token, match_option_text,
                                      normalize_text, parse_number, token_f1)
from routelib.data import Record


def mcq(choices, answer, id="m1"):
    return Record(id, "mmlu", "mcq", "problem_solving", "q?", None, tuple(choices), answer,
                  choices[answer])


def math_rec(answer, aliases=()):
    return Record("g1", "gsm8k", "free_form", "math", "q?", None, None, answer, answer,
                  tuple(aliases))


def tf(answer):
    return Record("b1", "boolq", "true_false", "commonsense", "q?", "passage", None, answer,
                  str(answer).lower())


def coqa(answer, aliases=()):
    return Record("coqa-x-1", "coqa", "free_form", "conversational", "q?", "story", None, answer,
                  answer, tuple(aliases))


CITIES = mcq(["London", "Berlin", "Paris", "Rome"], 2)  # gold C
ANIMALS = mcq(["A cat is a reptile", "A dog is a mammal", "Fish fly", "Birds swim"], 1)  # gold B


# ------------------------------------------------------------------ MCQ
@pytest.mark.parametrize("record, response, correct, extracted, rule", [
    (CITIES, "The answer is (C)", True, "C", "mcq_marker"),
    (CITIES, "The answer is (B)", False, "B", "mcq_marker"),
    (CITIES, "Answer: C", True, "C", "mcq_marker"),
    (CITIES, "the answer is c.", True, "C", "mcq_marker"),
    (CITIES, "**Answer:** C", True, "C", "mcq_marker"),
    (CITIES, "Let me think. Paris is the capital, so the answer is (C).", True, "C", "mcq_marker"),
    # the last marker wins; "answer" markers beat "option" markers
    (CITIES, "The answer is (B). Wait, no: the answer is (C).", True, "C", "mcq_marker"),
    (CITIES, "Option B looks tempting, but the answer is C", True, "C", "mcq_marker"),
    (CITIES, "The best option is C, Paris.", True, "C", "mcq_marker"),
    (CITIES, "Option A is wrong. Option C is right. Option D is wrong.", False, None, "none"),
    (CITIES, "Check each option: (A) London no, (C) Paris yes.", False, None, "none"),  # names 2
    # an uppercase A right after a marker is a letter
    (CITIES, "The answer is A because London is big.", False, "A", "mcq_marker"),
    (CITIES, "C", True, "C", "mcq_letter"),
    (CITIES, "(C)", True, "C", "mcq_letter"),
    (CITIES, "C)", True, "C", "mcq_letter"),
    (CITIES, "C.", True, "C", "mcq_letter"),
    (CITIES, "C:", True, "C", "mcq_letter"),
    (CITIES, "c", True, "C", "mcq_letter"),
    (CITIES, "  C. Paris", True, "C", "mcq_letter"),
    (CITIES, "B because Berlin", False, "B", "mcq_letter"),
    (CITIES, "A", False, "A", "mcq_letter"),
    (CITIES, "A.", False, "A", "mcq_letter"),
    (CITIES, "(a)", False, "A", "mcq_letter"),
    (CITIES, "Paris", True, "C", "mcq_text"),  # log-likelihood style: response is the option text
    (CITIES, " paris. ", True, "C", "mcq_text"),
    (CITIES, "Berlin", False, "B", "mcq_text"),
    (CITIES, "I think it is Paris.", True, "C", "mcq_text_contains"),
    (CITIES, "Paris or Rome", False, None, "none"),  # ambiguous
    (CITIES, "F", False, None, "none"),  # letter beyond 4 options
    (CITIES, "The answer is (F)", False, None, "none"),
    (CITIES, "Madrid", False, None, "none"),
    (CITIES, "the answer is a city", False, None, "none"),  # lowercase article, not letter A
    (CITIES, "e.g. a capital", False, None, "none"),
    (CITIES, "", False, None, "none"),
    (CITIES, "   \n", False, None, "none"),
    # "A dog ..." starts with the article A, not the letter A: it names option B by its text
    (ANIMALS, "A dog is a mammal", True, "B", "mcq_text"),
    (ANIMALS, "A dog is a mammal, unlike fish.", True, "B", "mcq_text_contains"),
    (ANIMALS, "A whale is a mammal", False, None, "none"),
    (ANIMALS, "I think so", False, None, "none"),
])
def test_grade_mcq(record, response, correct, extracted, rule):
    g = grade(record, response)
    assert (g.correct, g.extracted, g.rule) == (correct, extracted, rule), g.detail
    assert g.score == float(correct)
    assert g == grade_mcq(record, response)


def test_mcq_nested_option_and_duplicates():
    rec = mcq(["Paris", "Paris, Texas", "Rome", "Paris, Texas"], 3)
    g = grade(rec, "It is Paris, Texas.")  # "paris" sits inside "paris texas": one answer
    assert (g.correct, g.extracted, g.rule) == (True, "D", "mcq_text_contains")
    g = grade(rec, "Paris, Texas")  # equal to the duplicated options B and D; gold D among them
    assert (g.correct, g.extracted, g.rule) == (True, "D", "mcq_text")
    g = grade(rec, "Paris")
    assert (g.correct, g.extracted, g.rule) == (False, "A", "mcq_text")


@pytest.mark.parametrize("response, correct, extracted, rule", [
    ("B and D", True, "C", "mcq_text"),  # an option's text that starts like a letter
    ("B", False, "B", "mcq_letter"),  # a lone letter stays a letter even though option A is "B"
    ("(d)", False, "D", "mcq_letter"),
    ("B and D are right", False, "B", "mcq_letter"),  # not an exact option text
])
def test_mcq_option_text_that_looks_like_a_letter(response, correct, extracted, rule):
    rec = mcq(["B", "A and B", "B and D", "none"], 2)
    g = grade(rec, response)
    assert (g.correct, g.extracted, g.rule) == (correct, extracted, rule), g.detail


def test_mcq_many_options_letter_i():
    rec = mcq([f"opt{i}" for i in range(10)], 8)  # gold I
    assert grade(rec, "I").extracted == "I"
    assert grade(rec, "(I)").correct
    g = grade(rec, "I have no comment")
    assert (g.correct, g.extracted, g.rule) == (False, None, "none")
    g = grade(rec, "Answer: I don't know")  # pronoun after a marker is not a letter
    assert (g.extracted, g.rule) == (None, "none")


@pytest.mark.parametrize("text, after_marker, letter", [
    ("B", False, "B"), ("B) x", False, "B"), ("[B]", False, "B"), ("( b )", False, "B"),
    ("B.C. era", False, None), ("Bob", False, None), ("A dog", False, None), ("A, B", False, None),
    ("A dog", True, "A"), ("a dog", True, None), ("I think", True, None), ("A\n", False, "A"),
    ("", False, None),
])
def test_letter_token(text, after_marker, letter):
    assert letter_token(text, after_marker) == letter


def test_extract_letter_and_option_text_helpers():
    assert extract_letter("The answer is (E)", 4) == ("E", "mcq_marker")  # grade_mcq checks range
    assert extract_letter("E", 4) is None
    cities = ["London", "Paris", "Rome"]
    assert match_option_text("paris or rome", cities) == ([1, 2], "mcq_text_contains")
    assert match_option_text("The Rome", cities) == ([2], "mcq_text_contains")
    assert match_option_text(" rome. ", cities) == ([2], "mcq_text")
    assert match_option_text("so x = -1.56", ["1.56", "156", "56"]) == ([], "mcq_text_contains")
    assert match_option_text("so x = 1.56", ["1.56", "156", "56"]) == ([0], "mcq_text_contains")


# ------------------------------------------------------------------ true/false
@pytest.mark.parametrize("gold, response, correct, extracted, rule", [
    (True, "yes.", True, "true", "bool_word"),
    (False, "No, the passage says otherwise.", True, "false", "bool_word"),
    (True, "No,", False, "false", "bool_word"),
    (True, "True", True, "true", "bool_word"),
    (False, "FALSE", True, "false", "bool_word"),
    (True, "**Yes** it is", True, "true", "bool_word"),
    (True, "Correct.", True, "true", "bool_word"),
    (False, "incorrect", True, "false", "bool_word"),
    (True, "Let me check the passage. The answer is yes.", True, "true", "bool_marker"),
    (False, "Yes, at first sight. But the answer is: no", True, "false", "bool_marker"),
    (True, "Answer: True", True, "true", "bool_marker"),
    (True, "Yesterday it rained", False, None, "none"),
    (True, "Maybe", False, None, "none"),
    (True, "", False, None, "none"),
    (True, "  ...  ", False, None, "none"),
])
def test_grade_true_false(gold, response, correct, extracted, rule):
    g = grade(tf(gold), response)
    assert (g.correct, g.extracted, g.rule) == (correct, extracted, rule), g.detail
    assert g == grade_true_false(tf(gold), response)


# ------------------------------------------------------------------ numbers
@pytest.mark.parametrize("gold, response, correct, extracted, rule", [
    ("1000", "1,000", True, "1000", "number_last"),
    ("5", "$5.00", True, "5", "number_last"),
    ("5", "5.0", True, "5", "number_last"),
    ("-3", "The temperature drops to -3", True, "-3", "number_last"),
    ("3.5", "3.50", True, "3.5", "number_last"),
    ("42", "So the total is 42.", True, "42", "number_last"),
    ("3.5", "It takes 3.5.", True, "3.5", "number_last"),
    ("1234.56", "She pays $1,234.56 in total", True, "1234.56", "number_last"),
    ("3", "1, 2, 3", True, "3", "number_last"),
    ("1", "1, 2, 3", False, "3", "number_last"),
    ("50", "The discount is 50%", True, "50", "number_last"),
    ("0.5", "half, i.e. 1/2", True, "0.5", "number_last"),
    ("7", "10 - 3 = 7", True, "7", "number_last"),
    ("18", "The answer is 18. Then 20 more", True, "18", "number_after_marker"),
    ("72", "She sold 48 + 24 clips.\n#### 72", True, "72", "number_after_marker"),
    ("12", "so x = 3 * 4 = \\boxed{12}. Check: 12 / 4 = 3", True, "12", "number_after_marker"),
    ("0.5", "\\boxed{\\frac{1}{2}}", True, "0.5", "number_after_marker"),
    ("1000", "**Answer:** $1,000", True, "1000", "number_after_marker"),
    ("18", "The answer is 16. No wait, answer: 18 dollars", True, "18", "number_after_marker"),
    ("9", "The answer is below.\nThen 4 + 5 = 9", True, "9", "number_last"),  # marker w/o number
    ("5", "5.000001", True, "5.000001", "number_last"),  # 1e-6 apart: within 1e-6 * max(1, 5)
    ("5", "5.00001", False, "5.00001", "number_last"),  # 1e-5 apart: outside
    ("0.000001", "0.0000015", True, "1.5e-06", "number_last"),  # absolute 1e-6 below 1
    ("1000000", "1000000.5", True, "1000000.5", "number_last"),  # relative tolerance
    ("0", "-0", True, "0", "number_last"),
    ("5", "five", False, None, "none"),
    ("5", "", False, None, "none"),
    ("5", "version v1.2.3", False, None, "none"),
])
def test_grade_number(gold, response, correct, extracted, rule):
    g = grade(math_rec(gold), response)
    assert (g.correct, g.extracted, g.rule) == (correct, extracted, rule), g.detail
    assert g == grade_number(math_rec(gold), response)


def test_number_alias_and_detail():
    g = grade(math_rec("0.5", aliases=("50",)), "The answer is 50%")
    assert (g.correct, g.extracted, g.rule) == (True, "50", "number_after_marker")
    assert "'50'" in g.detail and "answer is" in g.detail


@pytest.mark.parametrize("text, value", [
    ("1,000", 1000.0), ("$5.00", 5.0), ("-3", -3.0), ("3.50", 3.5), ("50%", 50.0), ("1/2", 0.5),
    ("42.", 42.0), ("$1,234.56", 1234.56), (".5", 0.5), ("1/0", None), ("abc", None), ("", None),
])
def test_parse_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("value, text", [
    (1000.0, "1000"), (-3.0, "-3"), (5.0, "5"), (1234.56, "1234.56")])
def test_format_number(value, text):
    assert format_number(value) == text


def test_extract_number_reports_marker():
    assert extract_number("#### 72") == (72.0, "number_after_marker", "####")
    assert extract_number("\\boxed{12}") == (12.0, "number_after_marker", "\\boxed")
    assert extract_number("1, 2, 3") == (3.0, "number_last", None)
    assert extract_number("none here") is None


# ------------------------------------------------------------------ free-form text (CoQA)
@pytest.mark.parametrize("gold, aliases, response, correct, extracted, rule, score", [
    ("Walt Disney.", (), "Walt Disney", True, "walt disney", "text_em", 1.0),
    ("Walt Disney.", (), "A: walt disney!", True, "walt disney", "text_em", 1.0),
    ("the living room", (), "The living room.\nQ: what next?", True, "living room", "text_em", 1.0),
    # F1 above the threshold: pred {created, by, walt, disney} vs gold {walt, disney} -> 2/3
    ("Walt Disney", (), "created by Walt Disney", True, "created by walt disney", "text_f1", 2 / 3),
    # F1 1/2, below the threshold 0.6 (passed under the earlier F1 >= 0.5 rule)
    ("a clean mouse", (), "Clean cat", False, "clean cat", "text_f1", 0.5),
    # the examples: F1 exactly 1/2, wrong by reading, now wrong
    ("150 years", (), "19 years", False, "19 years", "text_f1", 0.5),
    ("Jill, Jim, Jeff and Chris", (), "bob and jill", False, "bob and jill", "text_f1", 0.5),
    # every gold token in the answer: right whatever the F1 (P 1/4, R 1, F1 2/5)
    ("the kitchen", (), "in the kitchen at home", True, "in kitchen at home", "text_recall",
     0.4),
    # exactly at the threshold: 3 of 5 tokens in common both ways -> F1 3/5
    ("red blue green pink gray", (), "red blue green black white", True,
     "red blue green black white", "text_f1", 0.6),
    # F1 below the threshold: 1 common token of 4 and 2 -> P 1/4, R 1/2, F1 1/3
    ("Mickey Mouse", (), "a famous cartoon mouse character", False,
     "famous cartoon mouse character", "text_f1", 1 / 3),
    ("Mickey Mouse", (), "Donald Duck", False, "donald duck", "text_f1", 0.0),
    # alias match
    ("50 years ago, during the time when movies were silent",
     ("about fifty years ago", "Fifty years ago"),
     "Fifty years ago.", True, "fifty years ago", "text_em", 1.0),
    # yes/no golds: first word
    ("yes", (), "Yes, he did.", True, "yes", "text_yesno", 1.0),
    ("Yes", (), "no, he did not", False, "no", "text_yesno", 0.0),
    ("No.", (), "No", True, "no", "text_yesno", 1.0),
    ("yes", (), "He did, yes", False, "he", "text_yesno", 0.0),  # first word only
    ("He DID.", ("yes", "no"), "Yes", True, "yes", "text_yesno", 1.0),
    # "unknown" normalizes like any string
    ("unknown", (), "Unknown.", True, "unknown", "text_em", 1.0),
    ("unknown", (), "It is not known", False, "it is not known", "text_f1", 0.0),
    ("Walt Disney", (), "", False, None, "none", 0.0),
    ("Walt Disney", (), "The.", False, None, "none", 0.0),
])
def test_grade_text(gold, aliases, response, correct, extracted, rule, score):
    g = grade(coqa(gold, aliases), response)
    assert (g.correct, g.extracted, g.rule) == (correct, extracted, rule), g.detail
    assert g.score == pytest.approx(score)
    assert g == grade_text(coqa(gold, aliases), response)


def test_text_threshold_is_inclusive():
    assert TEXT_F1_THRESHOLD == 0.6
    assert token_f1("p q r d e", "p q r x y") == pytest.approx(0.6)
    assert grade(coqa("p q r x y"), "p q r d e").correct
    assert not grade(coqa("p q r x y z"), "p q r d e").correct  # F1 6/11, recall 1/2


@pytest.mark.parametrize("a, b, f1", [
    ("the Cat sat", "cat sat", 1.0), ("cat", "dog", 0.0), ("", "", 1.0), ("cat", "", 0.0),
    ("w x y z", "y z", 2 / 3), ("a b c d", "c d", 0.8),  # article "a" dropped
])
def test_token_f1(a, b, f1):
    assert token_f1(a, b) == pytest.approx(f1)


@pytest.mark.parametrize("raw, norm", [
    ("The  Living-Room!", "livingroom"), ("An apple, a day", "apple day"),
    ("  Walt Disney. ", "walt disney"),
    ("Theater", "theater"),
])
def test_normalize_text(raw, norm):
    assert normalize_text(raw) == norm


# ------------------------------------------------------------------ dispatch
@pytest.mark.parametrize("record", [CITIES, tf(True), math_rec("5"), coqa("yes")])
@pytest.mark.parametrize("response", ["", "   ", None])
def test_empty_response_is_none_for_every_type(record, response):
    assert grade(record, response) == Grade(False, None, "none", grade(record, "").detail, 0.0)


def test_dispatch_by_type_and_domain():
    assert grade(math_rec("5"), "5").rule == "number_last"
    assert grade(coqa("5"), "5").rule == "text_em"
    aqua = Record("a1", "aqua", "mcq", "math", "q?", None, ("$61", "$67.40"), 1, "$67.40")
    g = grade(aqua, "$67.40")  # a math MCQ goes to the MCQ grader, option text matched
    assert (g.correct, g.extracted, g.rule) == (True, "B", "mcq_text")
    with pytest.raises(ValueError):
        grade(Record("x", "gsm8k", "essay", "math", "q?", None, None, "5", "5"), "5")
