"""Named configurations: `tiny` (CPU tests in seconds) and `bagel-7b-mot` (the released shapes)."""

from __future__ import annotations

from collections.abc import Callable

from cooper_lib.models.cooper.config import AutoencoderConfig, CooperConfig, LLMConfig, ViTConfig


def _tiny() -> CooperConfig:
    """Every part at toy width, with BAGEL's structure (2 experts, GQA, q/k norms, 4-level autoencoder)."""
    return CooperConfig(
        llm=LLMConfig(
            vocab_size=128,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
        ),
        vit=ViTConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=4
        ),
        vae=AutoencoderConfig(
            base_channels=8, channel_multipliers=(1, 2, 2, 2), num_res_blocks=1, norm_groups=4
        ),
        max_latent_size=8,
        vit_max_num_patch_per_side=16,
        bos_token_id=1,
        eos_token_id=2,
        vision_start_id=3,
        vision_end_id=4,
    )


def _bagel_7b_mot() -> CooperConfig:
    """BAGEL-7B-MoT (and COOPER): Qwen2.5-7B twice (two experts), SigLIP so400m (26 layers), FLUX AE."""
    return CooperConfig()


PRESETS: dict[str, Callable[[], CooperConfig]] = {"tiny": _tiny, "bagel-7b-mot": _bagel_7b_mot}


def preset(name: str) -> CooperConfig:
    """A fresh `CooperConfig` for a preset name."""
    if name not in PRESETS:
        raise ValueError(f"name: expected one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name]()
