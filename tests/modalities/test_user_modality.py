"""A fourth modality defined here, in the test file only, goes through the whole library.

"edges" is an edge-strength map in [0, 1] (a float map), drawn as gray with invalid pixels in
red, trained by the dense head with a masked binary cross-entropy. It is registered with one call
and then attached, trained in stage 1 and SFT, rewarded in GRPO, called by the reasoner and
counted by the evaluation's tool-use statistics, without any code outside this file knowing it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import SMALL_HEADS, images
from PIL import Image
from scripted import ANSWER_TURN, script
from training_setup import SPATIAL, optim_config, run_config

from cooper_lib import add_spatial_heads
from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.data.records import Item, SFTRecord, load_stage1_records
from cooper_lib.eval import Benchmark, BenchmarkItem, evaluate
from cooper_lib.modalities import (
    DecodedMap,
    Display,
    Modality,
    ModalityCodec,
    get_modality,
    register_modality,
)
from cooper_lib.modalities import registry as registry_module
from cooper_lib.reasoning import InterleavedReasoner
from cooper_lib.tokenizers import VQConfig, VQTokenizer
from cooper_lib.training.collators import SFTCollator
from cooper_lib.training.config import ModelConfig, SFTConfig, Stage1Config
from cooper_lib.training.rewards import format_reward, used_tool
from cooper_lib.training.sft import InterleavedSFTTrainer
from cooper_lib.training.stage1 import Stage1Trainer
from cooper_lib.training.weights import build_model

INVALID = torch.tensor([1.0, 0.0, 0.0])


class EdgesCodec(ModalityCodec):
    """Edge strength in [0, 1] <-> gray; NaN (or False in ``mask``) <-> red."""

    name = "edges"
    units = "edge strength"
    value_range = (0.0, 1.0)

    def encode(self, x: Any, mask: Any = None) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32)
        valid = torch.isfinite(x) if mask is None else torch.isfinite(x) & torch.as_tensor(mask)
        gray = x.clamp(0.0, 1.0).nan_to_num(0.0).unsqueeze(-3).expand(*x.shape[:-2], 3, *x.shape[-2:])
        red = INVALID.to(x.device).view(3, 1, 1).expand_as(gray)
        return torch.where(valid.unsqueeze(-3), gray, red).contiguous()

    def decode(self, img: Any) -> DecodedMap:
        img = torch.as_tensor(np.asarray(img) if isinstance(img, Image.Image) else img)
        if img.dtype == torch.uint8:
            img = img.float() / 255.0
        if img.shape[-1] == 3 and img.shape[-3] != 3:
            img = img.movedim(-1, -3)
        spread = img.amax(-3) - img.amin(-3)
        valid = spread < 0.25
        value = torch.where(valid, img.mean(-3), torch.nan)
        return DecodedMap(value, valid, spread)

    @property
    def config(self) -> dict[str, Any]:
        return {}


class EdgesModality(Modality):
    """Edges: a float map in [0, 1]; the dense head predicts logits trained with BCE."""

    kind = "float"

    def __init__(self) -> None:
        super().__init__(
            "edges",
            EdgesCodec,
            open_tag="<edge-detection>",
            close_tag="</edge-detection>",
            instruction="Find the edges of the objects in the image.",
            display=Display("gray", (0.0, 1.0), "edge strength"),
        )

    def dense_map(self, raw: torch.Tensor) -> torch.Tensor:
        return raw[:, 0].float().sigmoid()

    def dense_loss(self, raw: torch.Tensor, target: torch.Tensor, **settings: Any) -> torch.Tensor:
        valid = self.valid_mask(target)
        if not bool(valid.any()):
            return raw.sum() * 0.0
        return F.binary_cross_entropy_with_logits(raw[:, 0].float()[valid], target.float()[valid])


EDGE_TURN = "<think>edges</think><edge-detection>go</edge-detection>"


@pytest.fixture(autouse=True, scope="module")
def edges():
    """Registers the modality (one call) for this module's tests only."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
        yield register_modality(EdgesModality())


def edge_map(n: int, size: int = 16) -> torch.Tensor:
    """`n` edge maps: 1 on a vertical line, 0 elsewhere, a few pixels unknown (NaN)."""
    maps = torch.zeros(n, size, size)
    maps[:, :, size // 2] = 1.0
    maps[:, 0, 0] = torch.nan
    return maps


def spatial(head: Any = "dense", **kwargs: Any):
    model, processor = build_tiny_backbone("qwen2_vl")
    return add_spatial_heads(
        model, processor, modalities=("depth", "edges"), head=head, **{**SMALL_HEADS, **kwargs}
    )


def test_attach_gives_the_modality_its_tags_and_head(edges):
    model = spatial()
    assert get_modality("edges") is edges
    assert model.config.spec("edges").open_tag == "<edge-detection>"
    assert model.heads["edges"].modality is edges
    tokenizer = model.processor.tokenizer
    assert tokenizer.convert_tokens_to_ids("</edge-detection>") in model.config.added_tokens.values()
    with pytest.raises(TypeError, match=r"aux_targets\[.edges.\]: expected a floating-point"):
        model(
            **model.perception_inputs(images(1), "edges"),
            aux_targets={"edges": torch.zeros(1, 16, 16, dtype=torch.long)},
        )


@pytest.fixture(scope="module")
def vq_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vq")
    VQTokenizer(
        VQConfig(image_size=16, downsample=4, base_channels=8, codebook_size=16, code_dim=8)
    ).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("head", ["dense", "flow", "discrete"])
def test_all_three_heads_train_and_perceive(head, vq_folder):
    extra = {"aux_tokenizer": {"edges": vq_folder}} if head == "discrete" else {}
    options = {"edges": {"width": 32, "blocks": 1, **({"steps": 2} if head == "flow" else {})}}
    model = spatial(
        head={"depth": "dense", "edges": head}, head_options=options if head != "dense" else {}, **extra
    )
    model.train()
    inputs = model.perception_inputs(images(2), "edges")
    out = model(**inputs, aux_targets={"edges": edge_map(2)})
    assert set(out.aux_losses) == {"edges"} and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.heads["edges"].parameters() if p.grad is not None]
    assert any(bool(g.abs().sum() > 0) for g in grads)
    model.eval()
    maps = model.perceive(images(1), "edges")
    assert maps.shape == (1, 16, 16) and maps.is_floating_point()
    if head == "dense":
        assert bool(((maps >= 0) & (maps <= 1)).all())  # the modality's decoding (sigmoid)


def _stage1_files(tmp_path, n: int = 4):
    rows = []
    codec = EdgesCodec()
    for index, image in enumerate(images(n, size=32)):
        image.save(tmp_path / f"rgb{index}.png")
        target = (codec.encode(edge_map(1, 32)[0]).permute(1, 2, 0) * 255).round().byte().numpy()
        Image.fromarray(target).save(tmp_path / f"edges{index}.png")
        rows.append({"image": f"rgb{index}.png", "modality": "edges", "target": f"edges{index}.png"})
    path = tmp_path / "stage1.jsonl"
    path.write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    return path


def test_stage1_records_load_and_training_lowers_the_loss(tmp_path):
    path = _stage1_files(tmp_path)
    records = load_stage1_records([path])
    target = records[0].load_target()
    assert torch.isnan(target[0, 0]) and torch.equal(target[1:, 16], torch.ones(31))
    with pytest.raises(ValueError, match=r"unknown keys \['palette'\]"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(
            '{"image": "rgb0.png", "modality": "edges", "target": "edges0.png", "palette": "ade20k"}\n'
        )
        load_stage1_records([bad])
    torch.manual_seed(0)
    config = Stage1Config(
        model=ModelConfig(spatial={**SPATIAL, "modalities": ["depth", "edges"]}),
        optim=optim_config(),
        run=run_config(tmp_path / "run", max_steps=6, batch_size=4, ema_decay=None),
        data=[str(path)],
        eval_data=[str(path)],
        eval_samples=4,
        mixture={"edges": 1.0},
    )
    trainer = Stage1Trainer(build_model(config.model), config)
    before = trainer.run_evaluation()
    trainer.train()
    after = trainer.run_evaluation()
    # bound: 6 steps of 4 maps at lr 2e-3 cut the held-out edge loss by at least 10%
    assert after["loss"] < 0.9 * before["loss"], (before, after)
    assert after["edges/mae"] < before["edges/mae"]  # the modality's metric of generated maps


def test_an_sft_step_supervises_the_edges_head(tmp_path):
    codec = EdgesCodec()
    record = SFTRecord(
        "edges-1",
        [
            Item("image", images(1, size=32)[0], role="user"),
            Item("text", "Where is the edge?", role="user"),
            Item("text", EDGE_TURN, need_loss=True, role="assistant"),
            Item(
                "image",
                codec.encode(edge_map(1, 32)[0]),
                role="tool",
                modality="edges",
                target=edge_map(1, 32)[0],
            ),
            Item("text", ANSWER_TURN, need_loss=True, role="assistant"),
        ],
    )
    torch.manual_seed(0)
    model = build_model(ModelConfig(spatial={**SPATIAL, "modalities": ["depth", "edges"]}))
    batch = SFTCollator(model)([record])
    assert batch["aux_targets"]["edges"].shape == (1, 16, 16)
    config = SFTConfig(
        model=ModelConfig(spatial={**SPATIAL, "modalities": ["depth", "edges"]}),
        optim=optim_config(),
        run=run_config(tmp_path, max_steps=4, batch_size=1),
    )
    trainer = InterleavedSFTTrainer(model, config, records=[record], eval_records=[record])
    before = trainer.run_evaluation()
    trainer.train()
    after = trainer.run_evaluation()
    assert after["loss"] < before["loss"], (before, after)


def test_grpo_format_and_exploration_count_its_tool_call():
    assert used_tool([EDGE_TURN, ANSWER_TURN])
    assert format_reward([EDGE_TURN, ANSWER_TURN]) == 1.0


def test_the_reasoner_calls_it_and_evaluation_counts_it():
    model = spatial()
    reasoner = InterleavedReasoner(
        model, system_prompt=None, logits_processors=[script(model, EDGE_TURN, ANSWER_TURN)]
    )
    bench = Benchmark(
        "edges-bench",
        [
            BenchmarkItem(
                "q1",
                lambda: images(1)[0],
                "Which side? (A) left (B) right",
                "A",
                "choice",
                ("left", "right"),
                "side",
            )
        ],
    )
    result = evaluate(reasoner, bench, progress=False)
    (record,) = result.records
    assert record["tools"] == ["edges"]
    assert result.tool_use["all"]["edges"] == 100.0 and result.tool_use["all"]["text_only"] == 0.0
    assert "| edges % |" in result.table()
    trace = InterleavedReasoner(
        model, system_prompt=None, logits_processors=[script(model, EDGE_TURN, ANSWER_TURN)]
    ).run(images(1)[0], "Which side?")
    ((name, edge),) = trace.maps
    assert name == "edges" and edge.shape == (16, 16)
    shown = reasoner.codecs["edges"]
    assert isinstance(shown, EdgesCodec)  # the modality's display codec draws the inserted map
