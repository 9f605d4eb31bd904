"""Exponential moving average of the trainable weights (COOPER keeps one at decay 0.995).

Only the parameters that train are shadowed, so a frozen 7B backbone costs nothing. The update is
one fused `torch._foreach_lerp_` over all shadows (what timm's ModelEmaV3 does); timm's class
itself deep-copies the whole model, which is what we avoid here.
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
        decay: ``shadow <- decay * shadow + (1 - decay) * param``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.995) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay: expected a value in (0, 1), got {decay}")
        self.decay = decay
        self.params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        if not self.params:
            raise ValueError("model: no trainable parameters to average")
        self.shadow = {name: p.detach().clone() for name, p in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        names = list(self.params)
        torch._foreach_lerp_(
            [self.shadow[n] for n in names], [self.params[n].detach() for n in names], 1 - self.decay
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: t.detach().cpu().contiguous() for name, t in self.shadow.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
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
