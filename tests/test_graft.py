import pytest
import torch
from helpers import SMALL_HEADS

from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.config import SpatialConfig
from cooper_lib.graft import Graft, check_addition_state, graft


def test_graft_returns_the_pieces_of_a_spatial_model_and_marks_the_backbone():
    model, processor = build_tiny_backbone("qwen2_vl")
    before = len(processor.tokenizer)
    config = SpatialConfig(modalities=("depth",), **SMALL_HEADS)
    made = graft(model, processor, config)
    assert isinstance(made, Graft) and set(made.heads) == {"depth"}
    assert made.query_init.shape == made.query_pos.shape == (config.num_queries, made.adapter.hidden_size)
    assert len(processor.tokenizer) == before + 3  # two tags and the query token
    assert made.config.hidden_size == made.adapter.hidden_size and made.config.added_tokens
    with pytest.raises(ValueError, match="already attached"):
        graft(model, processor, SpatialConfig(modalities=("depth",), **SMALL_HEADS))


def test_an_unknown_head_fails_before_any_change():
    model, processor = build_tiny_backbone("qwen2_vl")
    before = len(processor.tokenizer)
    with pytest.raises(ValueError, match="head: expected one of"):
        graft(model, processor, SpatialConfig(head="magic"))
    assert len(processor.tokenizer) == before


def test_check_addition_state_names_missing_unexpected_and_misshapen_tensors():
    expected = {"a": torch.Size((2,)), "b": torch.Size((3,))}
    check_addition_state({"a": torch.zeros(2), "b": torch.zeros(3)}, expected)
    with pytest.raises(ValueError, match=r"missing tensors \['b'\], unexpected tensors \['c'\]"):
        check_addition_state({"a": torch.zeros(2), "c": torch.zeros(3)}, expected)
    with pytest.raises(ValueError, match=r"state\['b'\]: expected shape \(3,\), got \(4,\)"):
        check_addition_state({"a": torch.zeros(2), "b": torch.zeros(4)}, expected)
