"""`cooper-lib train stage1|sft|grpo --config FILE.yaml [--section.field VALUE ...]`.

Every config field is also a flag (``--optim.lr 1e-5``, ``--run.max_steps 100``, ``--data a.jsonl
b.jsonl``); flags override the file, the file overrides the stage's defaults. The resolved config
is written to ``<run.output_dir>/config.yaml`` next to the checkpoints. ``model.cooper`` (a preset
name or a release folder) trains the reference COOPER assembly instead of a plug-in backbone. Launch the same command
under ``torchrun`` or ``accelerate launch`` to train on several processes (see the docs pages).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import Any

from cooper_lib.training.config import STAGE_CONFIGS, apply_overrides, config_arguments, read_config_file

_HELP = {
    "stage1": "stage 1: train the heads (and backbone) to generate auxiliary maps",
    "sft": "stage 2a: supervised fine-tuning on interleaved reasoning traces",
    "grpo": "stage 2b: GRPO with COOPER's CPR reward on interleaved rollouts",
}
_OWN = ("config", "print_config", "func", "command", "stage", "debug")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `cooper-lib train` and its three stages."""
    train = subparsers.add_parser("train", help="train a SpatialModel or CooperModel: stage1, sft or grpo")
    stages = train.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, cls in STAGE_CONFIGS.items():
        parser = stages.add_parser(
            name,
            help=_HELP[name],
            description=f"{_HELP[name]}. Options come from --config and the flags below (flags win).",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        parser.add_argument("--config", type=Path, default=None, help="YAML or JSON config file")
        parser.add_argument(
            "--print-config", action="store_true", help="print the resolved config as YAML and exit"
        )
        config_arguments(parser, cls)
        parser.set_defaults(func=partial(run_stage, name))


def resolve_config(stage: str, args: argparse.Namespace) -> Any:
    """The stage config from ``--config`` and the flags given."""
    data = read_config_file(args.config) if args.config is not None else {}
    overrides = {k: v for k, v in vars(args).items() if k not in _OWN}
    return STAGE_CONFIGS[stage].from_dict(apply_overrides(data, overrides))


def run_stage(stage: str, args: argparse.Namespace) -> int:
    """Build the model the config names, train it, and report where the final model went."""
    config = resolve_config(stage, args)
    if args.print_config:
        import yaml

        sys.stdout.write(yaml.safe_dump(config.to_dict(), sort_keys=False))
        return 0
    from accelerate.utils import set_seed

    from cooper_lib.training.grpo import SpatialGRPOTrainer
    from cooper_lib.training.kinds import build_cooper_model
    from cooper_lib.training.sft import InterleavedSFTTrainer
    from cooper_lib.training.stage1 import Stage1Trainer
    from cooper_lib.training.weights import build_model, seeded_backbone

    trainers = {"stage1": Stage1Trainer, "sft": InterleavedSFTTrainer, "grpo": SpatialGRPOTrainer}
    set_seed(config.run.seed)  # the heads' (or a preset reference model's) initialisation
    if config.model.cooper is not None:
        model, tokenizer = build_cooper_model(config.model)
        trainer = trainers[stage](model, config, tokenizer=tokenizer)
    else:
        config.model.backbone = seeded_backbone(config.model, config.run.seed)  # a tiny one's weights
        trainer = trainers[stage](build_model(config.model), config)
    if trainer.accelerator.is_main_process:
        config.save(Path(config.run.output_dir) / "config.yaml")
    result = trainer.train()
    if trainer.accelerator.is_main_process:
        print(f"final model: {result.final_dir}\nlast checkpoint: {result.checkpoint}")
    return 0
