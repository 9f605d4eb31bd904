"""Share of backbone weights that change in 5 optimiser steps, per precision recipe.

Stage-1 training (`Stage1Trainer`, COOPER's AdamW settings: betas 0.9/0.95, eps 1e-15, lr 5e-6,
llm=full, vision tower frozen) on a tiny Qwen2-VL backbone and a small synthetic dataset, in two
recipes, each in a fresh process (accelerate's state is per process):

- ``before``: the recipe the training docs gave before issue 15: the backbone loaded in bfloat16,
  ``run.mixed_precision: no`` (pure-bf16 AdamW).
- ``after``: the documented default now: float32 master weights, ``run.mixed_precision: bf16``
  (bf16 autocast; on CPU here, on GPU in practice).

Warm-up is off so every step runs at the peak lr; the share counts elements of the trainable
backbone weights whose value differs (exactly) from their value before training.

    python benchmarks/bf16_recipe.py [--steps 5] [--lr 5e-6]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

RECIPES = {
    "before": {"dtype": "bfloat16", "mixed_precision": "no"},
    "after": {"dtype": "float32", "mixed_precision": "bf16"},
}


def measure(recipe: str, steps: int, lr: float, data: Path, out: Path) -> dict:
    """Train `steps` steps in `recipe`; the share of trainable backbone elements that changed."""
    import torch

    from cooper_lib.training.config import ModelConfig, OptimConfig, RunConfig, Stage1Config
    from cooper_lib.training.stage1 import Stage1Trainer
    from cooper_lib.training.weights import build_model

    settings = RECIPES[recipe]
    config = Stage1Config(
        model=ModelConfig(
            backbone="tiny:qwen2_vl",
            dtype=settings["dtype"],
            llm="full",
            spatial={"num_classes": 7, "output_size": [16, 16], "query_grid": [2, 2], "head_width": 32},
        ),
        optim=OptimConfig(lr=lr, warmup_steps=0),
        run=RunConfig(
            output_dir=str(out),
            max_steps=steps,
            batch_size=2,
            cpu=True,
            mixed_precision=settings["mixed_precision"],
            save_every=0,
            ema_decay=None,
            progress_bar=False,
        ),
        data=[str(data / "records.jsonl")],
    )
    torch.manual_seed(0)
    model = build_model(config.model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Stage1Trainer(model, config)
    trained = {n: p for n, p in model.backbone.named_parameters() if p.requires_grad}
    start = {n: p.detach().clone() for n, p in trained.items()}
    trainer.train()
    changed = {n: int((p.detach() != start[n]).sum()) for n, p in trained.items()}
    total = sum(p.numel() for p in trained.values())
    # embedding / output rows of tokens absent from the batches get no gradient in any recipe
    dense = [n for n in trained if "embed" not in n and "lm_head" not in n]
    dense_total = sum(trained[n].numel() for n in dense)
    return {
        "recipe": recipe,
        **settings,
        "trainable": total,
        "changed": sum(changed.values()),
        "share": sum(changed.values()) / total,
        "dense_share": sum(changed[n] for n in dense) / dense_total,
        "warned": any("low precision" in str(w.message) for w in caught),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--lr", type=float, default=5e-6)
    parser.add_argument("--recipe", choices=sorted(RECIPES), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.recipe:  # the child process: one recipe, one JSON line
        with tempfile.TemporaryDirectory() as out:
            print(json.dumps(measure(args.recipe, args.steps, args.lr, args.data, Path(out))))
        return
    from cooper_lib.data.synthetic import SceneConfig, write_dataset

    with tempfile.TemporaryDirectory() as root:
        data = write_dataset(
            Path(root) / "stage1", 12, seed=0, stage="stage1", config=SceneConfig(width=48, height=48)
        )
        rows = []
        for recipe in RECIPES:
            command = [sys.executable, __file__, "--recipe", recipe, "--data", str(data)]
            command += ["--steps", str(args.steps), "--lr", str(args.lr)]
            done = subprocess.run(command, capture_output=True, text=True, env=os.environ, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{args.steps} steps at lr {args.lr:g}, tiny qwen2_vl, stage 1, llm=full\n")
    print(
        "| recipe | model.dtype | run.mixed_precision | trainable backbone weights | changed | share "
        "| share without embedding rows | warned |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['recipe']} | {r['dtype']} | {r['mixed_precision']} | {r['trainable']:,} | {r['changed']:,} "
            f"| {100 * r['share']:.2f} % | {100 * r['dense_share']:.2f} % | {'yes' if r['warned'] else 'no'} |"
        )


if __name__ == "__main__":
    main()
