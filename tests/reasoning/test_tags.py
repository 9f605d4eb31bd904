import pytest
from scripted import spatial

from cooper_lib.reasoning import TurnFormat

FMT = TurnFormat(
    tools={
        "depth": ("<depth-estimation>", "</depth-estimation>"),
        "segmentation": ("<segmentation>", "</segmentation>"),
    }
)


def test_from_config_reads_the_model_tags_with_depth_first():
    fmt = TurnFormat.from_config(spatial("qwen2_vl").config)
    assert fmt.tools == FMT.tools
    assert fmt.priority == ("depth", "segmentation")
    assert fmt.stop_strings(["segmentation"]) == ("</segmentation>", "</answer>")


def test_tool_turn():
    turn = FMT.parse("<think>far?</think><segmentation>Segment</segmentation>")
    assert (turn.kind, turn.tool, turn.request, turn.think) == ("tool", "segmentation", "Segment", "far?")


def test_depth_wins_when_both_tools_are_called():
    text = "<think>x</think><segmentation>a</segmentation><depth-estimation>b</depth-estimation>"
    assert FMT.parse(text).tool == "depth"
    assert TurnFormat(FMT.tools, priority=("segmentation", "depth")).parse(text).tool == "segmentation"


def test_answer_turn_with_nested_boxed():
    turn = FMT.parse("<think>t</think><answer>It is \\boxed{\\frac{1}{2}} m</answer>")
    assert (turn.kind, turn.answer, turn.boxed) == ("answer", "It is \\boxed{\\frac{1}{2}} m", "\\frac{1}{2}")
    assert FMT.parse("<answer>B</answer>").boxed is None


def test_a_call_before_the_answer_wins_and_an_answer_before_a_call_wins():
    call_first = "<depth-estimation>d</depth-estimation><answer>\\boxed{A}</answer>"
    answer_first = "<answer>\\boxed{A}</answer><depth-estimation>d</depth-estimation>"
    assert FMT.parse(call_first).kind == "tool"
    assert FMT.parse(answer_first).kind == "answer"


def test_tools_not_allowed_are_text():
    text = "<think>x</think><depth-estimation>d</depth-estimation>"
    assert FMT.parse(text, tools=()).kind == "none"
    assert FMT.parse(text + "<answer>\\boxed{B}</answer>", tools=()).boxed == "B"


def test_incomplete_tags_are_none():
    for text in ("<think>x</think><depth-estimation>d", "</answer>", "<answer>A", ""):
        assert FMT.parse(text).kind == "none"


def test_format_checks_follow_cooper_regexes():
    assert FMT.is_tool_turn(" <think>a</think>\n<depth-estimation>b</depth-estimation> ")
    assert not FMT.is_tool_turn("<depth-estimation>b</depth-estimation>")  # no reasoning
    assert not FMT.is_tool_turn("<think>a</think><depth-estimation>b</depth-estimation> and more")
    assert FMT.is_answer_turn("<think>a</think><answer>\\boxed{1}</answer>")
    assert not FMT.is_answer_turn("<think>a</think>")


def test_tool_call_text():
    assert FMT.tool_call("depth", "go") == "<depth-estimation>go</depth-estimation>"


def test_bad_formats_are_rejected():
    with pytest.raises(ValueError, match="think"):
        TurnFormat(FMT.tools, think=("<think>", ""))
    with pytest.raises(ValueError, match="priority"):
        TurnFormat(FMT.tools, priority=("depth",))
