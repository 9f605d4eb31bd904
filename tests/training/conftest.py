"""Fixtures of the training tests: small synthetic datasets, written once per session."""

from __future__ import annotations

import pytest
from training_setup import SCENE

from cooper_lib.data.synthetic import write_dataset


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """Dataset folders per stage: stage1 (12 scenes, 24 records), sft and grpo (8 scenes each)."""
    root = tmp_path_factory.mktemp("synthetic")
    return {
        "stage1": write_dataset(root / "stage1", 12, seed=0, stage="stage1", config=SCENE),
        "sft": write_dataset(root / "sft", 8, seed=1, stage="sft", config=SCENE, tool_ratio=1.0),
        "grpo": write_dataset(root / "grpo", 8, seed=2, stage="grpo", config=SCENE, questions_per_scene=2),
    }
