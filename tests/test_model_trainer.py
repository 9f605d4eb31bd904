"""SpatialModel keeps the Hugging Face model contract: a plain transformers.Trainer trains it, and
what the Trainer saves (final model and checkpoints) reloads exactly, tied embeddings included."""

import torch
from helpers import SMALL_HEADS, images
from safetensors.torch import load_file
from transformers import Trainer, TrainingArguments
from transformers.utils import ModelOutput

from cooper_lib import SpatialModel, add_spatial_heads
from cooper_lib.data.synthetic import render_scenes
from cooper_lib.loading import load_backbone

SPEC = "tiny:qwen2_5_vl"  # tied input and output embeddings, like the real Qwen2.5-VL


def test_forward_returns_a_model_output_with_the_loss_first():
    backbone, processor = load_backbone(SPEC)
    model = add_spatial_heads(backbone, processor, modalities=("depth",), **SMALL_HEADS)
    inputs = model.perception_inputs(images(2), "depth")
    out = model(**inputs, aux_targets={"depth": torch.rand(2, 16, 16) + 1})
    assert isinstance(out, ModelOutput)
    assert out[0] is out.loss and out["loss"] is out.loss and out.to_tuple()[0] is out.loss
    assert out.aux_losses["depth"] is out["aux_losses"]["depth"]
    assert model.get_text_config().hidden_size == model.config.hidden_size
    assert model.can_generate() and model.name_or_path == SPEC
    model.gradient_checkpointing_enable()
    assert model.backbone.is_gradient_checkpointing


def test_a_plain_trainer_trains_saves_and_the_folder_reloads_exactly(tmp_path):
    torch.manual_seed(0)
    backbone, processor = load_backbone(SPEC)
    model = add_spatial_heads(
        backbone,
        processor,
        modalities=("depth",),
        output_size=(16, 16),
        query_grid=(2, 2),
        train_backbone=True,
    )
    scenes = render_scenes(16, seed=0)

    def collate(rows):
        batch = dict(model.perception_inputs([s.rgb for s in rows], "depth"))
        batch["aux_targets"] = {"depth": torch.stack([s.depth for s in rows])}
        return batch

    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=10,
        per_device_train_batch_size=4,
        learning_rate=2e-3,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_steps=5,
        remove_unused_columns=False,
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=scenes, data_collator=collate)
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 10
    # bound: 10 steps at lr 2e-3 take the depth loss well below where it starts
    assert sum(losses[-3:]) / 3 < 0.8 * losses[0], losses

    trainer.save_model(str(tmp_path / "final"))  # crashed on tied embeddings before ("share memory")
    loaded = SpatialModel.from_pretrained(tmp_path / "final")
    theirs = dict(loaded.named_parameters())
    for name, param in model.named_parameters():
        assert torch.equal(param, theirs[name]), name
    inputs = model.eval().perception_inputs(images(2), "depth")
    assert torch.equal(
        loaded.eval()(**inputs, return_maps=True).maps["depth"],
        model(**inputs, return_maps=True).maps["depth"],
    )

    checkpoint = tmp_path / "run" / "checkpoint-5"
    assert SpatialModel.from_pretrained(checkpoint).config == model.config
    model.load_state_dict(load_file(str(checkpoint / "model.safetensors")))  # what resuming does, strictly
