"""The FLUX autoencoder, with the parameter names of `ae.safetensors` (BAGEL ships FLUX's file as is).

Written here rather than taken from diffusers: diffusers' `AutoencoderKL` names the same weights
differently (`down_blocks.N.resnets.M` against FLUX's `down.N.block.M`, `mid_block.attentions.0.to_q`
against `mid.attn_1.q`), so loading the released file through it needs a key map and a reshape of the
attention weights, and diffusers is a large optional dependency. The network is small: conv-in, per
level `num_res_blocks` ResNet blocks and a stride-2 downsample (asymmetric zero pad), a middle of
ResNet + single-head self-attention + ResNet, GroupNorm + swish + conv-out to mean and log-variance.
The decoder mirrors it with one more ResNet block per level and nearest upsampling.

`encode(x [B, 3, H, W] in [-1, 1]) -> [B, 16, H/8, W/8]` returns `scale * (z - shift)` with `z` the
mean (or a sample when `sample=True`, as BAGEL trains); `decode` inverts the affine map and decodes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cooper_lib.models.cooper.config import AutoencoderConfig

__all__ = ["Autoencoder", "autoencoder_config_from_shapes"]


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1 = _norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = _norm(c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, 1x1 convolutions for q, k, v and the output."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = _norm(channels, groups)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (
            m(y).flatten(2).transpose(1, 2)[:, None] for m in (self.q, self.k, self.v)
        )  # [B, 1, HW, C]
        y = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(y)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _middle(channels: int, groups: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, groups)
    mid.attn_1 = AttnBlock(channels, groups)
    mid.block_2 = ResnetBlock(channels, channels, groups)
    return mid


def _run_middle(mid: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return mid.block_2(mid.attn_1(mid.block_1(h)))


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_multipliers]
        g = cfg.norm_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        c = cfg.base_channels
        for level, width in enumerate(widths):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                stage.block.append(ResnetBlock(c, width, g))
                c = width
            if level != len(widths) - 1:
                stage.downsample = Downsample(c)
            self.down.append(stage)
        self.mid = _middle(c, g)
        self.norm_out = _norm(c, g)
        self.conv_out = nn.Conv2d(c, 2 * cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = _run_middle(self.mid, h)
        return self.conv_out(F.silu(self.norm_out(h)))  # [B, 2 z, H/8, W/8]: mean, log-variance


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_multipliers]
        g = cfg.norm_groups
        c = widths[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, c, 3, padding=1)
        self.mid = _middle(c, g)
        stages = []
        for level in reversed(range(len(widths))):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                stage.block.append(ResnetBlock(c, widths[level], g))
                c = widths[level]
            if level != 0:
                stage.upsample = Upsample(c)
            stages.insert(0, stage)
        self.up = nn.ModuleList(stages)  # indexed by level, run from the deepest
        self.norm_out = _norm(c, g)
        self.conv_out = nn.Conv2d(c, cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = _run_middle(self.mid, self.conv_in(z))
        for stage in reversed(self.up):
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Autoencoder(nn.Module):
    """FLUX's KL autoencoder (16 latent channels, downsample 8) with its latent affine map."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def encode(
        self, x: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Images `[B, 3, H, W]` in [-1, 1] (H, W multiples of the downsample) -> latents `[B, z, H/8, W/8]`."""
        d = self.config.downsample
        if x.ndim != 4 or x.shape[-1] % d or x.shape[-2] % d:
            raise ValueError(f"x: expected [B, C, H, W] with H and W multiples of {d}, got {tuple(x.shape)}")
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        z = mean
        if sample:
            where = generator.device if generator is not None else mean.device
            noise = torch.randn(mean.shape, generator=generator, device=where, dtype=mean.dtype).to(
                mean.device
            )
            z = mean + torch.exp(0.5 * logvar) * noise
        return self.config.scale_factor * (z - self.config.shift_factor)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latents `[B, z, h, w]` -> images `[B, 3, 8h, 8w]` (about [-1, 1])."""
        return self.decoder(latent / self.config.scale_factor + self.config.shift_factor)


def autoencoder_config_from_shapes(shapes: dict[str, tuple[int, ...]], **fixed) -> AutoencoderConfig:
    """Read the widths of a FLUX-layout autoencoder off its tensor shapes (no file records them).

    `shapes` maps `ae.safetensors` keys to shapes; `fixed` sets what shapes cannot tell (scale,
    shift, norm groups). Raises ValueError naming the key when an expected tensor is absent.
    """

    def shape(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise ValueError(f"ae.safetensors: missing key {key!r}, needed to read the autoencoder's widths")
        return tuple(shapes[key])

    base, in_channels = shape("encoder.conv_in.weight")[:2]
    levels = len({k.split(".")[2] for k in shapes if k.startswith("encoder.down.")})
    blocks = len({k.split(".")[4] for k in shapes if k.startswith("encoder.down.0.block.")})
    widths = [shape(f"encoder.down.{i}.block.0.conv1.weight")[0] for i in range(levels)]
    if any(w % base for w in widths):
        raise ValueError(f"ae.safetensors: level widths {widths} are not multiples of conv_in's {base}")
    return AutoencoderConfig(
        in_channels=in_channels,
        out_channels=shape("decoder.conv_out.weight")[0],
        base_channels=base,
        channel_multipliers=tuple(w // base for w in widths),
        num_res_blocks=blocks,
        z_channels=shape("decoder.conv_in.weight")[1],
        **fixed,
    )
