"""`CooperConfig`: the shapes of the BAGEL-style unified model, as dataclasses that round-trip through JSON.

Three sub-configs mirror the three parts of a BAGEL checkpoint: `LLMConfig` (the Qwen2 decoder with
two experts per layer, `llm_config.json`), `ViTConfig` (the SigLIP encoder, `vit_config.json`) and
`AutoencoderConfig` (the FLUX autoencoder; no file records it, its widths are read off the shapes in
`ae.safetensors`). `CooperConfig` adds what BAGEL's code fixes as constants: latent patch size,
position-table sizes, connector activation, timestep shift and the four special token ids.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from transformers import Qwen2Config, SiglipVisionConfig

CONFIG_NAME = "cooper_model_config.json"


def _from_dict(cls, data: dict[str, Any], what: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{what}: unknown fields {unknown}; expected a subset of {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass
class LLMConfig:
    """The Qwen2 decoder. Every layer holds an understanding and a generation expert (mixture of
    transformers); q/k RMS norms and untied embeddings are always on (BAGEL's loaders force them)."""

    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 32768
    hidden_act: str = "silu"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size: expected a multiple of num_attention_heads={self.num_attention_heads}, "
                f"got {self.hidden_size}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads: expected a divisor of num_attention_heads={self.num_attention_heads}, "
                f"got {self.num_key_value_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_qwen2(self) -> Qwen2Config:
        """The transformers config its Qwen2 building blocks (MLP, RoPE, attention) are built from."""
        return Qwen2Config(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            rms_norm_eps=self.rms_norm_eps,
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
            max_position_embeddings=self.max_position_embeddings,
            hidden_act=self.hidden_act,
            tie_word_embeddings=False,
        )


@dataclass
class ViTConfig:
    """The SigLIP encoder as BAGEL stores it: learned position table, no 2-D RoPE, no pooling head.
    `num_hidden_layers` counts the layers *used and stored* (26 for so400m, whose file says 27)."""

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 26
    num_attention_heads: int = 16
    patch_size: int = 14
    num_channels: int = 3
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu_pytorch_tanh"

    def to_siglip(self, max_patches_per_side: int) -> SiglipVisionConfig:
        """The transformers config of the encoder; its position table is `max_patches_per_side`^2 rows."""
        return SiglipVisionConfig(
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            patch_size=self.patch_size,
            num_channels=self.num_channels,
            image_size=self.patch_size * max_patches_per_side,
            layer_norm_eps=self.layer_norm_eps,
            hidden_act=self.hidden_act,
            vision_use_head=False,
            attn_implementation="sdpa",
        )


@dataclass
class AutoencoderConfig:
    """The FLUX autoencoder: `latent = scale_factor * (z - shift_factor)`, downsample 2^(levels - 1)."""

    in_channels: int = 3
    out_channels: int = 3
    base_channels: int = 128
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 16
    scale_factor: float = 0.3611
    shift_factor: float = 0.1159
    norm_groups: int = 32

    def __post_init__(self) -> None:
        self.channel_multipliers = tuple(self.channel_multipliers)
        for m in self.channel_multipliers:
            if (self.base_channels * m) % self.norm_groups:
                raise ValueError(
                    f"norm_groups: expected a divisor of every width base_channels * m "
                    f"({self.base_channels} x {self.channel_multipliers}), got {self.norm_groups}"
                )

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channel_multipliers) - 1)


@dataclass
class CooperConfig:
    """The whole BAGEL-style model.

    Attributes:
        llm, vit, vae: the three parts (see their classes).
        latent_patch_size: a latent token is a `p x p` patch of the autoencoder latent
            (`p * p * z_channels` dims, 64 for BAGEL).
        max_latent_size: side of the latent position table (latent tokens per side at most).
        vit_max_num_patch_per_side: side of the ViT position tables (70 for BAGEL: 980 px).
        connector_act: activation between the connector's two linear layers.
        timestep_shift: default shift `s t / (1 + (s - 1) t)` of the sampler's time grid.
        bos_token_id, eos_token_id, vision_start_id, vision_end_id: Qwen2.5's `<|im_start|>`,
            `<|im_end|>`, `<|vision_start|>`, `<|vision_end|>`; an image segment in the packed
            sequence is framed by the last two.
    """

    llm: LLMConfig = field(default_factory=LLMConfig)
    vit: ViTConfig = field(default_factory=ViTConfig)
    vae: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    latent_patch_size: int = 2
    max_latent_size: int = 64
    vit_max_num_patch_per_side: int = 70
    connector_act: str = "gelu_pytorch_tanh"
    timestep_shift: float = 3.0
    bos_token_id: int = 151644
    eos_token_id: int = 151645
    vision_start_id: int = 151652
    vision_end_id: int = 151653

    def __post_init__(self) -> None:
        for name in ("bos_token_id", "eos_token_id", "vision_start_id", "vision_end_id"):
            value = getattr(self, name)
            if not 0 <= value < self.llm.vocab_size:
                raise ValueError(f"{name}: expected an id in [0, {self.llm.vocab_size}), got {value}")

    @property
    def latent_dim(self) -> int:
        """Dims of one latent token: `p * p * z_channels`."""
        return self.latent_patch_size**2 * self.vae.z_channels

    @property
    def latent_downsample(self) -> int:
        """Pixels per latent token side: autoencoder downsample times latent patch size (16)."""
        return self.vae.downsample * self.latent_patch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CooperConfig:
        data = dict(data)
        parts = {
            "llm": _from_dict(LLMConfig, data.pop("llm", {}), "llm"),
            "vit": _from_dict(ViTConfig, data.pop("vit", {}), "vit"),
            "vae": _from_dict(AutoencoderConfig, data.pop("vae", {}), "vae"),
        }
        return _from_dict(cls, {**data, **parts}, "CooperConfig")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CooperConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
