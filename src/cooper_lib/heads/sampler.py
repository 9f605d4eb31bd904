"""Euler sampling of a rectified flow with timestep shift and BAGEL's two-condition guidance.

Convention (COOPER / BAGEL): ``x_t = (1 - t) x0 + t eps``, so t = 1 is pure noise, t = 0 the
data, and the model predicts the velocity ``v = dx/dt = eps - x0``.

Steps mean what BAGEL's ``num_timesteps`` means (``modeling/bagel/bagel.py:946-949`` in COOPER):
the time grid is ``linspace(1, 0, steps)`` warped by the shift ``t' = s t / (1 + (s - 1) t)``
(s > 1 spends more steps at high noise, where the global layout is decided), and the sampler makes
one Euler update ``x <- x + (t_next - t) v(x, t)`` per pair of neighbouring times, so
``steps - 1`` updates: 50 steps are 49 network evaluations per branch.

Guidance follows BAGEL's ``_forward_flow`` (``modeling/bagel/bagel.py:1067-1132``) with three
branches: ``v`` (full condition), ``v_t`` (the text condition dropped) and ``v_i`` (the image
condition dropped). With text scale ``a`` and image scale ``b``:

- ``"global"`` / ``"channel"``: ``u = v_t + a (v - v_t)``, then ``w = v_i + b (u - v_i)`` (only
  when b > 1, else ``w = u``), then ``w`` is re-scaled by ``clamp(|v| / (|w| + 1e-8), min, 1)``,
  the norms taken over every dimension of a sample (``"global"``) or per token (``"channel"``);
- ``"text_channel"``: ``u`` is re-scaled per token against ``v`` first, then
  ``w = v_i + b (u - v_i)`` with no re-scaling after;
- ``"none"`` (not in BAGEL): ``w`` as for ``"global"``, never re-scaled.

``min`` is `Guidance.renorm_min`. Guidance applies only at times with ``low < t <= high`` (the
interval) and only when the text scale is above 1 (BAGEL ignores the image scale otherwise, so a
`Guidance` with an image scale but no text scale is refused). BAGEL's "global" norm is over its
whole packed tensor, which holds one image; here it is per sample, the same for a batch of one.
All active branches run as one batched call of the velocity function.

Written here rather than taken from a library: diffusers' schedulers carry pipeline state and a
different parameterisation, and the whole loop is a few dozen lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

#: Branch ids passed to the velocity function: the full condition, the text condition dropped,
#: the image condition dropped.
FULL, NO_TEXT, NO_IMAGE = 0, 1, 2

#: velocity(x [B, N, D], t [B], sample [B] long, branch [B] long) -> v [B, N, D].
#: `sample` says which generated sample each row belongs to (rows repeat it when guidance
#: branches are batched); `branch` is FULL, NO_TEXT or NO_IMAGE per row.
VelocityFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

RENORM_MODES = ("global", "channel", "text_channel", "none")

#: COOPER's settings for image generation, as `FlowHead.generate` options. "cooper-eval" is its
#: VLMEvalKit evaluation (``VLMEvalKit/vlmeval/vlm/bagel/bagel_inference.py:125-131``),
#: "cooper-rollout" its interleaved reasoning and GRPO rollouts (``inferencer.py:640-651``).
SAMPLING_PRESETS: dict[str, dict[str, Any]] = {
    "cooper-eval": {
        "steps": 50,
        "shift": 3.0,
        "cfg_text_scale": 4.0,
        "cfg_img_scale": 2.0,
        "cfg_interval": (0.0, 1.0),
        "cfg_renorm": "text_channel",
        "cfg_renorm_min": 0.0,
    },
    "cooper-rollout": {
        "steps": 30,
        "shift": 3.0,
        "cfg_text_scale": 4.0,
        "cfg_img_scale": 2.0,
        "cfg_interval": (0.4, 1.0),
        "cfg_renorm": "global",
        "cfg_renorm_min": 0.0,
    },
}


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """``s t / (1 + (s - 1) t)``: the identity at s = 1; keeps 0 and 1 fixed."""
    if not shift > 0:
        raise ValueError(f"shift: expected a positive number, got {shift}")
    return shift * t / (1 + (shift - 1) * t)


def euler_timesteps(steps: int, shift: float = 1.0) -> torch.Tensor:
    """The `steps` times (float64) from 1 down to 0, shifted: BAGEL's grid, ``steps - 1`` updates."""
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps: expected an int >= 2 (the number of time points), got {steps!r}")
    return shift_timesteps(torch.linspace(1.0, 0.0, steps, dtype=torch.float64), shift)


@dataclass(frozen=True)
class Guidance:
    """Two-condition classifier-free guidance settings (BAGEL's ``cfg_*`` arguments).

    Attributes:
        text_scale: scale of the text branch (BAGEL's ``cfg_text_scale``); 1 disables guidance.
        image_scale: scale of the image branch (``cfg_img_scale``); 1 leaves that branch out.
        interval: (low, high): guide the steps whose time t satisfies low < t <= high.
        renorm: `"global"`, `"channel"`, `"text_channel"` (BAGEL's modes, see the module
            docstring) or `"none"`.
        renorm_min: lower bound of the re-scaling factor (``cfg_renorm_min``).
    """

    text_scale: float = 1.0
    image_scale: float = 1.0
    interval: tuple[float, float] = (0.0, 1.0)
    renorm: str = "global"
    renorm_min: float = 0.0

    def __post_init__(self) -> None:
        for name in ("text_scale", "image_scale"):
            if not getattr(self, name) >= 1.0:
                raise ValueError(f"{name}: expected a scale >= 1 (1 = off), got {getattr(self, name)}")
        if self.image_scale > 1.0 and self.text_scale == 1.0:
            raise ValueError(
                f"image_scale: {self.image_scale} needs text_scale > 1 (BAGEL applies the image "
                "branch only on top of text guidance), got text_scale=1.0"
            )
        if len(self.interval) != 2 or not 0.0 <= self.interval[0] <= self.interval[1] <= 1.0:
            raise ValueError(
                f"interval: expected (low, high) with 0 <= low <= high <= 1, got {self.interval}"
            )
        if self.renorm not in RENORM_MODES:
            raise ValueError(f"renorm: expected one of {RENORM_MODES}, got {self.renorm!r}")
        if not 0.0 <= self.renorm_min <= 1.0:
            raise ValueError(f"renorm_min: expected a value in [0, 1], got {self.renorm_min}")

    @property
    def branches(self) -> tuple[int, ...]:
        """The branches a guided step evaluates."""
        if self.text_scale == 1.0:
            return (FULL,)
        return (FULL, NO_TEXT, NO_IMAGE) if self.image_scale > 1.0 else (FULL, NO_TEXT)

    def active(self, t: float) -> bool:
        """Whether the step at time `t` is guided."""
        return self.text_scale > 1.0 and self.interval[0] < t <= self.interval[1]


def _rescale(
    guided: torch.Tensor, reference: torch.Tensor, dims: tuple[int, ...], floor: float
) -> torch.Tensor:
    ratio = reference.norm(dim=dims, keepdim=True) / (guided.norm(dim=dims, keepdim=True) + 1e-8)
    return guided * ratio.clamp(min=floor, max=1.0)


def guide(
    full: torch.Tensor,
    no_text: torch.Tensor,
    no_image: torch.Tensor | None,
    guidance: Guidance,
) -> torch.Tensor:
    """Guided velocity [B, N, D] from the branches' velocities, by BAGEL's rule (module docstring).

    `no_image` may be None when `guidance.image_scale` is 1.
    """
    if guidance.image_scale > 1.0 and no_image is None:
        raise ValueError(
            f"no_image: expected the image branch's velocity for image_scale={guidance.image_scale}"
        )
    a, b = guidance.text_scale, guidance.image_scale
    text_guided = no_text + a * (full - no_text)
    if guidance.renorm == "text_channel":
        text_guided = _rescale(text_guided, full, (2,), guidance.renorm_min)
    guided = text_guided if b == 1.0 else no_image + b * (text_guided - no_image)
    if guidance.renorm in ("text_channel", "none"):
        return guided
    dims = (1, 2) if guidance.renorm == "global" else (2,)
    return _rescale(guided, full, dims, guidance.renorm_min)


def sample_euler(
    velocity: VelocityFn,
    noise: torch.Tensor,
    *,
    steps: int = 50,
    shift: float = 3.0,
    guidance: Guidance | None = None,
    batch_cfg: bool = True,
) -> torch.Tensor:
    """Integrate from `noise` [B, N, D] at t = 1 to t = 0; returns x0 [B, N, D].

    Args:
        velocity: the model, see `VelocityFn`.
        noise: starting point; its dtype and device are the sampling ones.
        steps: time points of the grid, BAGEL's ``num_timesteps`` (``steps - 1`` Euler updates).
        shift: timestep shift s (3.0 is COOPER's and BAGEL's at inference).
        guidance: classifier-free guidance; None or a text scale of 1 runs the full branch only.
        batch_cfg: run the guidance branches as one call on a stacked batch (True) or one call each.
    """
    guidance = guidance or Guidance()
    x = noise
    n = x.shape[0]
    sample = torch.arange(n, device=x.device)
    times = euler_timesteps(steps, shift).tolist()
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        t_batch = torch.full((n,), t, dtype=x.dtype, device=x.device)
        branches = guidance.branches if guidance.active(t) else (FULL,)
        ids = [torch.full((n,), b, dtype=torch.long, device=x.device) for b in branches]
        if batch_cfg and len(branches) > 1:
            k = len(branches)
            out = velocity(
                torch.cat([x] * k), torch.cat([t_batch] * k), torch.cat([sample] * k), torch.cat(ids)
            )
            parts = dict(zip(branches, out.split(n), strict=True))
        else:
            parts = {b: velocity(x, t_batch, sample, i) for b, i in zip(branches, ids, strict=True)}
        if len(branches) == 1:
            v = parts[FULL]
        else:
            v = guide(parts[FULL], parts[NO_TEXT], parts.get(NO_IMAGE), guidance)
        x = x + (t_next - t) * v
    return x
