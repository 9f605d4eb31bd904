import re

import pytest
import torch
from cooper_prompts import COOPER_REFLECTION_PROMPT, COOPER_SYSTEM_PROMPT

from cooper_lib.data.synthetic import (
    SceneConfig,
    SceneFiles,
    make_qa,
    make_traces,
    pseudo_images,
    render_scenes,
)
from cooper_lib.data.synthetic.qa import visible_depth
from cooper_lib.data.turns import tool_call

SCENES = render_scenes(8, seed=4, config=SceneConfig(width=48, height=48, min_objects=3))
TOOL = re.compile(r"^<think>[^<]+</think><(depth-estimation|segmentation)>[^<]+</\1>$")
ANSWER = re.compile(r"^<think>[^<]+</think><answer>[^<]*\\boxed\{([^}]+)\}</answer>$")


def traces(tool_ratio, **kwargs):
    for scene in SCENES:
        questions = make_qa(scene, scene.seed)
        yield scene, questions, make_traces(scene, questions, scene.seed, tool_ratio=tool_ratio, **kwargs)


def test_trace_shapes_follow_the_turn_format():
    tool_counts = {True: 0, False: 0}
    for scene, questions, records in traces(0.5):
        assert len(records) == len(questions)
        for q, record in zip(questions, records, strict=True):
            items = record.items
            assert [i.type for i in items[:3]] == ["text", "image", "text"]
            assert items[0].value == COOPER_SYSTEM_PROMPT and items[2].value == q.prompt
            assert torch.equal(items[1].value, scene.rgb)
            assert all(i.need_loss == (i.role == "assistant") for i in items)
            final = ANSWER.match(items[-1].value)
            assert final and final.group(1) == q.boxed
            used = record.meta["tool"]
            tool_counts[used is not None] += 1
            if used is None:
                assert len(items) == 4
                continue
            assert used == q.modality
            call, shown, reflection = items[3], items[4], items[5]
            assert TOOL.match(call.value) and call.value.endswith(tool_call(used))
            assert shown.type == "image" and shown.modality == used and shown.role == "tool"
            assert torch.equal(shown.value, pseudo_images(scene)[used])
            assert torch.equal(shown.target, scene.depth if used == "depth" else scene.semantic)
            assert reflection.value == COOPER_REFLECTION_PROMPT
            assert len(items) == 7
    assert tool_counts[True] > 5 and tool_counts[False] > 5


@pytest.mark.parametrize("ratio", [0.0, 1.0])
def test_tool_ratio_extremes(ratio):
    for _, questions, records in traces(ratio):
        for q, record in zip(questions, records, strict=True):
            expected = q.modality if ratio == 1.0 else None
            assert record.meta["tool"] == expected


def test_reasoning_states_true_facts():
    for scene, questions, records in traces(1.0):
        for q, record in zip(questions, records, strict=True):
            text = record.items[-1].value
            for i in q.objects:
                obj = scene.objects[i - 1]
                assert obj.colour in text and obj.shape in text
                if q.category not in ("shape", "colour"):  # those name the object by one attribute
                    assert obj.name in text
                if record.meta["tool"] == "depth":
                    assert f"{visible_depth(scene, obj):.1f} m" in text


def test_file_backed_traces_hold_paths():
    scene = SCENES[0]
    files = SceneFiles(
        "images/a.png", "depth/a.png", "semantic/a.png", "maps/a_depth.png", "maps/a_segmentation.png"
    )
    records = make_traces(scene, make_qa(scene, 0), 0, tool_ratio=1.0, files=files)
    for record in records:
        record.to_dict()  # JSON-ready
        for item in record.items:
            if item.type == "image":
                assert isinstance(item.value, str)
                if item.modality == "depth":
                    assert (item.value, item.target) == (files.depth_image, files.depth)


def test_deterministic_and_validated():
    scene = SCENES[1]
    questions = make_qa(scene, 2)
    a = make_traces(scene, questions, 3, id_prefix="s1-")
    b = make_traces(scene, questions, 3, id_prefix="s1-")
    assert [r.text() for r in a] == [r.text() for r in b] and a[0].id == "s1-0"
    with pytest.raises(ValueError, match="tool_ratio"):
        make_traces(scene, questions, tool_ratio=1.5)


def test_pseudo_images_are_codec_images():
    drawn = pseudo_images(SCENES[0])
    for image in drawn.values():
        assert image.shape == (3, 48, 48) and 0 <= image.min() and image.max() <= 1


def test_short_style_answers_with_the_boxed_answer_alone():
    for scene in SCENES:
        questions = make_qa(scene, scene.seed, answer_style="short")
        for ratio in (0.0, 1.0):
            for q, record in zip(
                questions,
                make_traces(scene, questions, scene.seed, tool_ratio=ratio, answer_style="short"),
                strict=True,
            ):
                turns = [item.value for item in record.items if item.role == "assistant"]
                assert turns[-1] == f"<answer>\\boxed{{{q.boxed}}}</answer>"
                if len(turns) == 2:  # the tool call keeps its reason
                    assert TOOL.match(turns[0])
    with pytest.raises(ValueError, match="answer_style"):
        make_traces(SCENES[0], [], answer_style="terse")


def test_short_text_style_boxes_the_chosen_option_text():
    seen = 0
    for scene in SCENES:
        questions = make_qa(scene, scene.seed, answer_style="short_text")
        for q, record in zip(
            questions, make_traces(scene, questions, answer_style="short_text"), strict=True
        ):
            turn = [item.value for item in record.items if item.role == "assistant"][-1]
            if q.answer_type == "choice":
                seen += 1
                assert turn == f"<answer>\\boxed{{{q.choices['ABCDEFGH'.index(q.answer)]}}}</answer>"
    assert seen > 5
