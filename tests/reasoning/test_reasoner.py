import numpy as np
import pytest
import torch
from helpers import SMALL_HEADS
from PIL import Image
from scripted import ANSWER_TURN, FAMILIES, QUESTION, SEG_TURN, TOOL_TURN, image, script, spatial
from transformers import SuppressTokensLogitsProcessor

from cooper_lib import add_spatial_heads
from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.data.synthetic.traces import DISPLAY_DEPTH_RANGE
from cooper_lib.modalities import DepthCodec
from cooper_lib.reasoning import DEPTH_DISPLAY_RANGE, InterleavedReasoner, SamplingConfig, default_codecs
from cooper_lib.reasoning.reasoner import draw_map


def _kinds(trace):
    return [step.kind for step in trace.steps]


@pytest.mark.parametrize("family", FAMILIES)
def test_scripted_run_gives_text_map_and_answer_in_order(family):
    model = spatial(family)
    events = []
    reasoner = InterleavedReasoner(
        model,
        system_prompt=None,
        logits_processors=[script(model, TOOL_TURN, ANSWER_TURN)],
        stream=events.append,
        return_inputs=True,
    )
    trace = reasoner.run(image(), QUESTION)

    assert _kinds(trace) == ["text", "tool_call", "map", "image", "text"]
    assert trace.turns == [TOOL_TURN, ANSWER_TURN]
    assert (trace.answer, trace.raw_answer, trace.stop_reason) == ("A", "Left. \\boxed{A}", "answer")
    call, depth, shown = trace.steps[1:4]
    assert call.modality == depth.modality == shown.modality == "depth"
    assert depth.map.shape == model.config.output_size and torch.isfinite(depth.map).all()
    assert shown.image.size == image().size
    assert shown.text.startswith("\nHere is the result of the depth-estimation/segmentation.")
    # the inserted picture is the map drawn by the codec (resized, nearest)
    drawn = np.asarray(shown.image.resize(depth.map.shape[::-1], Image.Resampling.NEAREST))
    expected = (reasoner.codecs["depth"].encode(depth.map).permute(1, 2, 0) * 255).round().byte().numpy()
    assert np.array_equal(drawn, expected)
    # streaming: the text pieces spell both turns, the map comes before its image
    assert "".join(e.text for e in events if e.kind == "text") == TOOL_TURN + ANSWER_TURN
    assert [e.kind for e in events if e.kind != "text"] == ["map", "image"]
    # the kept context holds every sampled token where the mask says
    ids = trace.model_inputs["input_ids"][0]
    assert ids.shape[0] == trace.total_tokens
    sampled = [t for step in trace.steps if step.kind == "text" for t in step.token_ids]
    assert ids[trace.generated_mask].tolist() == sampled


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_text_matches_generate(family):
    model = spatial(family)
    tokenizer = model.adapter.tokenizer(model.processor)
    no_eos = SuppressTokensLogitsProcessor(
        sorted({tokenizer.eos_token_id, *InterleavedReasoner(model).eos_ids})
    )
    reasoner = InterleavedReasoner(
        model,
        policy="text_only",
        max_turns=1,
        max_new_tokens_per_turn=6,
        system_prompt=None,
        logits_processors=[no_eos],
    )
    trace = reasoner.run(image(), QUESTION)
    message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}
    text = model.adapter.render_chat(model.processor, [message], add_generation_prompt=True)
    inputs = model.adapter.prompt_inputs(model.processor, text, [image()])
    expected = model.generate(**inputs, max_new_tokens=6, do_sample=False, logits_processor=[no_eos])
    assert trace.steps[0].token_ids == expected[0, inputs["input_ids"].shape[1] :].tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_max_turns_with_no_answer_keeps_every_turn(family):
    model = spatial(family)
    reasoner = InterleavedReasoner(
        model, max_turns=3, max_new_tokens_per_turn=4, logits_processors=[script(model, "<think>" * 40)]
    )
    trace = reasoner.run(image(), QUESTION)
    assert trace.stop_reason == "max_turns" and trace.answer is None
    assert _kinds(trace) == ["text", "prompt", "text", "prompt", "text"]
    assert all(step.tokens == 4 and step.finish == "length" for step in trace.steps if step.kind == "text")
    assert [step.turn for step in trace.steps if step.kind == "text"] == [0, 1, 2]


def test_turn_ended_by_eos_is_kept_and_followed_by_the_retry_prompt():
    model = spatial("qwen2_vl")
    reasoner = InterleavedReasoner(
        model, system_prompt=None, logits_processors=[script(model, "<think>hmm</think>")], return_inputs=True
    )
    trace = reasoner.run(image(), QUESTION)  # the script sends EOS after its text, every turn
    first = trace.steps[0]
    assert (first.text, first.finish) == ("<think>hmm</think>", "eos")
    assert first.token_ids[-1] in reasoner.eos_ids  # the end of turn is a sampled token
    sampled = [t for step in trace.steps if step.kind == "text" for t in step.token_ids]
    assert trace.model_inputs["input_ids"][0][trace.generated_mask].tolist() == sampled
    assert trace.steps[1].kind == "prompt" and trace.steps[1].text.startswith("Your last turn")
    assert trace.stop_reason == "max_turns"


@pytest.mark.parametrize("family", FAMILIES)
def test_total_token_budget_is_never_exceeded(family):
    model = spatial(family)
    probe = InterleavedReasoner(model, logits_processors=[script(model, TOOL_TURN)]).run(image(), QUESTION)
    budget = probe.prompt_tokens + 30
    reasoner = InterleavedReasoner(
        model, max_total_tokens=budget, logits_processors=[script(model, TOOL_TURN, ANSWER_TURN)]
    )
    trace = reasoner.run(image(), QUESTION)
    assert trace.stop_reason == "max_total_tokens"
    assert trace.total_tokens <= budget
    assert "image" not in _kinds(trace)


def test_a_tool_call_in_the_last_turn_ends_the_run_without_a_map():
    model = spatial("qwen2_vl")
    trace = InterleavedReasoner(model, max_turns=1, logits_processors=[script(model, TOOL_TURN)]).run(
        image(), QUESTION
    )
    assert _kinds(trace) == ["text"]
    assert trace.steps[0].finish == "tool" and trace.stop_reason == "max_turns"


def test_a_tool_tag_spelled_in_pieces_stops_the_turn_but_is_not_called():
    model = spatial("qwen2_vl")
    tokenizer = model.adapter.tokenizer(model.processor)
    forced = script(model, "<think>x</think>")
    forced.ids += tokenizer.encode("<depth-estimation>", add_special_tokens=False)
    forced.ids += tokenizer.encode("Go</", add_special_tokens=False) + tokenizer.encode(
        "depth-estimation>", add_special_tokens=False
    )
    assert tokenizer.convert_tokens_to_ids("</depth-estimation>") not in forced.ids  # spelled out
    trace = InterleavedReasoner(model, logits_processors=[forced]).run(image(), QUESTION)
    assert trace.steps[0].text.endswith("</depth-estimation>")
    assert trace.steps[0].finish == "unparsed"
    assert "map" not in _kinds(trace)


@pytest.mark.parametrize("family", FAMILIES)
def test_perceive_first_calls_depth_then_segmentation_then_lets_the_model_answer(family):
    model = spatial(family)
    trace = InterleavedReasoner(
        model, policy="perceive_first", logits_processors=[script(model, ANSWER_TURN)]
    ).run(image(), QUESTION)
    assert _kinds(trace) == ["text", "tool_call", "map", "image"] * 2 + ["text"]
    assert [s.modality for s in trace.steps if s.kind == "map"] == ["depth", "segmentation"]
    assert [s.forced for s in trace.steps if s.kind == "text"] == [True, True, False]
    assert trace.steps[1].text == model.config.spec("depth").instruction
    assert (
        trace.turns[0]
        == "<depth-estimation>Estimate the depth of the image and generate the depth map.</depth-estimation>"
    )
    assert trace.steps[2].map.dtype == torch.float32 and trace.steps[6].map.dtype == torch.long
    assert trace.answer == "A" and trace.generated_tokens == trace.steps[-1].tokens


def test_perceive_first_answer_turn_cannot_call_tools():
    model = spatial("qwen2_vl")
    forced = script(model, SEG_TURN, ANSWER_TURN)
    trace = InterleavedReasoner(model, policy="perceive_first", logits_processors=[forced]).run(
        image(), QUESTION
    )
    assert [s.modality for s in trace.steps if s.kind == "map"] == ["depth", "segmentation"]
    assert trace.turns[-1] == SEG_TURN + ANSWER_TURN and trace.answer == "A"


@pytest.mark.parametrize("family", FAMILIES)
def test_text_only_never_calls_a_tool(family):
    model = spatial(family)
    forced = script(model, TOOL_TURN, ANSWER_TURN)
    trace = InterleavedReasoner(model, policy="text_only", logits_processors=[forced]).run(image(), QUESTION)
    assert _kinds(trace) == ["text"]
    assert trace.turns == [TOOL_TURN + ANSWER_TURN] and trace.answer == "A"


def test_draw_map_shows_a_map_in_its_codecs_colours_resized_nearest():
    codec = DepthCodec(max_depth=7.0)
    value = torch.tensor([[1.0, 6.0], [3.0, 0.5]])
    colours = np.asarray(draw_map(codec, value))
    assert colours.shape == (2, 2, 3) and len({tuple(c) for c in colours.reshape(-1, 3)}) == 4
    picture = np.asarray(draw_map(codec, value, (4, 6)))
    assert picture.shape == (4, 6, 3)
    for row in range(2):
        for col in range(2):
            assert (picture[2 * row : 2 * row + 2, 3 * col : 3 * col + 3] == colours[row, col]).all()


def test_segmentation_call_inserts_a_palette_image():
    model = spatial("qwen2_vl")
    trace = InterleavedReasoner(model, logits_processors=[script(model, SEG_TURN, ANSWER_TURN)]).run(
        image(), QUESTION
    )
    seg = trace.steps[2]
    assert seg.modality == "segmentation" and seg.map.dtype == torch.long
    assert int(seg.map.max()) < model.config.num_classes


def test_batch_rollouts_reproduce_single_runs_with_their_seeds():
    model = spatial("qwen2_vl")
    reasoner = InterleavedReasoner(
        model, max_new_tokens_per_turn=8, max_turns=2, generation_kwargs={"temperature": 1.0, "top_p": 0.9}
    )
    batch = reasoner.run_batch([image()] * 3, [QUESTION] * 3, seeds=[11, 12, 13])
    assert [t.seed for t in batch] == [11, 12, 13]
    alone = reasoner.run(image(), QUESTION, seed=12)
    assert alone.turns == batch[1].turns
    assert len({tuple(t.turns) for t in batch}) > 1  # different seeds, different rollouts


def test_default_seeds_follow_the_sampling_seed():
    model = spatial("qwen2_vl")
    reasoner = InterleavedReasoner(
        model, max_turns=1, max_new_tokens_per_turn=4, generation_kwargs=SamplingConfig(1.0, seed=5)
    )
    assert [t.seed for t in reasoner.run_batch([image()] * 2, [QUESTION] * 2)] == [5, 6]


def test_default_codecs_show_depth_in_spectral_colours_over_the_sft_range():
    codec = default_codecs(spatial("qwen2_vl"))["depth"]
    assert isinstance(codec, DepthCodec) and codec.encoding == "spectral"
    assert DEPTH_DISPLAY_RANGE == DISPLAY_DEPTH_RANGE == (codec.min_depth, codec.max_depth)


def test_default_codecs_follow_the_configs_depth_display_range():
    model, processor = build_tiny_backbone("qwen2_vl")
    model = add_spatial_heads(model, processor, **{**SMALL_HEADS, "depth_display_range": (0.5, 7.0)})
    codec = default_codecs(model)["depth"]
    assert (codec.min_depth, codec.max_depth) == (0.5, 7.0)
    depth = torch.tensor([[1.0, 7.0, 30.0]])
    shown = codec.encode(depth)
    assert torch.allclose(codec.decode(shown).value[0, :2], depth[0, :2], rtol=0.05)
    assert torch.equal(shown[..., 2], shown[..., 1])  # farther than the range: clamped to its far end


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_turns": 0}, "max_turns"),
        ({"max_new_tokens_per_turn": 0}, "max_new_tokens_per_turn"),
        ({"max_total_tokens": 0}, "max_total_tokens"),
        ({"tools": ("normals",)}, "no head"),
        ({"policy": "perceive_first", "max_turns": 2}, "max_turns"),
        ({"policy": "sometimes"}, "policy"),
        ({"map_size": "large"}, "map_size"),
        ({"generation_kwargs": {"temperature": -1}}, "temperature"),
        ({"codecs": {}}, "codecs"),
    ],
)
def test_bad_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InterleavedReasoner(spatial("qwen2_vl"), **kwargs)


def test_perceive_first_needs_every_head():
    backbone, processor = build_tiny_backbone("llava")
    depth_only = add_spatial_heads(backbone, processor, ("depth",), output_size=(8, 8), query_grid=(2, 2))
    with pytest.raises(ValueError, match="calls \\['segmentation'\\] in turn 2, but the model has no head"):
        InterleavedReasoner(depth_only, policy="perceive_first")


def test_bad_inputs_are_rejected():
    model = spatial("qwen2_vl")
    reasoner = InterleavedReasoner(model, max_turns=1, max_new_tokens_per_turn=2)
    with pytest.raises(ValueError, match="question"):
        reasoner.run(image(), "  ")
    with pytest.raises(ValueError, match="expected an image, got None"):
        reasoner.run(None, QUESTION)
    with pytest.raises(ValueError, match="processor rejected the image of size 400x1: absolute aspect ratio"):
        reasoner.run(Image.new("RGB", (400, 1)), QUESTION)
    with pytest.raises(ValueError, match="one image per question"):
        reasoner.run_batch([image()], [QUESTION, QUESTION])
    with pytest.raises(TypeError, match="SpatialModel"):
        InterleavedReasoner(model.backbone)
    with pytest.raises(ValueError, match="prompt of rollout 0 alone"):
        InterleavedReasoner(model, max_total_tokens=5).run(image(), QUESTION)


def test_generative_heads_serve_the_reasoner_unchanged(tmp_path):
    """Flow (depth) and discrete (segmentation) heads behind the same tool calls, with per-call options."""
    from cooper_lib.tokenizers import VQConfig, VQTokenizer

    VQTokenizer(
        VQConfig(image_size=16, downsample=4, base_channels=8, codebook_size=16, code_dim=8)
    ).save_pretrained(tmp_path / "vq")
    backbone, processor = build_tiny_backbone("qwen2_vl")
    model = add_spatial_heads(
        backbone,
        processor,
        head={"depth": "flow", "segmentation": "discrete"},
        aux_tokenizer={"segmentation": tmp_path / "vq"},
        head_options={
            "depth": {"width": 32, "blocks": 1, "steps": 4},
            "segmentation": {"width": 32, "blocks": 1},
        },
        num_classes=6,
        output_size=(16, 16),
        query_grid=(2, 2),
        head_width=32,
    ).eval()

    def run(**options):
        reasoner = InterleavedReasoner(
            model,
            system_prompt=None,
            logits_processors=[script(model, TOOL_TURN, SEG_TURN, ANSWER_TURN)],
            perceive_options={"depth": options},
        )
        return reasoner.run(image(), QUESTION)

    trace = run(seed=7)
    assert _kinds(trace) == ["text", "tool_call", "map", "image", "text", "tool_call", "map", "image", "text"]
    (_, depth), (_, seg) = trace.maps
    assert depth.shape == (16, 16) and depth.dtype == torch.float32
    assert seg.shape == (16, 16) and seg.dtype == torch.long and int(seg.max()) < 6
    # the options reach the flow head: the same seed gives the same map, another seed another one
    torch.testing.assert_close(
        run(seed=7).maps[0][1], depth, rtol=0, atol=0, equal_nan=True
    )  # NaN: invalid colour
    assert not torch.allclose(run(seed=8).maps[0][1], depth, equal_nan=True)
    with pytest.raises(ValueError, match="perceive_options: expected keys from the tools"):
        InterleavedReasoner(model, perceive_options={"normals": {}})


def test_tool_tags_must_be_single_tokens():
    from cooper_lib.reasoning import TurnFormat

    model = spatial("qwen2_vl")
    tags = TurnFormat(
        tools={
            "depth": ("<depth-estimation>", "</depth-est>"),
            "segmentation": ("<segmentation>", "</segmentation>"),
        }
    )
    with pytest.raises(ValueError, match=r"closing tool tags \['</depth-est>'\] are not single tokens"):
        InterleavedReasoner(model, tags=tags)


def test_prompts_come_from_the_turn_format_unless_given():
    import dataclasses

    from cooper_prompts import COOPER_REFLECTION_PROMPT, COOPER_SYSTEM_PROMPT

    from cooper_lib.data.turns import RETRY_PROMPT
    from cooper_lib.reasoning import TurnFormat

    model = spatial("qwen2_vl")
    default = InterleavedReasoner(model)
    assert (default.system_prompt, default.reflection_prompt, default.retry_prompt) == (
        COOPER_SYSTEM_PROMPT,
        COOPER_REFLECTION_PROMPT,
        RETRY_PROMPT,
    )
    tags = dataclasses.replace(
        TurnFormat.from_config(model.config), system_prompt="S", reflection_prompt="R {name}"
    )
    custom = InterleavedReasoner(model, tags=tags, retry_prompt="again")
    assert (custom.system_prompt, custom.reflection_prompt, custom.retry_prompt) == ("S", "R {name}", "again")
    assert InterleavedReasoner(model, tags=tags, system_prompt=None).system_prompt is None


def test_the_inserted_reflection_is_coopers_prompt_byte_for_byte():
    from cooper_prompts import COOPER_REFLECTION_PROMPT

    model = spatial("qwen2_vl")
    reasoner = InterleavedReasoner(model, logits_processors=[script(model, TOOL_TURN, ANSWER_TURN)])
    trace = reasoner.run(image(), QUESTION)
    inserted = [step.text for step in trace.steps if step.kind == "image"]
    assert inserted == [COOPER_REFLECTION_PROMPT]
