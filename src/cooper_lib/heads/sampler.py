"""Euler sampling of a rectified flow with timestep shift and classifier-free guidance (BAGEL's sampler).

Convention (COOPER / BAGEL): ``x_t = (1 - t) x0 + t eps``, so t = 1 is pure noise, t = 0 the
data, and the model predicts the velocity ``v = dx/dt = eps - x0``. Sampling integrates from
t = 1 to t = 0 over ``steps`` Euler steps ``x <- x + (t_next - t) v(x, t)`` on the grid
``linspace(1, 0, steps + 1)`` warped by the shift ``t' = s t / (1 + (s - 1) t)``: s > 1 spends
more steps at high noise, where the global layout is decided.

Guidance: ``v = v_u + scale (v_c - v_u)`` for steps with ``low < t <= high`` (the guidance
interval), ``v_c`` elsewhere; then optionally re-scaled so its norm is at most that of ``v_c``
(per sample over all tokens, or per token), which keeps high scales from over-saturating. The
conditional and unconditional branches run as one batched call of the velocity function.

Written here rather than taken from a library: diffusers' schedulers carry pipeline state and a
different parameterisation, and the whole loop is twenty lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

#: velocity(x [B, N, D], t [B], sample [B] long, conditional [B] bool) -> v [B, N, D].
#: `sample` says which generated sample each row belongs to (rows repeat it when the two guidance
#: branches are batched); `conditional` is False on rows of the unconditional branch.
VelocityFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

RENORM_MODES = ("global", "channel", "none")


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """``s t / (1 + (s - 1) t)``: the identity at s = 1; keeps 0 and 1 fixed."""
    if not shift > 0:
        raise ValueError(f"shift: expected a positive number, got {shift}")
    return shift * t / (1 + (shift - 1) * t)


def euler_timesteps(steps: int, shift: float = 1.0) -> torch.Tensor:
    """The ``steps + 1`` times from 1 down to 0 (float64), shifted."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    return shift_timesteps(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance settings.

    Attributes:
        scale: guidance scale; 1 disables guidance (no unconditional branch is computed).
        interval: (low, high): guide the steps whose time t satisfies low < t <= high (BAGEL uses
            (0.4, 1.0) for images: guidance shapes the layout, not the fine detail).
        renorm: `"global"` clamps each sample's guided velocity norm (over all tokens) to at most
            the conditional one's, `"channel"` does it per token, `"none"` leaves it.
        renorm_min: lower bound of the re-scaling factor (BAGEL's `cfg_renorm_min`, 0 by default).
    """

    scale: float = 1.0
    interval: tuple[float, float] = (0.0, 1.0)
    renorm: str = "global"
    renorm_min: float = 0.0

    def __post_init__(self) -> None:
        if len(self.interval) != 2 or not 0.0 <= self.interval[0] <= self.interval[1] <= 1.0:
            raise ValueError(
                f"interval: expected (low, high) with 0 <= low <= high <= 1, got {self.interval}"
            )
        if self.renorm not in RENORM_MODES:
            raise ValueError(f"renorm: expected one of {RENORM_MODES}, got {self.renorm!r}")
        if not 0.0 <= self.renorm_min <= 1.0:
            raise ValueError(f"renorm_min: expected a value in [0, 1], got {self.renorm_min}")

    @property
    def enabled(self) -> bool:
        return self.scale != 1.0 and self.interval[0] < self.interval[1]

    def active(self, t: float) -> bool:
        """Whether the step at time `t` is guided."""
        return self.enabled and self.interval[0] < t <= self.interval[1]


def guide(cond: torch.Tensor, uncond: torch.Tensor, guidance: Guidance) -> torch.Tensor:
    """Guided velocity from the two branches [B, N, D], re-scaled as `guidance.renorm` says."""
    guided = uncond + guidance.scale * (cond - uncond)
    if guidance.renorm == "none":
        return guided
    dims = (1, 2) if guidance.renorm == "global" else (2,)
    ratio = cond.norm(dim=dims, keepdim=True) / (guided.norm(dim=dims, keepdim=True) + 1e-8)
    return guided * ratio.clamp(min=guidance.renorm_min, max=1.0)


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
        steps: Euler steps (network evaluations per branch).
        shift: timestep shift s (3.0 is COOPER's and BAGEL's at inference).
        guidance: classifier-free guidance; None or scale 1 runs the conditional branch only.
        batch_cfg: run both guidance branches as one call on a doubled batch (True) or as two calls.
    """
    guidance = guidance or Guidance()
    x = noise
    n = x.shape[0]
    sample = torch.arange(n, device=x.device)
    keep = torch.ones(n, dtype=torch.bool, device=x.device)
    times = euler_timesteps(steps, shift).tolist()
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        t_batch = torch.full((n,), t, dtype=x.dtype, device=x.device)
        if not guidance.active(t):
            v = velocity(x, t_batch, sample, keep)
        elif batch_cfg:
            both = velocity(
                torch.cat([x, x]),
                torch.cat([t_batch, t_batch]),
                torch.cat([sample, sample]),
                torch.cat([keep, ~keep]),
            )
            v = guide(both[:n], both[n:], guidance)
        else:
            v = guide(velocity(x, t_batch, sample, keep), velocity(x, t_batch, sample, ~keep), guidance)
        x = x + (t_next - t) * v
    return x
