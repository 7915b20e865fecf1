"""Verbalized confidence: the number a model states about its own answer, read from its text.

:func:`parse_verbal_confidence` is what the ``verbal_1s`` and ``verbal_2s`` methods of
:mod:`routelib.uq.methods` apply to the model's output; ``None`` means the item is discarded.
"""
from __future__ import annotations

import re

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
_ZERO, _ONE = r"0(?:\.0+)?", r"(?:1(?:\.0+)?|100)"
_SCALES = re.compile(  # echoed scale descriptions and placeholders, never the answer
    rf"<[^<>\n]{{0,300}}>"
    rf"|\(\s*(?:from\s+)?{_ZERO}\s*%?\s*(?:-|–|to)\s*{_ONE}\s*%?\s*\)"
    rf"|\bbetween\s+{_ZERO}\s*%?\s+and\s+{_ONE}\s*%?", re.I)


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


def _in_unit(v: float | None) -> float | None:
    return v if v is not None and 0.0 <= v <= 1.0 else None


def _is_scaled(m: re.Match) -> bool:
    """A percentage, a percentage range, or a fraction out of 10 or 100."""
    g = m.groupdict()
    return bool(g["pct"] is not None or g["lpct"] or g["rpct"]
                or (g["den"] is not None and float(g["den"]) in (10.0, 100.0)))


def parse_verbal_confidence(text: str | None) -> float | None:
    """A confidence in ``[0, 1]`` parsed from a model's verbalized answer, or ``None``.

    Number forms: percentages (``85%``, ``85 percent`` -> 0.85), fractions (``85/100``,
    ``7/10``, ``8 out of 10``), ranges (``80-90%``, ``0.7 to 0.9`` -> the midpoint) and bare
    numbers (``0.85``; a bare number in ``(1, 100]`` is read as a percentage, ``85`` -> 0.85,
    except right after "probability", where it must already lie in ``[0, 1]``).

    Which number wins, first rule that applies:

    0. Echoed scale descriptions are removed first: ``<placeholders>``, ``(0.0 to 1.0)``,
       ``(0-100)``, ``between 0 and 1`` (only these 0..1 / 0..100 endpoints).
    1. **Marker**: the number right after the *last* "confidence", "probability", "certainty"
       or "likelihood" that is followed by one (up to 30 characters of words/punctuation in
       between, not crossing a digit, a line break, ``.!?;`` or a minus sign): "Guess: 42
       Probability: 0.9" -> 0.9, "Confidence: high (90%)" -> 0.9.
    2. **Scaled**: otherwise the *last* percentage or fraction out of 10/100 anywhere:
       "I am 90% sure" -> 0.9, "I'm 7/10 sure" -> 0.7. Bare numbers are never taken from
       running text (they are usually the answer).
    3. **Number only**: otherwise, if the whole text is one number (trailing ``.`` allowed):
       "0.85" -> 0.85, "0.0" -> 0.0, "85" -> 0.85.
    4. Otherwise ``None`` ("confidence: high", "The answer is 42.").

    The winning number is not replaced by another when it is out of range: after mapping it
    must lie in ``[0, 1]``, else the result is ``None`` ("150%", "Confidence: -0.2",
    "Probability: 1.5"). ``None`` means the item is discarded by the verbal methods.
    """
    if not text or not text.strip():
        return None
    t = _SCALES.sub(" ", text)
    for mk in reversed(list(_MARKER.finditer(t))):
        w = _WINDOW.match(t, mk.end())
        e = _EXPR.match(t, w.end())
        if e:
            return _in_unit(_value(e, probability_marker=mk.group(1).lower() == "probability"))
    scaled = [e for e in _EXPR.finditer(t) if _is_scaled(e)]
    if scaled:
        return _in_unit(_value(scaled[-1]))
    e = _EXPR.fullmatch(t.strip().rstrip(".").strip())
    return _in_unit(_value(e)) if e else None

