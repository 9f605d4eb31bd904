"""`LinearCrossEntropy`: `linear_cross_entropy` as an ``nn.Module`` holding its options."""

from __future__ import annotations

import torch
from torch import nn

from cooper_lib.ops.dispatch import Backend
from cooper_lib.ops.linear_ce import LinearCrossEntropyOutput, Reduction, Sweep, linear_cross_entropy

__all__ = ["LinearCrossEntropy"]


class LinearCrossEntropy(nn.Module):
    """Fused ``lm_head`` + cross-entropy loss; ``forward(hidden, weight, labels)`` as in `linear_cross_entropy`.

    The options are those of `linear_cross_entropy`; ``class_weights`` is kept as a (non-persistent)
    buffer so it follows ``.to(device)``. The argument order is ``(hidden, weight, labels)``, as in
    the function (Liger's module takes the weight first).
    """

    def __init__(
        self,
        *,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        softcap: float | None = None,
        class_weights: torch.Tensor | None = None,
        shift: int = 0,
        return_z_loss: bool = False,
        return_lse: bool = False,
        return_accuracy: bool = False,
        check_labels: bool | None = None,
        chunk_size: int | None = None,
        sweep: Sweep = "auto",
        block_size: int | None = None,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        self.options = {
            "ignore_index": ignore_index,
            "reduction": reduction,
            "label_smoothing": label_smoothing,
            "z_loss": z_loss,
            "softcap": softcap,
            "shift": shift,
            "return_z_loss": return_z_loss,
            "return_lse": return_lse,
            "return_accuracy": return_accuracy,
            "check_labels": check_labels,
            "chunk_size": chunk_size,
            "sweep": sweep,
            "block_size": block_size,
            "backend": backend,
        }
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(
        self,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        labels: torch.Tensor,
        bias: torch.Tensor | None = None,
        token_weights: torch.Tensor | None = None,
    ) -> torch.Tensor | LinearCrossEntropyOutput:
        """The loss (or `LinearCrossEntropyOutput`) of ``hidden @ weight.T + bias`` against ``labels``."""
        return linear_cross_entropy(
            hidden,
            weight,
            labels,
            bias=bias,
            token_weights=token_weights,
            class_weights=self.class_weights,
            **self.options,
        )

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())
