"""In-sequence generation of an auxiliary map (depth, segmentation) as BAGEL / COOPER sample it.

The map is a latent image generated *inside* the packed sequence: after the context (the question
image, the instruction, the reasoning so far) comes a noise split of `rows x cols` latent tokens that
the model denoises by Euler steps of its predicted velocity, from t = 1 (noise) to t = 0:

    t_i = shift(linspace(1, 0, num_timesteps))      shift(t) = s t / (1 + (s - 1) t), s = 3
    x  <- x - v(x, t_i) (t_i - t_{i+1})             num_timesteps - 1 updates (50 -> 49)

Two-condition classifier-free guidance (BAGEL's `_forward_flow`) for steps with lo < t <= hi:
three branches see the same noise split after three contexts: the full one (v), the one without the
last text (v_t: BAGEL snapshots the context before each text item, after each image), and the one
without images (v_i: text items only). With scales s_t (text) and s_i (image):
- `text_channel`: v' = v_t + s_t (v - v_t), re-scaled per token to at most |v|; then
  v <- v_i + s_i (v' - v_i);
- `global` / `channel`: v'' = v_i + s_i (v_t + s_t (v - v_t) - v_i), re-scaled to at most |v| over
  the whole map (global) or per token (channel).
Re-scaling factors are clamped to [renorm_min, 1]. As upstream, no guidance happens unless s_t > 1.
The three branches are three samples of one packed row, so each step is one decoder call over the
noise splits against the cached contexts (`batch_branches=False` runs them one by one instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cooper_lib.heads.sampler import shift_timesteps
from cooper_lib.models.cooper.modeling import CooperModel
from cooper_lib.models.cooper.packing import Image, Item, Latent, SequenceBuilder, Text, unpatchify

RENORM_TYPES = ("global", "channel", "text_channel")


@dataclass(frozen=True)
class CooperSampling:
    """Sampler settings; defaults are COOPER's evaluation settings (`EVAL_SAMPLING`)."""

    num_timesteps: int = 50
    timestep_shift: float = 3.0
    cfg_text_scale: float = 4.0
    cfg_img_scale: float = 2.0
    cfg_interval: tuple[float, float] = (0.0, 1.0)
    cfg_renorm_type: str = "text_channel"
    cfg_renorm_min: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.num_timesteps, int) or self.num_timesteps < 2:
            raise ValueError(f"num_timesteps: expected an int >= 2, got {self.num_timesteps!r}")
        if self.cfg_renorm_type not in RENORM_TYPES:
            raise ValueError(f"cfg_renorm_type: expected one of {RENORM_TYPES}, got {self.cfg_renorm_type!r}")
        lo, hi = self.cfg_interval
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(
                f"cfg_interval: expected (lo, hi) with 0 <= lo <= hi <= 1, got {self.cfg_interval}"
            )

    def timesteps(self) -> torch.Tensor:
        """The `num_timesteps` shifted times from 1 to 0 (float64)."""
        return shift_timesteps(
            torch.linspace(1.0, 0.0, self.num_timesteps, dtype=torch.float64), self.timestep_shift
        )


#: COOPER's evaluation (VLMEvalKit) settings and its GRPO rollout settings.
EVAL_SAMPLING = CooperSampling()
ROLLOUT_SAMPLING = CooperSampling(num_timesteps=30, cfg_interval=(0.4, 1.0), cfg_renorm_type="global")


def guidance_contexts(context: list[Item]) -> tuple[list[Item], list[Item], list[Item]]:
    """(full, without the last text, without images), built as BAGEL's interleaved inference does."""
    full: list[Item] = []
    no_text: list[Item] = []
    for item in context:
        if not isinstance(item, Text | Image | Latent):
            raise TypeError(f"context: expected Text, Image or Latent items, got {type(item).__name__}")
        if isinstance(item, Text):
            no_text = list(full)
            full.append(item)
        else:
            full.append(item)
            no_text = list(full)
    return full, no_text, [item for item in context if isinstance(item, Text)]


def combine_guidance(
    v: torch.Tensor,
    v_text: torch.Tensor | None,
    v_img: torch.Tensor | None,
    s: CooperSampling,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Guided velocity `[N, D]` from the full (`v`), no-text and no-image branches (see module doc)."""
    if v_text is None:
        return v
    guided = v_text + s.cfg_text_scale * (v - v_text)
    if s.cfg_renorm_type == "text_channel":
        scale = v.norm(dim=-1, keepdim=True) / (guided.norm(dim=-1, keepdim=True) + eps)
        guided = guided * scale.clamp(min=s.cfg_renorm_min, max=1.0)
        return guided if v_img is None else v_img + s.cfg_img_scale * (guided - v_img)
    if v_img is not None:
        guided = v_img + s.cfg_img_scale * (guided - v_img)
    if s.cfg_renorm_type == "global":
        scale = v.norm() / (guided.norm() + eps)
    else:
        scale = v.norm(dim=-1, keepdim=True) / (guided.norm(dim=-1, keepdim=True) + eps)
    return guided * scale.clamp(min=s.cfg_renorm_min, max=1.0)


@torch.no_grad()
def generate_latent(
    model: CooperModel,
    context: list[Item],
    grid: tuple[int, int],
    sampling: CooperSampling = EVAL_SAMPLING,
    *,
    generator: torch.Generator | None = None,
    batch_branches: bool = True,
) -> torch.Tensor:
    """Generate a latent image `[16, rows p, cols p]` of `grid = (rows, cols)` latent tokens after `context`."""
    rows, cols = grid
    guided = sampling.cfg_text_scale > 1.0
    branches = guidance_contexts(context)
    branches = branches[: (3 if sampling.cfg_img_scale > 1.0 else 2) if guided else 1]
    builder = SequenceBuilder(model.config)
    for items in branches:
        builder.new_sample().add(items)
        builder.latent(noised=True, grid=grid)
    device = next(model.parameters()).device
    seq = builder.build().to(device)
    cache = model.prefill(seq)
    noised_rows = seq.noised_index
    branch_rows = [noised_rows[seq.sample[noised_rows] == b] for b in range(len(branches))]
    n_tokens = rows * cols
    x = torch.randn(n_tokens, model.config.latent_dim, generator=generator, device=device)
    times = sampling.timesteps()
    lo, hi = sampling.cfg_interval
    for i in range(sampling.num_timesteps - 1):
        t = float(times[i])
        active = len(branches) if guided and lo < t <= hi else 1
        x_all = x.repeat(len(branches), 1)
        t_all = torch.full((len(x_all),), t, device=device)
        if batch_branches:
            v = model.velocity(seq, cache, x_all, t_all, torch.cat(branch_rows[:active])).float()
            parts = list(v.split(n_tokens))
        else:
            parts = [model.velocity(seq, cache, x_all, t_all, branch_rows[b]).float() for b in range(active)]
        parts += [None] * (3 - len(parts))
        v = combine_guidance(parts[0], parts[1], parts[2], sampling) if active > 1 else parts[0]
        x = x - v * float(times[i] - times[i + 1])
    return unpatchify(x, rows, cols, model.config.latent_patch_size)


@torch.no_grad()
def generate_image(
    model: CooperModel,
    context: list[Item],
    size: tuple[int, int],
    sampling: CooperSampling = EVAL_SAMPLING,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Generate an image `[3, H, W]` (about [-1, 1]; an RGB pseudo-image for depth or segmentation)
    of pixel `size = (H, W)`, multiples of `config.latent_downsample` (16)."""
    step = model.config.latent_downsample
    if size[0] % step or size[1] % step:
        raise ValueError(f"size: expected (H, W) multiples of {step}, got {size}")
    latent = generate_latent(
        model, context, (size[0] // step, size[1] // step), sampling, generator=generator
    )
    return model.vae.decode(latent[None].to(next(model.vae.parameters()).dtype))[0]
