"""Exponential moving average of the trainable weights (COOPER keeps one at decay 0.995).

Only the parameters that train are shadowed, so a frozen 7B backbone costs nothing. The update is
one fused `torch._foreach_lerp_` over all shadows (what timm's ModelEmaV3 does); timm's class
itself deep-copies the whole model, which is what we avoid here.

Warm-up (on by default): update ``t`` (1, 2, ...) uses the decay ``min(decay, (1 + t) / (10 + t))``,
timm's ``use_warmup`` rule, so the average follows the weights early on instead of staying at the
initial ones: at decay 0.995 a 100-step run averages with about 0.92 and ends well away from its
start, while the plain 0.995 is reached after about 1,800 updates. ``warmup=False`` uses the
constant decay from the first update.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    """Shadow copies of `model`'s trainable parameters, updated after every optimiser step.

    Args:
        model: the (unwrapped) model; its parameters with `requires_grad` are shadowed by name.
        decay: ``shadow <- d * shadow + (1 - d) * param`` with ``d = decay`` (after warm-up).
        warmup: ramp the decay in as ``d = min(decay, (1 + t) / (10 + t))`` at update ``t``.
    """

    #: key of the update count in `state_dict` (no parameter is named so)
    STEP_KEY = "__ema_updates__"

    def __init__(self, model: nn.Module, decay: float = 0.995, *, warmup: bool = True) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay: expected a value in (0, 1), got {decay}")
        self.decay, self.warmup, self.updates = decay, warmup, 0
        self.params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        if not self.params:
            raise ValueError("model: no trainable parameters to average")
        self.shadow = {name: p.detach().clone() for name, p in self.params.items()}

    def current_decay(self) -> float:
        """The decay the next `update` uses."""
        if not self.warmup:
            return self.decay
        t = self.updates + 1
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self) -> None:
        """Move every shadow towards its parameter (call after each optimiser step)."""
        names = list(self.params)
        weight = 1 - self.current_decay()
        torch._foreach_lerp_(
            [self.shadow[n] for n in names], [self.params[n].detach() for n in names], weight
        )
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadows (CPU) and the update count under `STEP_KEY`."""
        state = {name: t.detach().cpu().contiguous() for name, t in self.shadow.items()}
        state[self.STEP_KEY] = torch.tensor(self.updates, dtype=torch.int64)
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore `state_dict`'s output (one without an update count, from before warm-up existed,
        counts as past its warm-up)."""
        state = dict(state)
        updates = state.pop(self.STEP_KEY, None)
        if set(state) != set(self.shadow):
            missing, unexpected = sorted(set(self.shadow) - set(state)), sorted(set(state) - set(self.shadow))
            raise ValueError(f"state: missing EMA tensors {missing}, unexpected {unexpected}")
        with torch.no_grad():
            for name, tensor in state.items():
                if tensor.shape != self.shadow[name].shape:
                    raise ValueError(
                        f"state[{name!r}]: expected shape {tuple(self.shadow[name].shape)}, got {tuple(tensor.shape)}"
                    )
                self.shadow[name].copy_(tensor)
        self.updates = int(updates) if updates is not None else 10**9

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the model holds the EMA weights; its own weights come back afterwards."""
        backup = {name: p.detach().clone() for name, p in self.params.items()}
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, param in self.params.items():
                    param.copy_(backup[name])
