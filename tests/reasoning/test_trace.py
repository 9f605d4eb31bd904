import json

import pytest
import torch
from PIL import Image

from cooper_lib.reasoning import ReasoningStep, ReasoningTrace


@pytest.fixture
def trace():
    picture = Image.new("RGB", (20, 10), (200, 30, 30))
    steps = [
        ReasoningStep(
            "text",
            0,
            text="<think>a</think><depth-estimation>go</depth-estimation>",
            token_ids=[1, 2],
            finish="tool",
        ),
        ReasoningStep("tool_call", 0, text="go", modality="depth"),
        ReasoningStep("map", 0, modality="depth", map=torch.tensor([[1.0, 3.0]]), token_ids=[9, 9]),
        ReasoningStep(
            "image", 0, text="Here is the map.", modality="depth", image=picture, token_ids=[5] * 7
        ),
        ReasoningStep(
            "text",
            1,
            text="<think>b</think><answer>\\boxed{A}</answer>",
            token_ids=[3, 4, 5],
            finish="answer",
        ),
    ]
    return ReasoningTrace(
        "Which?", picture, "adaptive", steps, answer="A", raw_answer="\\boxed{A}", stop_reason="answer"
    )


def test_properties(trace):
    assert trace.turns == [trace.steps[0].text, trace.steps[4].text]
    assert trace.generated_tokens == 5
    assert [m for m, _ in trace.maps] == ["depth"]


def test_to_json_summarises_maps_and_embeds_images_on_request(trace, tmp_path):
    data = json.loads(trace.to_json(tmp_path / "t.json"))
    assert json.loads((tmp_path / "t.json").read_text()) == data
    assert [s["kind"] for s in data["steps"]] == ["text", "tool_call", "map", "image", "text"]
    assert data["steps"][2]["map"] == {
        "shape": [1, 2],
        "dtype": "float32",
        "min": 1.0,
        "max": 3.0,
        "mean": 2.0,
    }
    assert data["steps"][3]["image"] == {"size": [20, 10]} and data["steps"][3]["tokens"] == 7
    assert "png_base64" in json.loads(trace.to_json(embed_images=True))["steps"][3]["image"]


def test_to_html_is_self_contained(trace, tmp_path):
    page = trace.to_html(tmp_path / "t.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "<span class='tag'>&lt;answer&gt;</span>" in page
    assert "Which?" in page and "stopped by answer" in page


def test_to_image_stacks_the_steps(trace):
    picture = trace.to_image(width=400, image_height=50)
    assert picture.width == 400 and picture.height > 2 * 50
