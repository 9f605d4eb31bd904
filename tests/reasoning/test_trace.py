import json


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
