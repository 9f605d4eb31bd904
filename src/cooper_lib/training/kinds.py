"""Model kinds: everything the training loop needs to know about the model it trains, in one place.

The three trainers run two kinds of model: a `SpatialModel` (a transformers MLLM with cooper-lib's
heads; `SpatialKind`) and the reference assembly, `CooperModel` (BAGEL's architecture; `CooperKind`).
`model_kind` picks the kind once, in `Trainer.__init__`; the loop, the checkpoints and the stages
then ask the kind instead of testing the model's type:

    set-up        configure (which weights train), parameter_groups, gradient checkpointing
    files         save_model (``final/`` and a checkpoint's ``model/``), state_from_folder (resuming)
    stage 1, SFT  stage1_collator / sft_collator (records -> micro-batches), supervised_module,
                  supervised_loss, evaluate_batch, metric names
    GRPO          rollout_reasoner, policy_module, rollout_logprobs

A `CooperModel`'s folders are release folders (`CooperModel.from_pretrained` reads ``final/``
key for key) with its tokenizer (`cooper_lib.models.cooper.load_tokenizer`) and ``trainable.json``.
"""

from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import SuppressTokensLogitsProcessor

from cooper_lib import folder
from cooper_lib.data.turns import TurnFormat
from cooper_lib.heads.flow import FlowHead
from cooper_lib.loading import TRAINABLE_NAME
from cooper_lib.model import SpatialModel, SpatialOutput
from cooper_lib.models.cooper import (
    PRESETS,
    ROLLOUT_SAMPLING,
    CooperModel,
    load_tokenizer,
    preset,
    read_weights,
    save_tokenizer,
)
from cooper_lib.reasoning import InterleavedReasoner, ReasoningTrace, SamplingConfig
from cooper_lib.reasoning.cooper import CooperReasoner
from cooper_lib.training.collators import SFTCollator, Stage1Collator
from cooper_lib.training.config import ModelConfig
from cooper_lib.training.cooper import CooperObjective, CooperPolicyScorer
from cooper_lib.training.cooper_data import CooperBatch, CooperSFTCollator, CooperStage1Collator
from cooper_lib.training.policy_loss import token_logprobs
from cooper_lib.training.precision import enable_gradient_checkpointing
from cooper_lib.training.trainable import TrainableSummary, configure_trainable
from cooper_lib.training.trainable import parameter_groups as spatial_parameter_groups
from cooper_lib.training.weights import save_model, state_from_folder

__all__ = [
    "CooperKind",
    "build_cooper_model",
    "ModelKind",
    "PolicyScorer",
    "SpatialKind",
    "model_kind",
    "rollout_perceive_options",
    "to_device",
]


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` (a tensor, or dicts / lists / tuples of them) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class ModelKind(abc.ABC):
    """The model-specific half of training; `model` is the unwrapped model."""

    #: short name (``"spatial"``, ``"cooper"``) recorded in ``trainable.json``
    name: str = ""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    # ------------------------------------------------------------------ set-up
    @abc.abstractmethod
    def configure(self, config: ModelConfig) -> TrainableSummary:
        """Set `requires_grad` everywhere from ``config`` and say what trains."""

    @abc.abstractmethod
    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW parameter groups of the trainable weights."""

    @abc.abstractmethod
    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in backward (``model.gradient_checkpointing``)."""

    # ------------------------------------------------------------------ files
    @abc.abstractmethod
    def save_model(
        self, directory: Path, state: dict[str, torch.Tensor], config: ModelConfig, lora: dict | None
    ) -> Path:
        """Write the model folder from a gathered trainable `state` (names of the unwrapped model)."""

    @abc.abstractmethod
    def state_from_folder(self, directory: Path, module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
        """The trainable state saved by `save_model`, keyed like the gathered state (resuming)."""

    # ------------------------------------------------------------------ stage 1 and SFT
    @abc.abstractmethod
    def stage1_collator(self, config: Any) -> Callable[[Sequence[Any]], Any]:
        """Stage-1 records -> one micro-batch (a `Stage1Config`'s settings)."""

    @abc.abstractmethod
    def sft_collator(self, config: Any) -> Callable[[Sequence[Any]], Any]:
        """SFT records -> one micro-batch (an `SFTConfig`'s settings)."""

    @abc.abstractmethod
    def check_stage1_modalities(self, modalities: set[str]) -> None:
        """ValueError when the model cannot generate one of the records' modalities."""

    def supervised_module(self) -> nn.Module:
        """What `Accelerator.prepare` wraps in the supervised stages."""
        return self.model

    @abc.abstractmethod
    def supervised_loss(
        self, module: nn.Module, batch: Any, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one micro-batch through the (wrapped) `module`, and metrics to log."""

    @abc.abstractmethod
    def supervised_metric_names(self) -> list[str]:
        """Every metric `supervised_loss` may return besides ``loss``."""

    @abc.abstractmethod
    def evaluate_batch(
        self, module: nn.Module, batch: Any, device: torch.device, trainer: Any
    ) -> dict[str, float]:
        """Held-out metrics of one collated batch (``loss`` included)."""

    def map_metric_names(self, trainer: Any) -> list[str]:
        """Names of the map metrics `evaluate_batch` may add (default: none)."""
        return []

    def stage1_samples(self, trainer: Any, records: Sequence[Any]) -> list[Any]:
        """Stage-1 evaluation samples (`cooper_lib.training.tracking.Sample`) of held-out
        ``records`` (default: none; a `CooperModel` draws a map only by a full sampling run)."""
        return []

    # ------------------------------------------------------------------ GRPO
    @abc.abstractmethod
    def rollout_reasoner(self, config: Any, temperature: float, top_p: float, device: torch.device) -> Any:
        """The reasoner rollouts run (``temperature`` 0: greedy, for evaluation)."""

    @abc.abstractmethod
    def policy_module(self, model: nn.Module, temperature: float) -> nn.Module:
        """The module scoring rollouts of `model` (the policy, or the frozen KL reference)."""

    @abc.abstractmethod
    def rollout_logprobs(
        self, module: nn.Module, trace: ReasoningTrace, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`[1, T]` log-probs of one rollout's tokens through `module` (a `policy_module`) and the
        `[1, T]` mask of the tokens the policy sampled."""


# ---------------------------------------------------------------------------------------- SpatialModel
class PolicyScorer(nn.Module):
    """What the GRPO step runs under DDP: the `SpatialModel` and a forward that returns the
    log-probs of a context's tokens (so DDP sees every parameter the loss uses).

    The log-probs are those of the distribution the rollouts were sampled from: the logits divided
    by the sampling `temperature` (as COOPER's trainer does, after TRL). Dividing the hidden states
    and the bias by it divides the logits exactly; a backbone with logit soft-capping would need the
    division after the cap, so it takes temperature 1 only.
    """

    def __init__(self, spatial: SpatialModel, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature: expected a positive number, got {temperature}")
        if temperature != 1.0 and spatial.adapter.logit_softcap is not None:
            raise ValueError(
                f"temperature: the backbone soft-caps its logits, so its GRPO log-probs support only "
                f"temperature 1.0, got {temperature}"
            )
        self.spatial = spatial
        self.temperature = float(temperature)

    def forward(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """[B, T] log-probs of the tokens under `mask` (0 elsewhere) for model inputs `inputs`."""
        hidden = self.spatial.adapter.hidden_states(**inputs)
        head = self.spatial.adapter.output_embeddings()
        bias = getattr(head, "bias", None)
        if self.temperature != 1.0:
            hidden = hidden / self.temperature
            bias = None if bias is None else bias / self.temperature
        return token_logprobs(
            hidden,
            head.weight,
            inputs["input_ids"],
            mask,
            bias=bias,
            softcap=self.spatial.adapter.logit_softcap,
        )


def rollout_perceive_options(model: SpatialModel, config: Any) -> dict[str, dict[str, Any]]:
    """Per flow-head modality, the options its maps are sampled with in rollouts: the
    ``config.flow_preset`` settings (COOPER's "cooper-rollout": shift 3, text scale 4, interval
    [0.4, 1], global renorm) with ``config.image_steps`` time points. The image branch of guidance
    is off (``cfg_img_scale=1``): it needs query states computed without the image, which a
    rollout does not have. Heads that are not flow heads take no sampling options."""
    options: dict[str, dict[str, Any]] = {}
    for name, head in model.heads.items():
        if isinstance(head, FlowHead):
            preset = (
                {} if config.flow_preset is None else {"preset": config.flow_preset, "cfg_img_scale": 1.0}
            )
            options[name] = {**preset, "steps": config.image_steps}
    return options


class SpatialKind(ModelKind):
    """A `SpatialModel`: a transformers MLLM with cooper-lib's query blocks and heads."""

    name = "spatial"
    model: SpatialModel

    def configure(self, config: ModelConfig) -> TrainableSummary:
        return configure_trainable(self.model, config)

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return spatial_parameter_groups(self.model, weight_decay)

    def enable_gradient_checkpointing(self) -> None:
        enable_gradient_checkpointing(self.model.backbone)

    def save_model(
        self, directory: Path, state: dict[str, torch.Tensor], config: ModelConfig, lora: dict | None
    ) -> Path:
        return save_model(directory, self.model, state, config, lora)

    def state_from_folder(self, directory: Path, module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
        return state_from_folder(directory, module, self.model, prefix)

    def stage1_collator(self, config: Any) -> Stage1Collator:
        return Stage1Collator(self.model, config.target_size, config.lm_loss_on_tag)

    def sft_collator(self, config: Any) -> SFTCollator:
        return SFTCollator(
            self.model, config.system_prompt, config.supervise_maps, max_length=config.max_length
        )

    def check_stage1_modalities(self, modalities: set[str]) -> None:
        headless = sorted(modalities - set(self.model.config.modalities))
        if headless:
            raise ValueError(
                f"records: modalities {headless} have no head; the model has {list(self.model.config.modalities)}"
            )

    def supervised_loss(
        self, module: nn.Module, batch: Any, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        out: SpatialOutput = module(**to_device(batch, device))
        if out.loss is None:
            raise ValueError("batch: carries neither labels nor auxiliary targets; nothing to train")
        return out.loss, self.output_metrics(out)

    @staticmethod
    def output_metrics(out: SpatialOutput) -> dict[str, float]:
        metrics = {f"aux/{m}": float(v.detach()) for m, v in out.aux_losses.items()}
        if out.lm_loss is not None:
            metrics["lm_loss"] = float(out.lm_loss.detach())
        return metrics

    def supervised_metric_names(self) -> list[str]:
        return ["lm_loss", *(f"aux/{m}" for m in self.model.config.modalities)]

    def evaluate_batch(
        self, module: nn.Module, batch: Any, device: torch.device, trainer: Any
    ) -> dict[str, float]:
        batch = to_device(batch, device)
        out = module(**batch, return_maps=trainer.wants_maps)
        return {"loss": float(out.loss), **self.output_metrics(out), **trainer.map_metrics(batch, out)}

    def map_metric_names(self, trainer: Any) -> list[str]:
        return trainer.map_metric_names()

    def stage1_samples(self, trainer: Any, records: Sequence[Any]) -> list[Any]:
        return trainer.map_samples(records)

    def rollout_reasoner(self, config: Any, temperature: float, top_p: float, device: torch.device) -> Any:
        # placeholders stand for inputs the model cannot write: a sampled query token would be a
        # broken query block, a sampled image / video token an image without pixels
        spatial = self.model
        hf_config = spatial.adapter.config
        banned = [spatial.layout.query_id, spatial.adapter.image_token_id]
        video = getattr(hf_config, "video_token_id", None)
        banned += [int(video)] if video is not None else []
        sampling = SamplingConfig(temperature=temperature, top_p=top_p if temperature > 0 else 1.0)
        return InterleavedReasoner(
            spatial,
            max_turns=config.max_turns,
            max_new_tokens_per_turn=config.max_new_tokens,
            max_total_tokens=config.max_total_tokens,
            perceive_options=rollout_perceive_options(spatial, config),
            generation_kwargs=sampling,
            logits_processors=[SuppressTokensLogitsProcessor(banned, device=device)],
            return_inputs=True,
        )

    def policy_module(self, model: nn.Module, temperature: float) -> nn.Module:
        return PolicyScorer(model, temperature)

    def rollout_inputs(
        self, trace: ReasoningTrace, device: torch.device
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """A rollout's model inputs (floats in the model's dtype) and its `[1, T]` generated-token mask."""
        if trace.model_inputs is None or trace.generated_mask is None:
            raise ValueError(
                "trace: rollouts need return_inputs=True (model inputs and the generated-token mask)"
            )
        dtype = next(self.model.parameters()).dtype
        inputs = {
            k: v.to(device, dtype=dtype if v.is_floating_point() else None)
            for k, v in trace.model_inputs.items()
        }
        return inputs, trace.generated_mask[None].to(device)

    def rollout_logprobs(
        self, module: nn.Module, trace: ReasoningTrace, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, mask = self.rollout_inputs(trace, device)
        return module(inputs, mask), mask


# ---------------------------------------------------------------------------------------- CooperModel
class CooperKind(ModelKind):
    """The reference assembly (`CooperModel`) and its text tokenizer.

    Trainable weights (``model.llm``): ``full`` trains the decoder (both experts), the connector,
    the time embedder and ``vae2llm`` / ``llm2vae``; ``frozen`` trains only the generation side
    (the ``*_moe_gen`` expert, time embedder, ``vae2llm`` / ``llm2vae``), BAGEL's ``freeze_und``.
    The ViT follows ``model.freeze_vision`` and the autoencoder is always frozen (COOPER's recipe:
    vision encoder and VAE frozen, LLM trained). LoRA and 4-bit weights are plug-in settings and are
    refused; ``model.gradient_checkpointing`` checkpoints each MoT decoder layer.
    """

    name = "cooper"
    model: CooperModel

    def __init__(self, model: CooperModel, tokenizer: Any) -> None:
        super().__init__(model)
        if tokenizer is None or not hasattr(tokenizer, "encode"):
            raise TypeError(
                "tokenizer: a CooperModel trains with its text tokenizer (encode / decode; "
                f"cooper_lib.models.cooper.load_tokenizer), got {type(tokenizer).__name__}"
            )
        self.tokenizer = tokenizer

    def configure(self, config: ModelConfig) -> TrainableSummary:
        if config.llm == "lora" or config.quantization != "none":
            raise ValueError(
                f"model.llm / model.quantization: the reference assembly trains with llm full or frozen and "
                f"no quantization, got llm={config.llm!r}, quantization={config.quantization!r}"
            )
        model = self.model
        model.requires_grad_(True)
        model.vae.requires_grad_(False)
        model.vit_model.requires_grad_(not config.freeze_vision)
        if config.llm == "frozen":
            model.connector.requires_grad_(False)
            for name, param in model.language_model.named_parameters():
                param.requires_grad_("moe_gen" in name)
        params = list(model.parameters())
        return TrainableSummary(
            trainable=sum(p.numel() for p in params if p.requires_grad),
            total=sum(p.numel() for p in params),
            row_masked=(),
        )

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Decay on trainable matrices; none on biases, norms and the token embeddings."""
        embed = self.model.language_model.model.embed_tokens.weight
        decay, no_decay = [], []
        for param in self.model.parameters():
            if param.requires_grad:
                (no_decay if param.ndim < 2 or param is embed else decay).append(param)
        groups = [{"params": no_decay, "weight_decay": 0.0}]
        if decay:
            groups.insert(0, {"params": decay, "weight_decay": weight_decay})
        return groups

    def enable_gradient_checkpointing(self) -> None:
        """Per-layer activation checkpointing of the MoT decoder (non-reentrant)."""
        self.model.language_model.model.gradient_checkpointing = True

    def save_model(
        self, directory: Path, state: dict[str, torch.Tensor], config: ModelConfig, lora: dict | None
    ) -> Path:
        info = {
            "format": 2,
            "kind": self.name,
            "cooper": config.cooper,
            "dtype": config.dtype,
            "llm": config.llm,
            "freeze_vision": config.freeze_vision,
        }
        with folder.atomic_folder(directory) as tmp:
            self.model.save_pretrained(tmp, state=state)
            save_tokenizer(self.tokenizer, tmp)
            (tmp / TRAINABLE_NAME).write_text(json.dumps(info, indent=2) + "\n")
        return Path(directory)

    def state_from_folder(self, directory: Path, module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        return read_weights(directory, names)

    def stage1_collator(self, config: Any) -> CooperStage1Collator:
        if config.target_size is not None or config.lm_loss_on_tag:
            raise ValueError(
                "target_size / lm_loss_on_tag: plug-in head settings; the reference assembly generates maps at "
                "the image's VAE size and learns no text in stage 1"
            )
        return CooperStage1Collator(self.model.config, self.tokenizer)

    def check_stage1_modalities(self, modalities: set[str]) -> None:
        tagged = set(TurnFormat.default().tools)
        if modalities - tagged:
            raise ValueError(
                f"records: modalities {sorted(modalities - tagged)} have no tool tags; expected some of {sorted(tagged)}"
            )

    def sft_collator(self, config: Any) -> CooperSFTCollator:
        return CooperSFTCollator(
            self.model.config, self.tokenizer, config.system_prompt, config.supervise_maps, config.max_length
        )

    def supervised_module(self) -> nn.Module:
        return CooperObjective(self.model)

    def supervised_loss(
        self, module: nn.Module, batch: CooperBatch, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        loss, parts = module(batch)
        return loss, {k: float(v) for k, v in parts.items()}

    def supervised_metric_names(self) -> list[str]:
        return ["flow_loss", "lm_loss"]

    def evaluate_batch(
        self, module: nn.Module, batch: Any, device: torch.device, trainer: Any
    ) -> dict[str, float]:
        loss, parts = module(batch)
        return {"loss": float(loss), **{k: float(v) for k, v in parts.items()}}

    def rollout_reasoner(self, config: Any, temperature: float, top_p: float, device: torch.device) -> Any:
        if temperature > 0 and top_p != 1.0:
            raise ValueError(
                f"top_p: the reference assembly's rollouts sample the full distribution (1.0), got {top_p}"
            )
        sampling = dataclasses.replace(ROLLOUT_SAMPLING, num_timesteps=config.image_steps)
        return CooperReasoner(
            self.model,
            self.tokenizer,
            max_turns=config.max_turns,
            max_new_tokens_per_turn=config.max_new_tokens,
            max_total_tokens=config.max_total_tokens,
            temperature=temperature,
            sampling=sampling,
        )

    def policy_module(self, model: nn.Module, temperature: float) -> nn.Module:
        return CooperPolicyScorer(model, temperature)

    def rollout_logprobs(
        self, module: nn.Module, trace: ReasoningTrace, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return module([trace])


def build_cooper_model(config: ModelConfig) -> tuple[CooperModel, Any]:
    """The `CooperModel` and tokenizer ``config.cooper`` names: a preset (fresh weights from the
    current seed; ``tiny`` with its `CharTokenizer`) or a release folder (`CooperModel.from_pretrained`
    in ``config.dtype``, with the folder's tokenizer)."""
    config.validate()
    if config.cooper is None:
        raise ValueError("model.cooper: expected a preset name or a release folder, got None")
    dtype = getattr(torch, config.dtype)
    if config.cooper in PRESETS:
        model = CooperModel(preset(config.cooper)).to(dtype)
    elif Path(config.cooper).is_dir():
        model = CooperModel.from_pretrained(config.cooper, dtype=dtype)
    else:
        raise ValueError(
            f"model.cooper: expected a preset ({', '.join(sorted(PRESETS))}) or a release folder, "
            f"got {config.cooper!r} (no such folder)"
        )
    return model, load_tokenizer(config.cooper)


def model_kind(model: Any, tokenizer: Any = None) -> ModelKind:
    """The kind of `model`: a `SpatialModel`, a `CooperModel` (with its `tokenizer`), or a
    `ModelKind` given as is. TypeError for anything else."""
    if isinstance(model, ModelKind):
        return model
    if isinstance(model, SpatialModel):
        return SpatialKind(model)
    if isinstance(model, CooperModel):
        return CooperKind(model, tokenizer)
    hint = " (wrap a backbone with add_spatial_heads first)" if isinstance(model, nn.Module) else ""
    raise TypeError(f"model: expected a SpatialModel or a CooperModel, got {type(model).__name__}{hint}")
