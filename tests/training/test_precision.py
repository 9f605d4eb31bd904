import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn
from training_setup import model_config, optim_config, run_config

from cooper_lib.loading import load_backbone
from cooper_lib.training.config import ModelConfig, RunConfig, Stage1Config
from cooper_lib.training.precision import enable_gradient_checkpointing, warn_low_precision


def _checkpointing(backbone) -> bool:
    return getattr(backbone, "is_activation_checkpointing", None) or backbone.is_gradient_checkpointing


def test_bf16_weights_with_a_small_lr_warn_and_fp32_weights_do_not():
    bf16 = nn.Linear(4, 4).to(torch.bfloat16)
    with pytest.warns(
        UserWarning, match=r"optim.lr=5e-06 with trainable weights in low precision \(20 bfloat16"
    ):
        assert warn_low_precision(bf16, 5e-6) == ["bfloat16"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_low_precision(nn.Linear(4, 4), 5e-6) == []
        assert warn_low_precision(bf16, 1e-3) == ["bfloat16"]  # large lr: updates survive rounding
        assert warn_low_precision(bf16.requires_grad_(False), 5e-6) == []  # frozen: nothing to lose


def test_gradient_checkpointing_switch_reaches_the_backbone():
    backbone, _ = load_backbone("tiny:qwen2_vl")
    enable_gradient_checkpointing(backbone)
    assert _checkpointing(backbone) and backbone.config.use_cache is False
    with pytest.raises(TypeError, match="does not support gradient checkpointing"):
        enable_gradient_checkpointing(nn.Linear(2, 2))


def test_mixed_precision_defaults_to_the_launchers_choice():
    assert RunConfig().mixed_precision is None
    assert Stage1Config.from_dict({"run": {"mixed_precision": None}}).run.mixed_precision is None
    with pytest.raises(ValueError, match="run.mixed_precision"):
        Stage1Config.from_dict({"run": {"mixed_precision": "fp8"}})


def test_an_unset_mixed_precision_takes_accelerate_launchs(synthetic, tmp_path):
    """A fresh process (accelerate's state is per process) with the variable `accelerate launch
    --mixed_precision bf16` sets: the trainer's Accelerator autocasts in bf16."""
    code = (
        "import sys; sys.path.insert(0, 'tests/training')\n"
        "from training_setup import model_config, optim_config, run_config\n"
        "from cooper_lib.training.config import Stage1Config\n"
        "from cooper_lib.training.stage1 import Stage1Trainer\n"
        "from cooper_lib.training.weights import build_model\n"
        f"config = Stage1Config(model=model_config(), optim=optim_config(), run=run_config({str(tmp_path)!r}, cpu=True),"
        f" data=[{str(synthetic['stage1'] / 'records.jsonl')!r}])\n"
        "print(Stage1Trainer(build_model(config.model), config).accelerator.mixed_precision)\n"
    )
    env = {**__import__("os").environ, "ACCELERATE_MIXED_PRECISION": "bf16"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "bf16"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"quantization": "8bit"}, "model.quantization: expected one of"),
        ({"quantization": "4bit", "llm": "full"}, "set model.llm to lora"),
    ],
)
def test_quantization_is_validated(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**fields).validate()


def test_four_bit_loading_fails_clearly_without_its_requirements():
    with pytest.raises(ValueError, match="tiny backbones are built in memory"):
        load_backbone("tiny:qwen2_vl", quantization="4bit")
    with pytest.raises(ValueError, match="quantization: expected 'none' or '4bit'"):
        load_backbone("tiny:qwen2_vl", quantization="8bit")
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the missing-requirement errors cannot be shown here")
    with pytest.raises((ImportError, ValueError), match="bitsandbytes|CUDA"):
        load_backbone("some/local-model", quantization="4bit")


def test_stage_trainer_builds_with_checkpointing_switch(synthetic, tmp_path):
    from cooper_lib.training.stage1 import Stage1Trainer
    from cooper_lib.training.weights import build_model

    config = Stage1Config(
        model=model_config(gradient_checkpointing=True),
        optim=optim_config(),
        run=run_config(tmp_path, max_steps=2),
        data=[str(synthetic["stage1"] / "records.jsonl")],
    )
    trainer = Stage1Trainer(build_model(config.model), config)
    assert _checkpointing(trainer.spatial.backbone)
    result = trainer.train()
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
