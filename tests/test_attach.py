import pytest
import torch
from helpers import SMALL_HEADS, tiny_spatial

from cooper_lib import SpatialModel, add_spatial_heads
from cooper_lib.backbones.tiny import build_tiny_backbone

FAMILY = "qwen2_vl"


def _snapshot(model, processor):
    """What an attach changes: tokenizer length, both embedding matrices, vocab size, hooks."""
    return {
        "tokens": len(processor.tokenizer),
        "embed": model.get_input_embeddings().weight.detach().clone(),
        "lm_head": model.get_output_embeddings().weight.detach().clone(),
        "vocab_size": model.config.get_text_config().vocab_size,
        "hooks": len(model.get_input_embeddings()._forward_hooks),
    }


def _assert_unchanged(model, processor, snapshot):
    assert _snapshot(model, processor).keys() == snapshot.keys()
    now = _snapshot(model, processor)
    for key, before in snapshot.items():
        if isinstance(before, torch.Tensor):
            assert now[key].shape == before.shape, key
            assert torch.equal(now[key], before), key
        else:
            assert now[key] == before, key


def test_attach_adds_tokens_with_mean_rows():
    model, processor = build_tiny_backbone(FAMILY)
    before = len(processor.tokenizer)
    mean = model.get_input_embeddings().weight[:before].mean(dim=0)
    head_mean = model.get_output_embeddings().weight[:before].mean(dim=0)
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight  # untied
    spatial = add_spatial_heads(model, processor, **SMALL_HEADS)
    assert isinstance(spatial, SpatialModel)
    added = spatial.config.added_tokens
    assert set(added) == {
        "<depth-estimation>",
        "</depth-estimation>",
        "<segmentation>",
        "</segmentation>",
        "<|perception_query|>",
    }
    for text, token_id in added.items():
        assert processor.tokenizer.encode(text, add_special_tokens=False) == [token_id]
        torch.testing.assert_close(model.get_input_embeddings().weight[token_id], mean)
        torch.testing.assert_close(model.get_output_embeddings().weight[token_id], head_mean)
    assert spatial.backbone is model
    assert spatial.queries["depth"].shape == (4, model.config.get_text_config().hidden_size)


def test_tags_decode_as_text_and_query_token_is_special():
    spatial = tiny_spatial(FAMILY)
    tokenizer = spatial.processor.tokenizer
    ids = tokenizer.encode(
        "<depth-estimation>x</depth-estimation><|perception_query|>", add_special_tokens=False
    )
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<depth-estimation>x</depth-estimation>"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"modalities": ("depth", "smell")}, ValueError, "modalities: expected names from"),
        ({"head": "magic"}, ValueError, "head: expected one of"),
        ({"query_grid": (0, 2)}, ValueError, "query_grid"),
    ],
)
def test_bad_arguments_leave_backbone_unchanged(kwargs, error, message):
    model, processor = build_tiny_backbone(FAMILY)
    snapshot = _snapshot(model, processor)
    with pytest.raises(error, match=message):
        add_spatial_heads(model, processor, **{**SMALL_HEADS, **kwargs})
    _assert_unchanged(model, processor, snapshot)


def test_mismatched_processor_rejected():
    model, _ = build_tiny_backbone(FAMILY)
    _, other = build_tiny_backbone("llava")
    snapshot = _snapshot(model, other)
    with pytest.raises(ValueError, match="processor: .*expected the processor that belongs"):
        add_spatial_heads(model, other, **SMALL_HEADS)
    _assert_unchanged(model, other, snapshot)


def test_second_attach_rejected():
    spatial = tiny_spatial(FAMILY)
    snapshot = _snapshot(spatial.backbone, spatial.processor)
    with pytest.raises(ValueError, match="already attached"):
        add_spatial_heads(spatial.backbone, spatial.processor, **SMALL_HEADS)
    with pytest.raises(TypeError, match="got a SpatialModel"):
        add_spatial_heads(spatial, spatial.processor)
    _assert_unchanged(spatial.backbone, spatial.processor, snapshot)


def test_not_a_module_rejected():
    _, processor = build_tiny_backbone(FAMILY)
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        add_spatial_heads("Qwen/Qwen2-VL-2B-Instruct", processor)


def test_heads_for_another_hidden_size_rejected(tmp_path):
    tiny_spatial(FAMILY).save_pretrained(tmp_path)
    model, processor = build_tiny_backbone(FAMILY, hidden_size=128)
    snapshot = _snapshot(model, processor)
    with pytest.raises(ValueError, match="hidden_size=64 .* has hidden_size=128"):
        SpatialModel.from_pretrained(model, tmp_path, processor)
    _assert_unchanged(model, processor, snapshot)


def test_tokenizer_with_other_ids_rejected(tmp_path):
    tiny_spatial(FAMILY).save_pretrained(tmp_path)
    model, processor = build_tiny_backbone(FAMILY)
    processor.tokenizer.add_tokens(["<something-else>"])
    model.resize_token_embeddings(max(len(processor.tokenizer), model.get_input_embeddings().num_embeddings))
    snapshot = _snapshot(model, processor)
    with pytest.raises(ValueError, match="saved heads expect token ids"):
        SpatialModel.from_pretrained(model, tmp_path, processor)
    _assert_unchanged(model, processor, snapshot)


def test_truncated_weights_file_leaves_backbone_unchanged_and_attachable(tmp_path):
    from safetensors.torch import load_file, save_file

    saved = tiny_spatial(FAMILY)
    saved.save_pretrained(tmp_path)
    weights = tmp_path / "spatial_heads.safetensors"
    state = load_file(str(weights))
    del state["queries.depth"]
    save_file(state, str(weights))
    model, processor = build_tiny_backbone(FAMILY)
    snapshot = _snapshot(model, processor)
    with pytest.raises(ValueError, match=r"missing tensors \['queries.depth'\]"):
        SpatialModel.from_pretrained(model, tmp_path, processor)
    _assert_unchanged(model, processor, snapshot)
    saved.save_pretrained(tmp_path)
    restored = SpatialModel.from_pretrained(model, tmp_path, processor)
    torch.testing.assert_close(restored.queries["depth"], saved.queries["depth"], rtol=0, atol=0)


def test_weights_of_another_shape_leave_backbone_unchanged(tmp_path):
    from safetensors.torch import load_file, save_file

    tiny_spatial(FAMILY).save_pretrained(tmp_path)
    weights = tmp_path / "spatial_heads.safetensors"
    state = load_file(str(weights))
    state["embed_tokens.rows"] = state["embed_tokens.rows"][:-1]
    save_file(state, str(weights))
    model, processor = build_tiny_backbone(FAMILY)
    snapshot = _snapshot(model, processor)
    with pytest.raises(
        ValueError, match=r"state\['embed_tokens.rows'\]: expected shape \(5, 64\), got \(4, 64\)"
    ):
        SpatialModel.from_pretrained(model, tmp_path, processor)
    _assert_unchanged(model, processor, snapshot)


def test_head_that_cannot_be_built_leaves_backbone_unchanged(tmp_path):
    model, processor = build_tiny_backbone(FAMILY)
    snapshot = _snapshot(model, processor)
    with pytest.raises(FileNotFoundError):
        add_spatial_heads(
            model, processor, head="flow", aux_tokenizer=tmp_path / "no-such-folder", **SMALL_HEADS
        )
    _assert_unchanged(model, processor, snapshot)
    assert isinstance(add_spatial_heads(model, processor, **SMALL_HEADS), SpatialModel)
