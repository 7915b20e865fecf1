"""Rule-based grading of a model's response against a :class:`~routelib.data.Record`.

:func:`grade` returns a :class:`Grade` saying whether the response is correct, what was extracted,
which rule fired (``rule``) and why (``detail``). A response with nothing extractable (empty
included) gives ``correct=False, extracted=None, rule="none"``; grading never raises on a response.

**MCQ** (options labelled A, B, C, ... in order; ``extracted`` is the letter). In priority:

1. ``mcq_marker``: the *last* marker ``answer`` (optionally followed by ``is``, ``would be``,
   ``:`` or ``=``) followed by a letter token: "The answer is (B)", "Answer: B", "answer is b.";
   failing that, the last "correct/best/right/final option/choice" marker ("The best option is
   C"; a bare "Option C" is not a marker: chains of thought walk through every option). A marked
   letter beyond the number of options gives ``none``.
2. ``mcq_letter``: the response *starts* with a letter token: "B", "(B)", "[B]", "B)", "B.",
   "B:", "b", "B. Paris", "B because ...". Out-of-range letters are skipped (go on to rule 3),
   and so is a response that is more than the letter and equals an option's text exactly
   (options such as "B and D" or "B is tangential ..." exist in MMLU and OpenBookQA). A lone
   letter ("B", "(b)", "B.") is always a letter, even where an option's text is that letter (a
   few MMLU items): callers that score options by likelihood should report the letter.
3. ``mcq_text``: the response equals one option's text (how log-likelihood scoring reports its
   choice), compared with whitespace collapsed, then also with :func:`option_key` (lowercase, no
   ``.,;:!?`` at the ends). Else ``mcq_text_contains``: the response's key contains exactly one
   option's key as a whole phrase (not inside a word or number: "15" is not in "-15" or "1.56";
   options inside a longer contained option are dropped). Options that differ only in case or
   punctuation ("BB BB"/"Bb bb", "156"/"1.56") are different answers, so SQuAD normalization is not
   used here; two different matched options -> ``none``. Identical duplicate options (present in
   the sources) count as one answer: correct if any copy is the gold.

A *letter token* is a letter in parentheses/brackets, or a bare letter followed by the end of the
text, by ``)``/``]``/``.``/``:`` (not followed by a letter or digit: "e.g." is no letter), or by
a space, ``,`` or ``;``. The words "A" and "I" are special: a bare a/A or i/I counts only when
alone or followed by ``)``/``]``/``.``/``:``, so "A dog is a mammal" and "I think..." are not
letters. One exception: right after a marker an *uppercase* "A" followed by a space or comma
counts ("The answer is A because ..."), since mid-sentence the article is written "a". ``*``
(markdown) is ignored.

**true_false** (``extracted`` "true"/"false"): ``bool_marker``, the last "answer is/answer:"
followed by yes/no/true/false/correct/incorrect; else ``bool_word``, the first word of the response
(case-insensitive, punctuation stripped: "yes.", "No,", "**True**") in {yes, true, correct} ->
True, {no, false, incorrect} -> False.

**Numbers** (free-form, domain "math"; ``extracted`` is the canonical number: no commas, no
trailing ".0"). A number is an optional "-" (not after a digit or letter), an optional "$", digits
with optional thousands commas ("1,000", "$1,234.56"; "1, 2, 3" is three numbers), an optional
decimal part, then optionally "/digits" (a fraction, as a float) and "%" (dropped: "50%" -> 50).
A sentence-final period is no decimal point ("is 42." -> 42, "3.5." -> 3.5).
``number_after_marker``: the first number after the last marker that is followed by one, on the
same line: "answer is", "answer was", "answer:", "answer =", "####", or inside ``\\boxed{...}``
(``\\frac{a}{b}`` read as a/b). Else ``number_last``: the last number in the response. Compared
with ``record.answer`` and each alias: equal when ``|x - gold| <= 1e-6 * max(1, |x|, |gold|)``
(relative, absolute below 1).

**Free-form text** (other free-form, i.e. CoQA). ``normalize_text`` is SQuAD's: lowercase, drop
punctuation, drop the articles a/an/the, collapse whitespace. The text is cut at a "\\nQ:" (a
continued dialogue); a leading "A:" is dropped, and so is everything up to the last "answer is" or
"answer:". Against ``record.answer`` and every alias: a gold that normalizes to "yes"/"no" is
compared with the response's first normalized word only (``text_yesno``, score 1 or 0: "Yes, he
did." is right for "yes"); any other gold scores 1 on exact match (``text_em``) else its token F1
(``text_f1``). The best gold wins; correct = exact or yes/no match, or F1 >=
:data:`TEXT_F1_THRESHOLD` (0.5). This threshold is *our* rule: the paper judges free-form answers
with an LLM. ``score`` is the best F1 (1.0 for exact/yes-no matches).
"unknown" golds are normalized like any other string.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass

TEXT_F1_THRESHOLD = 0.5
LETTERS = string.ascii_uppercase
WORD_LETTERS = frozenset("AI")  # single letters that are also English words
TRUE_WORDS = frozenset({"yes", "true", "correct"})
FALSE_WORDS = frozenset({"no", "false", "incorrect"})


@dataclass(frozen=True)
class Grade:
    correct: bool
    extracted: str | None
    rule: str
    detail: str
    score: float = 0.0


def _none(detail: str) -> Grade:
    return Grade(False, None, "none", detail, 0.0)


# ---------------------------------------------------------------- text
def normalize_text(s: str) -> str:
    """SQuAD normalization: lowercase, no punctuation, no articles, single spaces."""
    s = "".join(ch for ch in s.lower() if ch not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 of two strings (normalized here); two empty strings give 1.0."""
    p, g = normalize_text(prediction).split(), normalize_text(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def _golds(record) -> list[str]:
    return [str(record.answer), *record.aliases]


def text_prediction(response: str) -> str:
    """The normalized answer text of a free-form response: up to a following "Q:" turn, after
    an "answer is"/"answer:" marker if any."""
    text = re.split(r"\n\s*Q:", (response or "").strip(), maxsplit=1)[0]
    text = re.split(r"\banswer\s*(?:is|:)\s*:?", re.sub(r"^A\s*:", "", text), flags=re.I)[-1]
    return normalize_text(text)


def token_recall(prediction: str, gold: str) -> float:
    """Share of the gold's (normalized) tokens that the prediction contains."""
    p, g = normalize_text(prediction).split(), normalize_text(gold).split()
    if not g:
        return float(not p)
    return sum((Counter(p) & Counter(g)).values()) / len(g)


def grade_text(record, response: str) -> Grade:
    pred = text_prediction(response)
    if not pred:
        return _none("no text left after normalization")
    first = pred.split()[0]
    cands = []  # (correct, score, rank, rule, gold); the max wins: exact > yes/no > F1
    for gold in _golds(record):
        g = normalize_text(gold)
        if g in ("yes", "no"):
            cands.append((first == g, float(first == g), 2, "text_yesno", gold))
        elif pred == g:
            cands.append((True, 1.0, 3, "text_em", gold))
        else:
            f1 = token_f1(pred, g)
            cands.append((f1 >= TEXT_F1_THRESHOLD, f1, 1, "text_f1", gold))
    correct, score, _, rule, gold = max(cands)
    extracted = first if rule == "text_yesno" else pred
    how = {"text_em": "exact match",
           "text_yesno": f"first word {first!r} {'=' if correct else '!='} yes/no gold",
           "text_f1": f"token F1 {score:.3f} {'>=' if correct else '<'} {TEXT_F1_THRESHOLD}"}[rule]
    return Grade(correct, extracted, rule, f"{pred!r} vs gold {gold!r}: {how}", score)


# ---------------------------------------------------------------- numbers
NUMBER_RE = re.compile(
    r"(?<![\w.])(-)?(?:\$\s*)?(\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d*\.\d+|\d+)(?:/(\d+))?(%)?")
NUMBER_MARKER_RE = re.compile(r"\banswer\s*(?:is|was|:|=)\s*:?|####|\\boxed\s*\{", re.I)


def parse_number(s: str) -> float | None:
    """The value of one number string ("1,000", "$5.00", "-3", "50%", "1/2"), or None."""
    m = NUMBER_RE.fullmatch(s.strip().rstrip("."))
    if not m:
        return None
    value = float(m.group(2).replace(",", ""))
    if m.group(3):
        if int(m.group(3)) == 0:
            return None
        value /= int(m.group(3))
    return -value if m.group(1) else value


def format_number(x: float) -> str:
    """Canonical string: "1000", "-3", "1234.56" (no commas, no trailing .0)."""
    return str(int(x)) if x.is_integer() else repr(x)


def _numbers(text: str) -> list[float]:
    return [v for m in NUMBER_RE.finditer(text) if (v := parse_number(m.group(0))) is not None]


def _boxed(text: str, start: int) -> str:
    """The content of a brace group opened just before ``start``, with \\frac{a}{b} as a/b."""
    depth, i = 1, start
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    inner = text[start:i - 1 if depth == 0 else i]
    return re.sub(r"\\d?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"\1/\2", inner)


def extract_number(response: str) -> tuple[float, str, str | None] | None:
    """(value, rule, marker) from the last marker followed by a number, else the last number."""
    text = response or ""
    for m in reversed(list(NUMBER_MARKER_RE.finditer(text))):
        if m.group(0).startswith("\\"):
            segment = _boxed(text, m.end())
        else:
            segment = text[m.end():].lstrip().split("\n", 1)[0]
        values = _numbers(segment)
        if values:
            return values[0], "number_after_marker", m.group(0).strip().rstrip("{ ")
    values = _numbers(text)
    return (values[-1], "number_last", None) if values else None


def numbers_equal(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def grade_number(record, response: str) -> Grade:
    found = extract_number(response)
    if found is None:
        return _none("no number in the response")
    value, rule, marker = found
    golds = [(g, v) for g in _golds(record) if (v := parse_number(g)) is not None]
    hit = next((g for g, v in golds if numbers_equal(value, v)), None)
    where = f"after marker {marker!r}" if marker else "as the last number"
    golds_txt = ", ".join(repr(g) for g, _ in golds) or "(no numeric gold)"
    verdict = f"equals gold {hit!r}" if hit is not None else f"matches none of {golds_txt}"
    return Grade(hit is not None, format_number(value), rule,
                 f"extracted {format_number(value)} {where}; {verdict}", float(hit is not None))


# ---------------------------------------------------------------- true/false
BOOL_MARKER_RE = re.compile(
    r"\banswer\s*(?:is|:)\s*:?\W*(yes|no|true|false|correct|incorrect)\b", re.I)


def extract_bool(response: str) -> tuple[bool, str] | None:
    """(value, rule) from the last "answer is yes/no" marker, else the response's first word."""
    text = response or ""
    markers = list(BOOL_MARKER_RE.finditer(text))
    if markers:
        return markers[-1].group(1).lower() in TRUE_WORDS, "bool_marker"
    words = re.findall(r"\w+", text.lower())
    if words and words[0] in TRUE_WORDS | FALSE_WORDS:
        return words[0] in TRUE_WORDS, "bool_word"
    return None


def grade_true_false(record, response: str) -> Grade:
    found = extract_bool(response)
    if found is None:
        return _none("no yes/no/true/false marker or first word")
    value, rule = found
    ok = value == bool(record.answer)
    text, gold = str(value).lower(), str(bool(record.answer)).lower()
    return Grade(ok, text, rule, f"read {text} ({rule}); gold is {gold}", float(ok))


# ---------------------------------------------------------------- MCQ
PAREN_LETTER_RE = re.compile(r"[(\[]\s*([A-Za-z])\s*[)\]]")
BARE_LETTER_RE = re.compile(r"([A-Za-z])(?:(?=[\s,;])|[).:\]](?![A-Za-z0-9])|$)")
LONE_LETTER_RE = re.compile(r"\s*[(\[]?\s*[A-Za-z]\s*[)\].:]?\s*")  # "B", "(b)", "B."
MCQ_MARKER_RES = tuple(  # tried in this order
    re.compile(rf"\b(?:{w})\b\s*(?:is|would\s+be|[:=])?\s*:?\s*", re.I)
    for w in ("answer", r"(?:correct|best|right|final)\s+(?:option|choice)"))


def letter_token(s: str, after_marker: bool = False) -> str | None:
    """The uppercase letter that ``s`` starts with as a letter token (see module doc), or None."""
    if m := PAREN_LETTER_RE.match(s):
        return m.group(1).upper()
    m = BARE_LETTER_RE.match(s)
    if not m:
        return None
    letter, rest = m.group(1), s[1:]
    if letter.upper() in WORD_LETTERS and not re.match(r"\s*$|[).:\]]", rest):
        if not (after_marker and letter == "A" and re.match(r"[\s,]", rest)):
            return None
    return letter.upper()


def extract_letter(response: str, n_options: int) -> tuple[str, str] | None:
    """(letter, rule) by the marker and leading-letter rules; the letter may be out of range."""
    text = (response or "").replace("*", "")
    for marker_re in MCQ_MARKER_RES:
        for m in reversed(list(marker_re.finditer(text))):
            if letter := letter_token(text[m.end():], after_marker=True):
                return letter, "mcq_marker"
    letter = letter_token(text.lstrip())
    if letter and LETTERS.index(letter) < n_options:
        return letter, "mcq_letter"
    return None


def option_key(s: str) -> str:
    """Light normalization for option text: lowercase, single spaces, no edge ``.,;:!?``."""
    return " ".join(s.lower().split()).strip(" .,;:!?")


def _contains(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w.+\-\u2212]){re.escape(phrase)}(?![\w%]|[.,]\d)", text) is not None


def match_option_text(response: str, choices, exact_only: bool = False) -> tuple[list[int], str]:
    """Indices of the options the response names by text, and the rule (exact or contains)."""
    response = response or ""
    for key in (lambda t: " ".join(t.split()), option_key):  # case-sensitive first
        exact = [i for i, c in enumerate(choices) if key(c) and key(c) == key(response)]
        if exact:
            return exact, "mcq_text"
    if exact_only:
        return [], "mcq_text"
    keys = [option_key(c) for c in choices]
    inside = [i for i, k in enumerate(keys) if k and _contains(option_key(response), k)]
    inside = [i for i in inside if not any(keys[i] != keys[j] and _contains(keys[j], keys[i])
                                           for j in inside)]
    return inside, "mcq_text_contains"


def grade_mcq(record, response: str) -> Grade:
    choices = record.choices or ()
    gold = LETTERS[record.answer]
    found = extract_letter(response, len(choices))
    exact, _ = match_option_text(response, choices, exact_only=True)
    if found and found[1] == "mcq_letter" and exact and not LONE_LETTER_RE.fullmatch(response):
        found = None  # the response is an option's text that starts like a letter: "B and D"
    if found:
        letter, rule = found
        if LETTERS.index(letter) >= len(choices):
            return _none(f"marked letter {letter} is beyond the {len(choices)} options")
        ok = letter == gold
        return Grade(ok, letter, rule, f"read letter {letter} ({rule}); gold is {gold}", float(ok))
    idx, rule = match_option_text(response, choices)
    if not idx:
        return _none("no answer letter and no option text found")
    if len({" ".join(choices[i].split()) for i in idx}) > 1:
        return _none(f"response names several options: {', '.join(LETTERS[i] for i in idx)}")
    letter = gold if record.answer in idx else LETTERS[idx[0]]
    ok = letter == gold
    return Grade(ok, letter, rule, f"response text matches option {letter} "
                 f"{choices[idx[0]]!r} ({rule}); gold is {gold}", float(ok))


def grade(record, response: str) -> Grade:
    """Dispatch on the record's task type (and domain, for free-form)."""
    if record.type == "mcq":
        return grade_mcq(record, response)
    if record.type == "true_false":
        return grade_true_false(record, response)
    if record.type == "free_form":
        grader = grade_number if record.domain == "math" else grade_text
        return grader(record, response)
    raise ValueError(f"record {record.id!r} has unknown type {record.type!r}")
