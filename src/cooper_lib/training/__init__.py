"""The two-stage trainer: auxiliary-modality generation, interleaved SFT, and GRPO with the CPR reward.

All three run on one compact accelerate loop (`Trainer`), so ``accelerate launch`` and ``torchrun``
give DDP, FSDP and DeepSpeed without code of ours; checkpoints are atomic folders of safetensors
and JSON that resume the same trajectory.
"""

from typing import TYPE_CHECKING

from cooper_lib.lazy import lazy_exports

if TYPE_CHECKING:
    from cooper_lib.data.records import load_sft_records, load_stage1_records
    from cooper_lib.training.collators import SFTCollator, Stage1Collator
    from cooper_lib.training.config import (
        GRPOConfig,
        ModelConfig,
        OptimConfig,
        RunConfig,
        SFTConfig,
        Stage1Config,
    )
    from cooper_lib.training.ema import EMA
    from cooper_lib.training.grpo import SpatialGRPOTrainer
    from cooper_lib.training.judges import OpenAIJudge, Reference, RuleJudge
    from cooper_lib.training.loop import Trainer, TrainResult
    from cooper_lib.training.policy_loss import clipped_policy_loss, group_advantages, token_logprobs
    from cooper_lib.training.records import load_qa_records
    from cooper_lib.training.rewards import (
        CPRRewards,
        accuracy_reward,
        cpr_reward,
        exploration_rewards,
        format_reward,
    )
    from cooper_lib.training.sampler import MixtureSampler
    from cooper_lib.training.sft import InterleavedSFTTrainer
    from cooper_lib.training.stage1 import Stage1Trainer
    from cooper_lib.training.trainable import configure_trainable
    from cooper_lib.training.weights import build_model, load_trained_model

__all__ = [
    "EMA",
    "CPRRewards",
    "GRPOConfig",
    "SpatialGRPOTrainer",
    "InterleavedSFTTrainer",
    "MixtureSampler",
    "ModelConfig",
    "OpenAIJudge",
    "OptimConfig",
    "Reference",
    "RuleJudge",
    "RunConfig",
    "SFTCollator",
    "SFTConfig",
    "Stage1Collator",
    "Stage1Config",
    "Stage1Trainer",
    "TrainResult",
    "Trainer",
    "accuracy_reward",
    "build_model",
    "clipped_policy_loss",
    "configure_trainable",
    "cpr_reward",
    "exploration_rewards",
    "format_reward",
    "group_advantages",
    "load_qa_records",
    "load_sft_records",
    "load_stage1_records",
    "load_trained_model",
    "token_logprobs",
]

#: Public name -> the module defining it (None: a submodule); imported on first access.
_EXPORTS = {
    "load_sft_records": "cooper_lib.data.records",
    "load_stage1_records": "cooper_lib.data.records",
    "SFTCollator": "cooper_lib.training.collators",
    "Stage1Collator": "cooper_lib.training.collators",
    "GRPOConfig": "cooper_lib.training.config",
    "ModelConfig": "cooper_lib.training.config",
    "OptimConfig": "cooper_lib.training.config",
    "RunConfig": "cooper_lib.training.config",
    "SFTConfig": "cooper_lib.training.config",
    "Stage1Config": "cooper_lib.training.config",
    "EMA": "cooper_lib.training.ema",
    "SpatialGRPOTrainer": "cooper_lib.training.grpo",
    "OpenAIJudge": "cooper_lib.training.judges",
    "Reference": "cooper_lib.training.judges",
    "RuleJudge": "cooper_lib.training.judges",
    "Trainer": "cooper_lib.training.loop",
    "TrainResult": "cooper_lib.training.loop",
    "clipped_policy_loss": "cooper_lib.training.policy_loss",
    "group_advantages": "cooper_lib.training.policy_loss",
    "token_logprobs": "cooper_lib.training.policy_loss",
    "load_qa_records": "cooper_lib.training.records",
    "CPRRewards": "cooper_lib.training.rewards",
    "accuracy_reward": "cooper_lib.training.rewards",
    "cpr_reward": "cooper_lib.training.rewards",
    "exploration_rewards": "cooper_lib.training.rewards",
    "format_reward": "cooper_lib.training.rewards",
    "MixtureSampler": "cooper_lib.training.sampler",
    "InterleavedSFTTrainer": "cooper_lib.training.sft",
    "Stage1Trainer": "cooper_lib.training.stage1",
    "configure_trainable": "cooper_lib.training.trainable",
    "build_model": "cooper_lib.training.weights",
    "load_trained_model": "cooper_lib.training.weights",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
