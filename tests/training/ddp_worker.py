"""Worker of test_distributed.py: a few stage-1, SFT or GRPO steps, launched by torchrun or directly.

Usage: python ddp_worker.py STAGE DATA_JSONL OUTPUT_DIR GRAD_ACCUM
Rank 0 writes OUTPUT_DIR/history.json (the per-step metrics averaged over processes).
"""

import json
import sys
from pathlib import Path

import torch

from cooper_lib.training.config import (
    GRPOConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SFTConfig,
    Stage1Config,
)
from cooper_lib.training.grpo import SpatialGRPOTrainer
from cooper_lib.training.sft import InterleavedSFTTrainer
from cooper_lib.training.stage1 import Stage1Trainer
from cooper_lib.training.weights import build_model

SPATIAL = {"num_classes": 7, "output_size": [16, 16], "query_grid": [2, 2], "head_width": 32}


def main(stage: str, data: str, output_dir: str, grad_accum: int) -> None:
    torch.manual_seed(0)
    run = RunConfig(
        output_dir=output_dir,
        max_steps=3,
        batch_size=1,
        grad_accum_steps=grad_accum,
        save_every=0,
        progress_bar=False,
    )
    optim = OptimConfig(lr=2e-3, warmup_steps=0, eps=1e-8)
    if stage == "stage1":
        config = Stage1Config(model=ModelConfig(spatial=SPATIAL), optim=optim, run=run, data=[data])
        trainer = Stage1Trainer(build_model(config.model), config)
    elif stage == "sft":
        config = SFTConfig(model=ModelConfig(spatial=SPATIAL), optim=optim, run=run, data=[data])
        trainer = InterleavedSFTTrainer(build_model(config.model), config)
    else:
        config = GRPOConfig(
            model=ModelConfig(spatial=SPATIAL),
            optim=optim,
            run=run,
            data=[data],
            num_generations=2,
            max_new_tokens=3,
            max_turns=1,
        )
        trainer = SpatialGRPOTrainer(build_model(config.model), config)
    result = trainer.train()
    if trainer.accelerator.is_main_process:
        (Path(output_dir) / "history.json").write_text(json.dumps(result.history))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
