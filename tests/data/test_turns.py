import random
import re

import pytest
from cooper_prompts import COOPER_REFLECTION_PROMPT, COOPER_SYSTEM_PROMPT

from cooper_lib.config import ModalitySpec, SpatialConfig
from cooper_lib.data.turns import (
    COOPER_LIB_REFLECTION_PROMPT,
    COOPER_LIB_SYSTEM_PROMPT,
    REFLECTION_PROMPT,
    SYSTEM_PROMPT,
    TurnFormat,
    modality_tags,
    tool_call,
)
from cooper_lib.modalities import NormalsCodec, available_modalities, register_modality

FMT = TurnFormat(
    tools={
        "depth": ("<depth-estimation>", "</depth-estimation>"),
        "segmentation": ("<segmentation>", "</segmentation>"),
    }
)


def test_from_config_reads_the_model_tags_with_depth_first():
    fmt = TurnFormat.from_config(SpatialConfig(modalities=("segmentation", "depth")))
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


def test_a_turn_with_a_call_and_an_answer_reads_as_the_answer_in_either_order():
    # COOPER's inference loop (inferencer.py:707) searches for <answer>(.*?)</answer> first and
    # returns when it finds one, so the tool call in the same turn is never executed
    call_first = "<think>t</think><depth-estimation>d</depth-estimation><answer>\\boxed{A}</answer>"
    answer_first = "<answer>\\boxed{C}</answer><segmentation>s</segmentation>"
    assert (FMT.parse(call_first).kind, FMT.parse(call_first).boxed) == ("answer", "A")
    assert (FMT.parse(answer_first).kind, FMT.parse(answer_first).boxed) == ("answer", "C")
    assert FMT.parse("<think>t</think><depth-estimation>d</depth-estimation><answer>A").kind == "tool"


def test_answer_text_is_the_first_answers_stripped_content_anywhere():
    assert FMT.answer_text("no tags <answer> \\boxed{4} </answer> tail <answer>5</answer>") == "\\boxed{4}"
    assert FMT.answer_text("<think>x</think><answer>open") is None


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


def test_default_format_covers_every_registered_modality_with_its_tags():
    fmt = TurnFormat.default()
    assert set(fmt.tools) == set(available_modalities())
    assert fmt.tools["depth"] == ("<depth-estimation>", "</depth-estimation>")
    assert fmt.tools["normals"] == ("<normal-estimation>", "</normal-estimation>")
    assert fmt.priority[0] == "depth"
    assert fmt.system_prompt == COOPER_SYSTEM_PROMPT and fmt.reflection("depth") == COOPER_REFLECTION_PROMPT
    assert (
        tool_call("depth")
        == "<depth-estimation>Estimate the depth of the image and generate the depth map.</depth-estimation>"
    )
    assert tool_call("segmentation").startswith("<segmentation>Segment")
    with pytest.raises(ValueError, match="registered"):
        modality_tags("no-such-map")


def test_a_user_modality_is_parsed_by_its_registered_tag():
    name = "edges-turn-test"
    register_modality(name, NormalsCodec, overwrite=True)
    fmt = TurnFormat.default()
    assert fmt.tools[name] == (f"<{name}>", f"</{name}>")
    call = f"<think>where are the edges?</think>{fmt.tool_call(name)}"
    assert fmt.called_tool(call) == name and fmt.is_tool_turn(call)
    parsed = fmt.parse(call)
    assert (parsed.kind, parsed.tool, parsed.request) == ("tool", name, modality_tags(name).instruction)
    assert fmt.closing_tool(call + "  ") == name


def test_a_model_config_with_user_tags_gives_its_own_format():
    config = SpatialConfig(
        modalities=("depth", "albedo"), tags={"albedo": ModalitySpec("<alb>", "</alb>", "Albedo please.")}
    )
    fmt = TurnFormat.from_config(config)
    assert fmt.tool_call("albedo") == "<alb>Albedo please.</alb>"
    assert fmt.called_tool("<think>x</think> <alb>y</alb>") == "albedo"


def _regex(fmt, pair):
    (t_open, t_close), (o, c) = fmt.think, pair
    return re.compile(
        f"{re.escape(t_open)}.*?{re.escape(t_close)}\\s*{re.escape(o)}.*?{re.escape(c)}", re.DOTALL
    )


def test_block_check_agrees_with_coopers_regex_on_random_texts():
    rng = random.Random(0)
    pieces = [
        "<think>",
        "</think>",
        "<depth-estimation>",
        "</depth-estimation>",
        "<answer>",
        "</answer>",
        " ",
        "\n",
        "x",
    ]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 9)))
        for pair, check in ((FMT.tools["depth"], FMT.is_tool_turn), (FMT.answer, FMT.is_answer_turn)):
            assert check(text) == (_regex(FMT, pair).fullmatch(text.strip()) is not None), text


def test_default_prompts_are_coopers_byte_for_byte():
    # expected strings written from COOPER.md (upstream inferencer.py:21-62), not from the library
    assert SYSTEM_PROMPT == COOPER_SYSTEM_PROMPT and REFLECTION_PROMPT == COOPER_REFLECTION_PROMPT
    assert SYSTEM_PROMPT.splitlines()[14].endswith("</segmentation>. ")  # instruction 3's space
    assert SYSTEM_PROMPT.count("\\boxed{{}}") == 1 and SYSTEM_PROMPT.endswith("</answer>\n")
    assert REFLECTION_PROMPT.startswith("\nHere is") and REFLECTION_PROMPT.endswith("</answer>.\n")
    for fmt in (TurnFormat.default(), TurnFormat.from_config(SpatialConfig(modalities=("depth",))), FMT):
        assert (fmt.system_prompt, fmt.reflection("segmentation")) == (
            COOPER_SYSTEM_PROMPT,
            COOPER_REFLECTION_PROMPT,
        )


def test_cooper_lib_wording_is_a_named_prompt_set():
    fmt = TurnFormat.default().with_prompts("cooper-lib")
    assert fmt.system_prompt == COOPER_LIB_SYSTEM_PROMPT
    assert fmt.reflection("depth") == COOPER_LIB_REFLECTION_PROMPT.replace("{name}", "depth")
    assert "Here is the generated depth map." in fmt.reflection("depth")
    assert fmt.with_prompts("cooper").system_prompt == COOPER_SYSTEM_PROMPT
    with pytest.raises(ValueError, match="prompts: expected one of"):
        fmt.with_prompts("bagel")
