"""Verbalized confidence: the number a model states about its own answer, read from its text.

:func:`parse_verbal` is what the ``verbal_1s`` and ``verbal_2s`` methods of
:mod:`routelib.uq.methods` apply to the model's output: a value, or ``None`` with the reason the
item is discarded (:data:`DISCARD_REASONS`); :func:`parse_verbal_confidence` is its value.
:func:`split_one_stage` separates a one-stage output into its answer and its confidence.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

NO_NUMBER = "verbal output without a usable number"
STATED_SCALE = "verbal output states a scale (e.g. '0 to 100'), not a confidence"
OUT_OF_RANGE = "verbal number outside [0, 1] after mapping"
DISCARD_REASONS = (NO_NUMBER, STATED_SCALE, OUT_OF_RANGE)
# a range whose ends are these is the scale the prompt asked on ("0 to 100", "1-10", "0-1")
SCALE_LOW, SCALE_HIGH = (0.0, 1.0), (1.0, 5.0, 10.0, 100.0)

_NUM = r"-?(?:\d+(?:\.\d+)?|\.\d+)"
_EXPR = re.compile(rf"""(?<![\w./])(?:
      (?P<lo>{_NUM})\s*(?P<lpct>%)?\s*(?:-|–|\bto\b)\s*(?P<hi>{_NUM})\s*(?P<rpct>%|percent\b)?
    | (?P<num>{_NUM})\s*(?:/|\bout\s+of\b)\s*(?P<den>\d+(?:\.\d+)?)(?![/\d])
    | (?P<pct>{_NUM})\s*(?:%|percent\b)
    | (?P<bare>{_NUM})
    )""", re.X | re.I)
_MARKER = re.compile(r"\b(confidence|probability|certainty|likelihood)\b", re.I)
# what may stand between a marker and its number: no digit, sentence end, sign or line break
_WINDOW = re.compile(r"[^\d\n.!?;<>\-]{0,30}")
_ZERO, _ONE = r"0(?:\.0+)?", r"(?:100|1)(?:\.0+)?(?!\d)"  # 100 before 1: "100%" is no "1"
_PLACEHOLDERS = re.compile(r"<[^<>\n]{0,300}>")  # echoed template slots: "<number>"
_SCALES = re.compile(  # echoed scale descriptions beside a number, never the answer
    rf"\(\s*(?:from\s+)?{_ZERO}\s*%?\s*(?:-|–|to)\s*{_ONE}\s*%?\s*\)"
    rf"|\bbetween\s+{_ZERO}\s*%?\s+and\s+{_ONE}\s*%?", re.I)


_CONTINUED = re.compile(r"\n\s*(?:Question|Q)\s*:", re.I)


@dataclass(frozen=True)
class VerbalParse:
    """A parsed confidence in ``[0, 1]``, or ``value=None`` and ``reason`` (one of
    :data:`DISCARD_REASONS`); ``reason`` is ``""`` when a value was read."""
    value: float | None
    reason: str = ""


def _bare_value(x: float, probability_marker: bool) -> float | None:
    if x <= 1:
        return x
    if probability_marker or x > 100:
        return None
    return x / 100


def _value(m: re.Match, probability_marker: bool = False) -> float | None:
    g = m.groupdict()
    if g["lo"] is not None:
        ends = [float(g["lo"]), float(g["hi"])]
        if g["lpct"] or g["rpct"]:
            vals = [e / 100 for e in ends]
        else:
            vals = [_bare_value(e, probability_marker) for e in ends]
        return None if None in vals else (vals[0] + vals[1]) / 2
    if g["num"] is not None:
        den = float(g["den"])
        return float(g["num"]) / den if den > 0 else None
    if g["pct"] is not None:
        return float(g["pct"]) / 100
    return _bare_value(float(g["bare"]), probability_marker)


def _in_unit(v: float | None) -> VerbalParse:
    if v is not None and 0.0 <= v <= 1.0:
        return VerbalParse(v)
    return VerbalParse(None, OUT_OF_RANGE)


def _is_scale(m: re.Match) -> bool:
    """A range from 0 or 1 to 1, 5, 10 or 100 (with or without %): a stated scale."""
    g = m.groupdict()
    return g["lo"] is not None and float(g["lo"]) in SCALE_LOW and \
        float(g["hi"]) in SCALE_HIGH and float(g["lo"]) < float(g["hi"])


def _read(m: re.Match, probability_marker: bool = False) -> VerbalParse:
    if _is_scale(m):
        return VerbalParse(None, STATED_SCALE)
    return _in_unit(_value(m, probability_marker))


def _is_scaled(m: re.Match) -> bool:
    """A percentage, a percentage range, or a fraction out of 10 or 100."""
    g = m.groupdict()
    return bool(g["pct"] is not None or g["lpct"] or g["rpct"]
                or (g["den"] is not None and float(g["den"]) in (10.0, 100.0)))


def parse_verbal_confidence(text: str | None) -> float | None:
    """The value of :func:`parse_verbal`: a confidence in ``[0, 1]``, or ``None``."""
    return parse_verbal(text).value


def parse_verbal(text: str | None) -> VerbalParse:
    """A confidence in ``[0, 1]`` parsed from a model's verbalized answer, or ``None`` and why.

    Number forms: percentages (``85%``, ``85 percent`` -> 0.85), fractions (``85/100``,
    ``7/10``, ``8 out of 10``), ranges (``80-90%``, ``0.7 to 0.9`` -> the midpoint) and bare
    numbers (``0.85``; a bare number in ``(1, 100]`` is read as a percentage, ``85`` -> 0.85,
    except right after "probability", where it must already lie in ``[0, 1]``).

    Which number wins, first rule that applies:

    0. The text is cut where the model goes on with a new prompt turn (a line starting
       "Question:" or "Q:": its numbers belong to that question). Echoed template slots (``<number>``) and scale descriptions *beside* a number are
       removed first: ``(0.0 to 1.0)``, ``(0-100)``, ``between 0 and 1`` (only these 0..1 /
       0..100 endpoints).
    1. **Marker**: the number right after the *last* "confidence", "probability", "certainty"
       or "likelihood" that is followed by one (up to 30 characters of words/punctuation in
       between, not crossing a digit, a line break, ``.!?;`` or a minus sign): "Guess: 42
       Probability: 0.9" -> 0.9, "Confidence: high (90%)" -> 0.9.
    2. **Scaled**: otherwise the *last* percentage or fraction out of 10/100 anywhere:
       "I am 90% sure" -> 0.9, "I'm 7/10 sure" -> 0.7. Bare numbers are never taken from
       running text (they are usually the answer).
    3. **Number only**: otherwise, if the whole text is one number (trailing ``.`` allowed):
       "0.85" -> 0.85, "0.0" -> 0.0, "85" -> 0.85.
    4. Otherwise ``None``, reason :data:`NO_NUMBER` ("confidence: high", "The answer is
       42."), or :data:`STATED_SCALE` when what was left was a scale description.

    A winning range that is a *scale* (from 0 or 1 to 1, 5, 10 or 100: "0 to 100",
    "0% to 100%", "from 0 to 100%", "1-10", "0-1") is the scale the prompt asked on echoed back,
    not a confidence: ``None``, reason :data:`STATED_SCALE` (it is not read as its midpoint).
    The winning number is not replaced by another when it is out of range: after mapping it
    must lie in ``[0, 1]``, else ``None``, reason :data:`OUT_OF_RANGE` ("150%", "Confidence:
    -0.2", "Probability: 1.5"). ``None`` means the item is discarded by the verbal methods.
    """
    if not text or not text.strip():
        return VerbalParse(None, NO_NUMBER)
    t = _PLACEHOLDERS.sub(" ", _CONTINUED.split(text, maxsplit=1)[0])
    t, n_scales = _SCALES.subn(" ", t)
    for mk in reversed(list(_MARKER.finditer(t))):
        w = _WINDOW.match(t, mk.end())
        e = _EXPR.match(t, w.end())
        if e:
            return _read(e, probability_marker=mk.group(1).lower() == "probability")
    scaled = [e for e in _EXPR.finditer(t) if _is_scaled(e)]
    if scaled:
        return _read(scaled[-1])
    e = _EXPR.fullmatch(re.sub(r"^\s*from\s+", "", t.strip().rstrip(".").strip(), flags=re.I))
    if e:
        return _read(e)
    return VerbalParse(None, STATED_SCALE if n_scales else NO_NUMBER)


_CONF_MARKER = re.compile(r"\bconfidence\b\s*(?:level|score)?\s*[:=]", re.I)


def split_one_stage(text: str | None) -> tuple[str, str]:
    """(answer text, confidence text) of a one-stage output, the reply to a prompt ending in
    ``Answer:`` that asked for ``Answer: <answer>\nConfidence: <number>%``.

    The answer is what comes before the first ``Confidence:`` marker, cut at its first line
    break (what follows on other lines is a continued prompt: "Question: ...", "Q: ..."), with
    a leading ``Answer:`` dropped; the confidence text is the marker onward. Without a marker,
    both are the whole text (the first line for the answer): "100%" is then both the answer
    and its stated confidence, as the model wrote it."""
    t = (text or "").strip()
    m = _CONF_MARKER.search(t)
    head, conf = (t[:m.start()], t[m.start():]) if m else (t, t)
    head = re.sub(r"^\s*answer\s*:\s*", "", head.strip(), flags=re.I)
    return head.split("\n", 1)[0].strip(), conf
