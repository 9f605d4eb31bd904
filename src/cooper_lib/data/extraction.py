"""Rule-based answer extraction from free text (the reading half of `cooper_lib.data.answers`).

Every extractor returns ``None`` when it cannot decide; callers count those as failures (a
failure bucket) instead of guessing. Where the text says where its answer is, that place wins:
the last ``\\boxed{...}`` first, then the last ``<answer>...</answer>``, then the whole text.

Rules (first that matches, tried on each of those spans in turn):

* **Letter** (`extract_choice`): the span is only a letter (``B``, ``(B)``, ``B.``, ``[b]``);
  it starts with a marked letter (``B. text``, ``B: text``, ``B) text``, ``(b) text``) and names
  no other option in parentheses; the last "answer / option / choice (is) (:) X" statement
  (``X`` upper-case, or any case in parentheses); the span is exactly one choice's text;
  exactly one distinct parenthesised letter appears. Only letters in the allowed set count.
* **Yes / no** (`extract_yes_no`): the first word is yes or no; the last "answer (is) (:)
  yes|no" statement; exactly one of the two words occurs.
* **Number** (`extract_number`): the last number in the span (digits with optional sign,
  thousands commas and decimals, or a number word from zero to twenty).

Written by hand with ``re``: the rules are the specification, and no maintained library
implements this set.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Literal

_YES_NO: dict[str, Literal["yes", "no"]] = {"yes": "yes", "no": "no"}
_WRAPPER = r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*+\{"
_WRAPPER_START = re.compile(_WRAPPER)
_WRAPPER_TOKENS = re.compile(rf"{_WRAPPER}|[{{}}]")
_BRACES = re.compile(r"\\boxed\s*+\{|[{}]")
_ANSWER_TAGS = re.compile(r"<(/?)answer>", re.IGNORECASE)

_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
}  # fmt: skip
_DIGITS = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_NUMBER = re.compile(
    rf"(?<![\w.])(?P<sign>[-+\u2212]?)(?P<num>{_DIGITS})(?![\d])|\b(?P<word>{'|'.join(_NUMBER_WORDS)})\b",
    re.IGNORECASE,
)


def _boxes(text: str) -> list[tuple[int, int]]:
    """(start, end) of the content of every closed ``\\boxed{...}``, in the order the boxes close;
    one pass with a stack of open braces (a box's content ends at its matching brace)."""
    found: list[tuple[int, int]] = []
    stack: list[tuple[int, bool]] = []  # (content start, whether the brace opens a box)
    first = text.find("\\boxed")  # braces before the first box cannot close one
    for token in _BRACES.finditer(text, first) if first >= 0 else ():
        if token.group() != "}":
            stack.append((token.end(), token.group() != "{"))
        elif stack:
            start, boxed = stack.pop()
            if boxed:
                found.append((start, token.start()))
    return found


def boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` in ``text``, braces matched (nested braces allowed), in
    the order the boxes open; an unclosed box is skipped."""
    return [text[start:end] for start, end in sorted(_boxes(text))]


def last_boxed(text: str) -> str | None:
    """The content of the last box to open in ``text`` (``boxed_contents(text)[-1]``), or None."""
    found = _boxes(text)
    if not found:
        return None
    start, end = max(found)
    return text[start:end]


@functools.lru_cache(maxsize=8)  # grading strips the whole text twice (official format, last span)
def strip_latex(text: str) -> str:
    """Unwrap ``\\text{..}``-style commands and drop ``$`` so ``\\boxed{\\text{B}}`` reads ``B``.

    A wrapper is unwrapped when every group inside it is an unwrapped wrapper (``\\text{\\textbf{B}}``
    reads ``B``; ``\\text{a{b}}`` stays): one pass matches the braces with a stack and marks the
    opening and closing of each unwrapped wrapper, then the text is joined without them.
    """
    first = _WRAPPER_START.search(text)  # groups before the first wrapper stay as they are
    if first is None:
        return _drop_dollars(text)
    cut: list[tuple[int, int]] = []  # spans to drop: unwrapped openings and their closing braces
    stack: list[tuple[int, int, bool]] = []  # (opening start, opening end, is a wrapper)
    clean: list[bool] = []  # per open group: every group closed inside it was unwrapped
    for token in _WRAPPER_TOKENS.finditer(text, first.start()):
        if token.group() != "}":
            stack.append((token.start(), token.end(), token.group() != "{"))
            clean.append(True)
        elif stack:
            start, end, wrapper = stack.pop()
            if clean.pop() and wrapper:
                cut += [(start, end), (token.start(), token.end())]
            elif clean:
                clean[-1] = False
    cut.sort()
    pieces, at = [], 0
    for start, end in cut:
        pieces.append(text[at:start])
        at = end
    pieces.append(text[at:])
    return _drop_dollars("".join(pieces))


def _drop_dollars(text: str) -> str:
    return text.replace("$", "").replace("\\,", " ").replace("\\ ", " ")


def answer_spans(text: str) -> Iterator[str]:
    """The places an answer may be, most explicit first: last boxed, last ``<answer>``, whole text."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    boxed = last_boxed(text)
    if boxed is not None:
        yield strip_latex(boxed)
    tagged = _last_answer_tag(text)
    if tagged is not None:
        yield strip_latex(tagged)
    yield strip_latex(text)


def _last_answer_tag(text: str) -> str | None:
    """The text of the last ``<answer>...</answer>`` (tags in any case; an opening tag pairs with
    the first closing tag after it, as a lazy ``<answer>(.*?)</answer>`` would), in one pass."""
    last, start = None, None
    for tag in _ANSWER_TAGS.finditer(text):
        if not tag.group(1):
            if start is None:
                start = tag.end()
        elif start is not None:
            last, start = text[start : tag.start()], None
    return last


def _clean(span: str) -> str:
    return span.strip().strip("*_`\"' \n\t")


def _normalise_choice_text(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip(".!?:;,*_`\"'").strip()).lower()


def _letter_in(span: str, letters: str, choices: Sequence[str]) -> str | None:
    span = _clean(span)
    whole = re.fullmatch(r"[(\[]?([A-Za-z])[)\]]?\s*[.:]?", span)
    if whole and whole.group(1).upper() in letters:
        return whole.group(1).upper()
    in_parens = {m.upper() for m in re.findall(r"\(([A-Za-z])\)", span)} & set(letters)
    lead = re.match(r"(?:\(([A-Za-z])\)|([A-Z])[.:)])\s*\S", span)
    if lead:
        letter = (lead.group(1) or lead.group(2)).upper()
        if letter in letters and in_parens <= {letter}:
            return letter
    stated = re.findall(
        r"(?i:answer|option|choice)(?:\s++is)?+\s*+[:\uff1a]?+\s*+(?:\(([A-Za-z])\)|\b([A-Z])\b)", span
    )
    for lower_or_paren, upper in reversed(stated):
        letter = (lower_or_paren or upper).upper()
        if letter in letters:
            return letter
    if choices:
        target = _normalise_choice_text(span)
        hits = [i for i, choice in enumerate(choices) if _normalise_choice_text(choice) == target]
        if len(hits) == 1 and hits[0] < len(letters):
            return letters[hits[0]]
    if len(in_parens) == 1:
        return in_parens.pop()
    return None


def extract_choice(text: str, letters: str = "ABCD", choices: Sequence[str] = ()) -> str | None:
    """The option letter a free-text answer picks, or ``None`` when it cannot be told.

    Args:
        text: the model's answer.
        letters: the allowed option letters, upper-case, in order (``"AB"`` for two options).
        choices: the option texts in the same order, so an answer that repeats one option's text
            exactly (case and end punctuation aside) picks that option.
    """
    if not letters or not re.fullmatch(r"[A-Z]+", letters) or len(set(letters)) != len(letters):
        raise ValueError(f"letters must be distinct upper-case letters, got {letters!r}")
    for span in answer_spans(text):
        letter = _letter_in(span, letters, choices)
        if letter is not None:
            return letter
    return None


def extract_yes_no(text: str) -> Literal["yes", "no"] | None:
    """``"yes"`` or ``"no"`` from a free-text answer, or ``None`` when it cannot be told."""
    for span in answer_spans(text):
        words = re.findall(r"[a-z]+", span.lower())
        if words and words[0] in ("yes", "no"):
            return _YES_NO[words[0]]
        stated = re.findall(r"answer(?:\s++is)?+\s*+[:\uff1a]?+\s*+\b(yes|no)\b", span.lower())
        if stated:
            return _YES_NO[stated[-1]]
        found = {w for w in words if w in ("yes", "no")}
        if len(found) == 1:
            return _YES_NO[found.pop()]
    return None


def parse_number(token: str) -> float:
    """A number token as `extract_number` finds it (``"1,234.5"``, ``"-3"``, ``"seven"``)."""
    match = _NUMBER.fullmatch(token.strip())
    if match is None:
        raise ValueError(f"token must be a number or a number word, got {token!r}")
    return _match_value(match)


def _match_value(match: re.Match[str]) -> float:
    if match.group("word"):
        return float(_NUMBER_WORDS[match.group("word").lower()])
    value = float(match.group("num").replace(",", ""))
    return -value if match.group("sign") in ("-", "\u2212") else value


def extract_number(text: str) -> float | None:
    """The last number in the most explicit answer span, or ``None`` when there is none."""
    for span in answer_spans(text):
        last = deque(_NUMBER.finditer(span), maxlen=1)  # the last match only, not a list of all
        if last:
            return _match_value(last[0])
    return None
