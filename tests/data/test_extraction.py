import pytest

from cooper_lib.data.answers import MRA_THRESHOLDS, mean_relative_accuracy
from cooper_lib.data.extraction import (
    answer_spans,
    boxed_contents,
    extract_choice,
    extract_number,
    extract_yes_no,
    parse_number,
)


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("b", "B"),
        ("[C]", "C"),
        ("**D**", "D"),
        ("B. Closed", "B"),
        ("C: the red chair", "C"),
        ("(b) the left one", "B"),
        ("Answer: B", "B"),
        ("The answer is (c).", "C"),
        ("The correct option is D because it is nearer.", "D"),
        ("Option A looks tempting, but the answer is C.", "C"),
        (r"<think>A or B?</think><answer>\boxed{B}</answer>", "B"),
        (r"\boxed{\text{(A)}}", "A"),
        ("<answer>I pick (D)</answer>", "D"),
        ("Looking closer, (C) is right.", "C"),
    ],
)
def test_extract_choice_reads_marked_letters(text, letter):
    assert extract_choice(text, "ABCD") == letter


@pytest.mark.parametrize(
    "text",
    [
        "A chair is closer to the camera.",  # an article, not an option
        "(A) or (B), hard to say",  # two options named
        "I cannot tell from the image.",
        "E",  # not an allowed letter
        "The answer is e",  # lower-case outside parentheses is not trusted
        "",
    ],
)
def test_extract_choice_fails_instead_of_guessing(text):
    assert extract_choice(text, "ABCD") is None


def test_boxed_answer_wins_over_reasoning_and_choice_text_is_matched():
    assert extract_choice(r"Option A seems right, the answer is A... no: \boxed{C}", "ABCD") == "C"
    assert extract_choice("Closed.", "AB", ("Open", "Closed")) == "B"
    assert extract_choice("closed", "AB", ("Open", "Closed")) == "B"
    assert extract_choice("It looks closed", "AB", ("Open", "Closed")) is None
    with pytest.raises(ValueError, match="letters"):
        extract_choice("A", "AA")
    with pytest.raises(TypeError, match="str"):
        extract_choice(None, "AB")


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("Yes", "yes"),
        ("no.", "no"),
        ("Yes, the cup is on the table.", "yes"),
        ("The cup is not on the table, so the answer is no.", "no"),
        (r"\boxed{No}", "no"),
        ("<answer>yes</answer>", "yes"),
        ("Looking at it... the answer: Yes", "yes"),
        ("Maybe", None),
        ("I would say yes at first, but no.", None),
    ],
)
def test_extract_yes_no(text, word):
    assert extract_yes_no(text) == word


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3.0),
        ("There are three chairs.", 3.0),
        ("About 1,234.5 cm", 1234.5),
        ("-2", -2.0),
        ("First 2, then finally 7.5", 7.5),
        (r"I count 4 \boxed{5}", 5.0),
        ("<answer>12</answer> (not 13)", 12.0),
        ("none", None),
    ],
)
def test_extract_number_takes_the_last_number_of_the_most_explicit_span(text, value):
    assert extract_number(text) == value


def test_parse_number_and_spans():
    assert parse_number("1,000") == 1000.0
    assert parse_number("Twelve") == 12.0
    with pytest.raises(ValueError, match="number"):
        parse_number("abc")
    assert boxed_contents(r"\boxed{a{b}c} and \boxed{d}") == ["a{b}c", "d"]
    assert list(answer_spans(r"x <answer>\boxed{1}</answer>")) == [
        "1",
        r"\boxed{1}",
        r"x <answer>\boxed{1}</answer>",
    ]


def test_mra_thresholds_are_050_to_095():
    assert MRA_THRESHOLDS == pytest.approx([0.5 + 0.05 * k for k in range(10)])


@pytest.mark.parametrize(
    ("pred", "gt", "mra"),
    [
        (10.0, 10.0, 1.0),
        (10.4, 10.0, 1.0),  # 4 % error is below every tolerance 1 - theta = 0.50 ... 0.05
        (11.0, 10.0, 0.8),  # 10 %: below 0.50 ... 0.15 (8 of 10); 0.10 and 0.05 are not exceeded
        (12.0, 10.0, 0.6),  # 20 %: below 0.50, 0.45, 0.40, 0.35, 0.30, 0.25
        (8.0, 10.0, 0.6),
        (14.0, 10.0, 0.2),  # 40 %: below 0.50, 0.45
        (15.0, 10.0, 0.0),  # 50 % is not < 0.50
        (-2.2, -2.0, 0.8),  # relative to |gt|
    ],
)
def test_mean_relative_accuracy_hand_cases(pred, gt, mra):
    assert mean_relative_accuracy(pred, gt) == pytest.approx(mra)


def test_mean_relative_accuracy_rejects_undefined_cases():
    with pytest.raises(ValueError, match="gt must be non-zero"):
        mean_relative_accuracy(1.0, 0.0)
    with pytest.raises(ValueError, match="pred must be a finite"):
        mean_relative_accuracy(float("nan"), 1.0)
    with pytest.raises(ValueError, match="thresholds"):
        mean_relative_accuracy(1.0, 1.0, thresholds=(1.0,))
