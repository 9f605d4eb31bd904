"""Train spatial heads with a plain `transformers.Trainer`, save, and reload in one call.

Runs offline on a CPU in under a minute with the tiny Qwen2.5-VL fixture (tied embeddings, like
the real Qwen2.5-VL). For a real backbone, pass its hub id to `load_backbone` (or load it with
`AutoModelForImageTextToText.from_pretrained` and `AutoProcessor.from_pretrained`).

    python examples/hf_trainer.py --steps 10 --out hf_trainer_out
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

from cooper_lib import SpatialModel, add_spatial_heads
from cooper_lib.data.synthetic import render_scenes
from cooper_lib.loading import load_backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("hf_trainer_out"))
    args = parser.parse_args()
    torch.manual_seed(0)

    backbone, processor = load_backbone("tiny:qwen2_5_vl")  # the name is recorded in the saved folder
    model = add_spatial_heads(backbone, processor, modalities=("depth",), output_size=(32, 32))
    scenes = render_scenes(32, seed=0)

    def collate(rows: list) -> dict:
        """The batch `SpatialModel.forward` takes: perception prompts and one depth map per prompt."""
        batch = dict(model.perception_inputs([s.rgb for s in rows], "depth"))
        batch["aux_targets"] = {"depth": torch.stack([s.depth for s in rows])}
        return batch

    training_args = TrainingArguments(
        output_dir=str(args.out / "run"),
        max_steps=args.steps,
        per_device_train_batch_size=8,
        learning_rate=2e-3,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_steps=max(1, args.steps // 2),  # a mid-run checkpoint, a folder from_pretrained reads too
        remove_unused_columns=False,  # the rows are scenes, not columns of a datasets.Dataset
        report_to=[],
        use_cpu=True,
        seed=0,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=scenes, data_collator=collate)
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    print(f"loss: {losses[0]:.4f} at step 1, {losses[-1]:.4f} at step {len(losses)}")

    trainer.save_model(str(args.out / "final"))
    reloaded = SpatialModel.from_pretrained(args.out / "final").eval()
    inputs = model.eval().perception_inputs([scenes[0].rgb], "depth")
    same = torch.equal(
        reloaded(**inputs, return_maps=True).maps["depth"], model(**inputs, return_maps=True).maps["depth"]
    )
    assert same, "the reloaded model's depth differs"
    print(f"saved {args.out / 'final'}; reloaded depth identical: {same}")


if __name__ == "__main__":
    main()
