"""Property-based tests of answer extraction (`cooper_lib.data.extraction`, `cooper_lib.data.answers`):
the one-pass scanners agree with the regular-expression definitions they replaced, and written
answers read back."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from cooper_lib.data import extraction
from cooper_lib.data.answers import AnswerKey, grade
from cooper_lib.data.extraction import (
    boxed_contents,
    extract_choice,
    extract_number,
    extract_yes_no,
    last_boxed,
    strip_latex,
)

PROPERTY = settings(max_examples=100, deadline=None)


def soup(*tokens: str) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(tokens), max_size=16).map("".join)


def boxed_by_counting(text: str) -> list[str]:
    """The earlier definition: from each ``\\boxed{``, count braces to the matching one."""
    out = []
    for match in re.finditer(r"\\boxed\s*\{", text):
        depth = 1
        for i in range(match.end(), len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                out.append(text[match.end() : i])
                break
    return out


def strip_by_substitution(text: str) -> str:
    """The earlier definition: substitute innermost wrappers until nothing changes."""
    wrapper = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
    previous = None
    while previous != text:
        previous, text = text, wrapper.sub(r"\1", text)
    return text.replace("$", "").replace("\\,", " ").replace("\\ ", " ")


@PROPERTY
@given(soup("\\boxed{", "\\boxed {", "{", "}", "a", " "))
def test_boxed_contents_match_brace_counting(text):
    assert boxed_contents(text) == boxed_by_counting(text)
    assert last_boxed(text) == (boxed_by_counting(text) or [None])[-1]


@PROPERTY
@given(soup("\\text{", "\\textbf {", "\\mathrm{", "{", "}", "a", "$", " "))
def test_strip_latex_matches_repeated_substitution(text):
    assert strip_latex(text) == strip_by_substitution(text)


@PROPERTY
@given(soup("<answer>", "</answer>", "<ANSWER>", "</Answer>", "a", "<", "/", "\n"))
def test_last_answer_tag_matches_the_lazy_regex(text):
    found = re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL | re.IGNORECASE)
    assert extraction._last_answer_tag(text) == (found[-1] if found else None)


@PROPERTY
@given(
    soup(
        "answer",
        "Answer",
        "option",
        " is",
        " ",
        "\t",
        ":",
        "\uff1a",
        "A",
        "b",
        "(b)",
        "(C)",
        "yes",
        "no",
        ".",
    )
)
def test_possessive_statement_patterns_match_the_backtracking_ones(text):
    old_letter = r"(?i:answer|option|choice)(?:\s+is)?\s*[:\uff1a]?\s*(?:\(([A-Za-z])\)|\b([A-Z])\b)"
    new_letter = r"(?i:answer|option|choice)(?:\s++is)?+\s*+[:\uff1a]?+\s*+(?:\(([A-Za-z])\)|\b([A-Z])\b)"
    assert re.findall(old_letter, text) == re.findall(new_letter, text)
    old_yes = r"answer(?:\s+is)?\s*[:\uff1a]?\s*\b(yes|no)\b"
    new_yes = r"answer(?:\s++is)?+\s*+[:\uff1a]?+\s*+\b(yes|no)\b"
    assert re.findall(old_yes, text.lower()) == re.findall(new_yes, text.lower())


words = st.text(st.characters(whitelist_categories=("Ll", "Zs")), max_size=20)


@PROPERTY
@given(letters=st.sampled_from(["AB", "ABC", "ABCD", "ABCDE"]), data=st.data(), before=words)
def test_a_boxed_letter_is_the_choice(letters, data, before):
    letter = data.draw(st.sampled_from(letters))
    text = f"<think>{before}</think><answer>{before} \\boxed{{{letter}}}</answer>"
    assert extract_choice(text, letters) == letter
    assert grade(text, AnswerKey(letter, "choice", tuple(letters.lower()))).correct


@PROPERTY
@given(
    value=st.integers(-(10**6), 10**6) | st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 3)),
    before=words,
)
def test_the_last_number_is_read_back(value, before):
    assert extract_number(f"{before} 7 then \\boxed{{{value}}}") == float(value)
    assert extract_number(f"{before} it is {value}") == float(value)


@PROPERTY
@given(answer=st.sampled_from(["yes", "no", "Yes", "NO"]), before=words)
def test_yes_no_in_a_box_is_read_back(answer, before):
    assert extract_yes_no(f"{before} \\boxed{{{answer}}}") == answer.lower()


@PROPERTY
@given(st.text(max_size=80))
def test_extractors_return_none_or_a_valid_value_on_any_text(text):
    assert extract_choice(text, "ABCD") in (None, "A", "B", "C", "D")
    assert extract_yes_no(text) in (None, "yes", "no")
    number = extract_number(text)
    assert number is None or isinstance(number, float)
