"""Stage-1 training rows as COOPER packs them: image in, instruction, auxiliary map out.

Each sample is the question image as a clean latent (VAE) and as ViT tokens, the instruction as
`<|im_start|> ids <|im_end|>`, then the target pseudo-image (depth or segmentation as RGB) as a
noised latent split, the only thing the loss reads (`CooperModel.stage1_loss`). The three
conditions are dropped independently for classifier-free guidance, with BAGEL's probabilities
(text 0.1, ViT 0.4, VAE 0.1); a dropped image still advances the RoPE position, a dropped text
does not, as in BAGEL's packing. Latents are sampled from the autoencoder's posterior (BAGEL
trains so); pass `sample_latents=False` for the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cooper_lib.models.cooper.modeling import CooperModel
from cooper_lib.models.cooper.packing import PackedSequence, SequenceBuilder


@dataclass(frozen=True)
class ConditionDropout:
    """Probability of dropping each condition of a stage-1 sample (BAGEL's defaults)."""

    text: float = 0.1
    vit: float = 0.4
    vae: float = 0.1

    def __post_init__(self) -> None:
        for name in ("text", "vit", "vae"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1], got {getattr(self, name)}")


NO_DROPOUT = ConditionDropout(0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Stage1Sample:
    """One stage-1 example.

    Attributes:
        vit_pixels: the question image for the ViT, `[3, H, W]` in [-1, 1] (sides multiples of 14).
        vae_pixels: the question image for the autoencoder, `[3, H', W']` in [-1, 1] (multiples of 16).
        target_pixels: the auxiliary map as an RGB pseudo-image, `[3, H', W']` in [-1, 1].
        instruction_ids: token ids of the instruction, without the `<|im_start|>` / `<|im_end|>` frame.
    """

    vit_pixels: torch.Tensor
    vae_pixels: torch.Tensor
    target_pixels: torch.Tensor
    instruction_ids: tuple[int, ...]


@torch.no_grad()
def _encode(
    model: CooperModel, pixels: torch.Tensor, sample: bool, generator: torch.Generator | None
) -> torch.Tensor:
    vae = model.vae
    weight = next(vae.parameters())
    x = pixels[None].to(device=weight.device, dtype=weight.dtype)
    return vae.encode(x, sample=sample, generator=generator)[0].float()  # [16, h, w]


def stage1_sequence(
    model: CooperModel,
    samples: list[Stage1Sample],
    *,
    dropout: ConditionDropout = ConditionDropout(),
    sample_latents: bool = True,
    generator: torch.Generator | None = None,
) -> PackedSequence:
    """Pack `samples` into one row for `CooperModel.stage1_loss` (CPU tensors; `.to(device)` it)."""
    if not samples:
        raise ValueError("samples: expected at least one Stage1Sample, got none")
    cfg = model.config
    builder = SequenceBuilder(cfg)

    def keep(p: float) -> bool:
        where = generator.device if generator is not None else "cpu"
        return bool(torch.rand((), generator=generator, device=where) >= p)

    for s in samples:
        builder.new_sample()
        if keep(dropout.vae):
            builder.latent(_encode(model, s.vae_pixels, sample_latents, generator))
        else:
            builder.skip_position()
        if keep(dropout.vit):
            builder.image(s.vit_pixels)
        else:
            builder.skip_position()
        if keep(dropout.text):
            builder.text([cfg.bos_token_id, *s.instruction_ids, cfg.eos_token_id])
        builder.latent(_encode(model, s.target_pixels, sample_latents, generator), noised=True)
    return builder.build()
