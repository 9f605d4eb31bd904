"""Property-based tests of the turn format's reading half (`cooper_lib.data.turns`)."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from cooper_lib.data.turns import TurnFormat

FMT = TurnFormat(
    tools={
        "depth": ("<depth-estimation>", "</depth-estimation>"),
        "segmentation": ("<segmentation>", "</segmentation>"),
    }
)
PROPERTY = settings(max_examples=100, deadline=None)
plain = st.text(st.characters(blacklist_characters="<>", blacklist_categories=("Cs",)), max_size=30)
TOKENS = [
    "<think>", "</think>", "<depth-estimation>", "</depth-estimation>", "<segmentation>",
    "</segmentation>", "<answer>", "</answer>", " ", "\n", "a", "\\boxed{", "}",
]  # fmt: skip
tag_soup = st.lists(st.sampled_from(TOKENS), max_size=14).map("".join)


def coopers_regex(text: str, open_tag: str, close_tag: str) -> bool:
    """COOPER's turn check, the specification `TurnFormat` implements without backtracking."""
    pattern = rf"<think>.*?</think>\s*{re.escape(open_tag)}.*?{re.escape(close_tag)}"
    return re.fullmatch(pattern, text.strip(), re.DOTALL) is not None


@PROPERTY
@given(think=plain, request=plain, tool=st.sampled_from(["depth", "segmentation"]))
def test_a_written_tool_call_reads_back(think, request, tool):
    turn = FMT.parse(FMT.think_block(think) + FMT.tool_call(tool, request))
    assert (turn.kind, turn.tool, turn.request, turn.think) == ("tool", tool, request, think)
    assert FMT.called_tool(FMT.think_block(think) + " " + FMT.tool_call(tool, request)) == tool


@PROPERTY
@given(think=plain, before=plain, boxed=st.text(st.characters(blacklist_characters="<>{}"), max_size=20))
def test_a_written_answer_reads_back(think, before, boxed):
    text = FMT.think_block(think) + FMT.answer_block(f"{before}\\boxed{{{boxed}}}")
    turn = FMT.parse(text)
    assert (turn.kind, turn.think, turn.boxed) == ("answer", think, boxed)
    assert FMT.is_answer_turn(text) and not FMT.is_tool_turn(text)


@PROPERTY
@given(tag_soup)
def test_turn_checks_agree_with_coopers_regex(text):
    assert FMT.is_answer_turn(text) == coopers_regex(text, "<answer>", "</answer>")
    expected = next((name for name in FMT.priority if coopers_regex(text, *FMT.tools[name])), None)
    assert FMT.called_tool(text) == expected


@PROPERTY
@given(st.one_of(tag_soup, st.text(max_size=60)))
def test_parse_reads_any_text(text):
    turn = FMT.parse(text)
    assert turn.kind in ("tool", "answer", "none")
    if turn.kind == "tool":
        assert turn.tool in FMT.tools and FMT.tools[turn.tool][1] in text
    if turn.kind == "answer":
        assert turn.answer is not None and f"<answer>{turn.answer}</answer>" in text
