"""Configs shared by the training tests (imported by name; fixtures live in conftest.py)."""

from __future__ import annotations

from cooper_lib.data.synthetic import SceneConfig
from cooper_lib.training.config import ModelConfig, OptimConfig, RunConfig

#: Small heads on the tiny Qwen2-VL backbone; 7 classes = the synthetic world's semantic classes.
SPATIAL = {"num_classes": 7, "output_size": [16, 16], "query_grid": [2, 2], "head_width": 32}
SCENE = SceneConfig(width=48, height=48)


def model_config(**overrides) -> ModelConfig:
    return ModelConfig(spatial=dict(SPATIAL), **overrides)


def run_config(output_dir, **overrides) -> RunConfig:
    defaults = {"max_steps": 4, "batch_size": 2, "save_every": 0, "progress_bar": False}
    return RunConfig(output_dir=str(output_dir), **{**defaults, **overrides})


def optim_config(**overrides) -> OptimConfig:
    return OptimConfig(**{"lr": 2e-3, "warmup_steps": 0, "eps": 1e-8, **overrides})
