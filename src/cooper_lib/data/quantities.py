"""Q-SpatialBench scoring: (value, unit) extraction from free text, conversion to cm, success ratio.

A prediction succeeds when ``max(pred / gt, gt / pred) < 2`` with both converted to centimetres
(m 100, cm 1, mm 0.1, ft 30.48, in 2.54) and, as in the benchmark's VLMEvalKit evaluator
(``QSpatial.evaluate``), ``1e-8`` added to each before dividing: a prediction exactly twice or
half the truth therefore succeeds (``(200 + 1e-8) / (100 + 1e-8) < 2``). The stricter ``< 1.5``
rate is reported beside it.

Extraction (`extract_quantity`), first rule that yields a quantity wins:

1. Q-SpatialBench's own answer format ``\\scalar{...} \\distance_unit{...}`` (last of each); the
   value is the mean of the numbers inside the scalar box, so ``\\scalar{1-2}`` reads 1.5, as in
   the benchmark's reference evaluator.
2. The last ``\\boxed{...}``, then the last ``<answer>...</answer>``, then the whole text, each
   read for the *last* "number unit" mention, where ranges ``a-b``, ``a to b``, ``between a
   and b``, ``from a to b`` and ``a m - b m`` count as their midpoint, and ``5 ft 10 in`` /
   ``5'10"`` as one length.

Unit words: m / meter(s) / metre(s), cm / centimeter(s) / centimetre(s), mm / millimeter(s) /
millimetre(s), ft / foot / feet, in / inch / inches (``in`` only when no word follows it, so
"2 in the corner" is not a length). Written by hand with ``re`` because these rules are the
specification.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass

from cooper_lib.data.extraction import answer_spans, strip_latex

CM_PER_UNIT: dict[str, float] = {"m": 100.0, "cm": 1.0, "mm": 0.1, "ft": 30.48, "in": 2.54}
"""Centimetres per canonical unit."""

QSPATIAL_THRESHOLDS: tuple[float, float] = (2.0, 1.5)
"""Success ratios reported for Q-SpatialBench: the benchmark's delta 2, and the stricter 1.5."""

QSPATIAL_EPSILON = 1e-8
"""Centimetres the benchmark's evaluator adds to prediction and truth before taking the ratio."""

_UNIT_ALIASES: dict[str, str] = {
    **dict.fromkeys(("m", "meter", "meters", "metre", "metres"), "m"),
    **dict.fromkeys(("cm", "centimeter", "centimeters", "centimetre", "centimetres"), "cm"),
    **dict.fromkeys(("mm", "millimeter", "millimeters", "millimetre", "millimetres"), "mm"),
    **dict.fromkeys(("ft", "foot", "feet"), "ft"),
    **dict.fromkeys(("in", "inch", "inches"), "in"),
}

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
_UNIT = (
    r"centimet(?:er|re)s?|cm|millimet(?:er|re)s?|mm|met(?:er|re)s?|feet|foot|ft|inch(?:es)?"
    r"|m(?![a-z])|in(?!\s*[a-z])"
)
_UNIT_END = r"(?![a-z])"
_DASH = r"(?:-|\u2013|\u2014|to)"
_MENTION = re.compile(
    rf"(?<![\w.])(?P<a>{_NUM})(?:\s*{_DASH}\s*(?P<b>{_NUM}))?\s*(?P<unit>{_UNIT}){_UNIT_END}",
    re.IGNORECASE,
)
_BETWEEN = re.compile(
    rf"\b(?:between|from)\s+({_NUM})\s*(?:(?:{_UNIT}){_UNIT_END})?\s*(?:and|to)\s+({_NUM})", re.IGNORECASE
)
_UNIT_BOTH_SIDES = re.compile(
    rf"(?<![\w.])({_NUM})\s*({_UNIT}){_UNIT_END}\s*{_DASH}\s*({_NUM})\s*\2{_UNIT_END}", re.IGNORECASE
)
_FEET_INCHES_PRIME = re.compile(r"(\d+)\s*['\u2032]\s*(\d+(?:\.\d+)?)\s*(?:\"|\u2033|'')")
_UNIT_HINT = re.compile(rf"(?:{_UNIT}){_UNIT_END}|['\u2032]", re.IGNORECASE)
_SCALAR = re.compile(r"\\scalar\s*\{([^{}]*)\}")
_DISTANCE_UNIT = re.compile(r"\\distance_unit\s*\{([^{}]*)\}")


def normalize_unit(unit: str) -> str:
    """Canonical unit (``m, cm, mm, ft, in``) for a unit word; ``ValueError`` for anything else."""
    key = unit.strip().strip(".").lower()
    if key not in _UNIT_ALIASES:
        raise ValueError(f"unit must be one of {sorted(_UNIT_ALIASES)}, got {unit!r}")
    return _UNIT_ALIASES[key]


def to_cm(value: float, unit: str) -> float:
    """``value`` in ``unit`` converted to centimetres."""
    return float(value) * CM_PER_UNIT[normalize_unit(unit)]


@dataclass(frozen=True)
class Quantity:
    """A length read from text: ``value`` in canonical ``unit``."""

    value: float
    unit: str

    @property
    def cm(self) -> float:
        """The length in centimetres."""
        return to_cm(self.value, self.unit)


def _to_float(token: str) -> float:
    return float(token.replace(",", ""))


def _official_format(text: str) -> Quantity | None:
    scalars, units = _SCALAR.findall(text), _DISTANCE_UNIT.findall(text)
    if not scalars or not units:
        return None
    numbers = re.findall(_NUM, scalars[-1])
    try:
        unit = normalize_unit(units[-1])
    except ValueError:
        return None
    if not numbers:
        return None
    return Quantity(sum(_to_float(n) for n in numbers) / len(numbers), unit)


def _last_mention(span: str) -> Quantity | None:
    if not _UNIT_HINT.search(span):
        return None  # no unit word and no prime mark: nothing to read (fast on number-dense text)
    return _read_last(_rewrite_forms(span))


def _rewrite_forms(span: str) -> str:
    """``5'10"``, ``between a and b`` and ``a m - b m`` rewritten to the forms `_MENTION` reads."""
    if "'" in span or "\u2032" in span:
        span = _FEET_INCHES_PRIME.sub(r"\1 ft \2 in", span)
    # each rewrite below needs a word or dash that a plain substring test rules out far faster
    # than the regex's scan of a long text
    lowered = span.lower()
    if "between" in lowered or "from" in lowered:
        span = _BETWEEN.sub(r"\1 to \2", span)
        lowered = span.lower()
    if any(dash in lowered for dash in ("-", "\u2013", "\u2014", "to")):
        span = _UNIT_BOTH_SIDES.sub(r"\1 to \3 \2", span)
    return span


def _read_last(span: str) -> Quantity | None:
    # the last two mentions only (a number-dense text would otherwise hold every match at once)
    mentions = deque(_MENTION.finditer(span), maxlen=2)
    if not mentions:
        return None
    last = mentions[-1]
    unit = normalize_unit(last.group("unit"))
    value = _to_float(last.group("a"))
    if last.group("b") is not None:
        value = (value + _to_float(last.group("b"))) / 2
    if unit == "in" and len(mentions) > 1:
        feet = mentions[-2]
        gap = span[feet.end() : last.start()]
        if (
            normalize_unit(feet.group("unit")) == "ft"
            and feet.group("b") is None
            and re.fullmatch(r"\s*(?:,|and)?\s*", gap)
        ):
            value += 12 * _to_float(feet.group("a"))
    return Quantity(value, unit)


def extract_quantity(text: str) -> Quantity | None:
    """The length a free-text answer states, or ``None`` when it states none (see module rules)."""
    official = _official_format(strip_latex(text))
    if official is not None:
        return official
    for span in answer_spans(text):
        found = _last_mention(span)
        if found is not None:
            return found
    return None


def qspatial_ratio(pred_cm: float, gt_cm: float) -> float:
    """``max(p / g, g / p)`` with ``p = pred_cm + 1e-8``, ``g = gt_cm + 1e-8`` (the benchmark's
    evaluator); ``inf`` when the prediction is negative or not finite."""
    if not gt_cm > 0 or not math.isfinite(gt_cm):
        raise ValueError(f"gt_cm must be a positive finite length, got {gt_cm!r}")
    if not pred_cm >= 0 or not math.isfinite(pred_cm):
        return math.inf
    pred, gt = pred_cm + QSPATIAL_EPSILON, gt_cm + QSPATIAL_EPSILON
    return max(pred / gt, gt / pred)


def qspatial_success(pred_cm: float, gt_cm: float, threshold: float = 2.0) -> bool:
    """Q-SpatialBench success: ``qspatial_ratio(pred_cm, gt_cm) < threshold`` (2 by default)."""
    if not threshold > 1:
        raise ValueError(f"threshold must be > 1, got {threshold!r}")
    return qspatial_ratio(pred_cm, gt_cm) < threshold
