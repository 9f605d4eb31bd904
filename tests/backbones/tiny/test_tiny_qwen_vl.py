"""Tiny Qwen-VL builders: where a visual token's place in its image is told (``visual_positions``)."""

import math

import pytest
import torch
from PIL import Image

from cooper_lib.backbones import adapter_for
from cooper_lib.backbones.tiny import build_from_spec, build_tiny_backbone
from cooper_lib.folder import load_backbone

_SPEC = "tiny:{family}?seed=2&patch_size=8&vision_hidden_size=32&visual_positions={positions}"


def _grid_reference(rows: int, cols: int, dim: int) -> torch.Tensor:
    """float64 sin-cos of each merged token's (row, column), raster order: per axis a quarter of
    `dim` frequencies 10000 ** (-i / (dim / 4)), laid out as sin(row), sin(col), cos(row), cos(col)."""
    quarter = dim // 4
    table = torch.empty(rows * cols, dim, dtype=torch.float64)
    for index in range(rows * cols):
        row, col = divmod(index, cols)
        for i in range(quarter):
            omega = 10000 ** (-i / quarter)
            table[index, i] = math.sin(row * omega)
            table[index, quarter + i] = math.sin(col * omega)
            table[index, 2 * quarter + i] = math.cos(row * omega)
            table[index, 3 * quarter + i] = math.cos(col * omega)
    return table


def _image_features(model, processor, images: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = processor.image_processor(images=images, return_tensors="pt")
    with torch.no_grad():
        out = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
    return torch.cat(out.pooler_output), inputs["image_grid_thw"]


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_sincos_adds_each_cells_row_and_column_to_its_visual_token(family):
    rotary, processor = build_from_spec(_SPEC.format(family=family, positions="rotary"))
    sincos, _ = build_from_spec(_SPEC.format(family=family, positions="sincos"))
    generator = torch.Generator().manual_seed(0)
    images = [
        Image.fromarray((torch.rand(32, 64, 3, generator=generator) * 255).to(torch.uint8).numpy()),
        Image.fromarray((torch.rand(48, 48, 3, generator=generator) * 255).to(torch.uint8).numpy()),
    ]
    plain, grid = _image_features(rotary, processor, images)
    placed, _ = _image_features(sincos, processor, images)
    merged_grids = [(h // 2, w // 2) for _, h, w in grid.tolist()]
    assert merged_grids == [(2, 4), (3, 3)]  # a wide image, so rows and columns differ
    reference = torch.cat([_grid_reference(rows, cols, plain.shape[-1]) for rows, cols in merged_grids])
    torch.testing.assert_close((placed - plain).double(), reference, atol=1e-5, rtol=0)


def test_sincos_reaches_the_language_model_of_a_loaded_backbone():
    # trained folders record the spec and load through `load_backbone`, which rebuilds the hook
    model, processor = load_backbone(_SPEC.format(family="qwen2_vl", positions="sincos"))
    twin, _ = load_backbone(_SPEC.format(family="qwen2_vl", positions="rotary"))
    adapter = adapter_for(model)
    message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}
    text = adapter.render_chat(processor, [message])
    inputs = adapter.build_inputs(processor, [text], [[Image.new("RGB", (32, 32), "red")]])
    with torch.no_grad():
        logits = model(**inputs).logits
        plain = twin(**inputs).logits
    assert not torch.allclose(logits, plain)


@pytest.mark.parametrize(
    ("family", "value", "message"),
    [
        (
            "qwen2_vl",
            "learned",
            r"visual_positions: expected one of \['rotary', 'sincos'\] for qwen2_vl, got 'learned'",
        ),
        ("qwen3_vl", "sincos", r"expected one of \['rotary'\] for qwen3_vl"),
        ("llava", "sincos", r"llava does not take visual_positions; it is taken by \['qwen2_5_vl'"),
    ],
)
def test_bad_visual_positions_are_named(family, value, message):
    with pytest.raises(ValueError, match=message):
        build_tiny_backbone(family, visual_positions=value)
