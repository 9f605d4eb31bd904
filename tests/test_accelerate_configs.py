from pathlib import Path

import pytest

config_args = pytest.importorskip("accelerate.commands.config.config_args")

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "accelerate"


@pytest.mark.parametrize(
    ("name", "kind", "zero_stage"),
    [
        ("ddp", "MULTI_GPU", None),
        ("fsdp2", "FSDP", None),
        ("zero2", "DEEPSPEED", 2),
        ("zero3", "DEEPSPEED", 3),
    ],
)
def test_shipped_accelerate_configs_load_in_accelerate(name, kind, zero_stage):
    config = config_args.load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    assert config.distributed_type == kind and config.mixed_precision == "bf16"
    assert config.num_processes == 8 and not config.use_cpu
    if zero_stage is not None:
        assert config.deepspeed_config["zero_stage"] == zero_stage
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2
