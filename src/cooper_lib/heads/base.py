"""The contract every generation head meets, and the registry `add_spatial_heads(head=...)` reads.

A head turns the last hidden states of one query block, [n, K, H], into a map of its modality.
`SpatialModel` only calls `loss` (training) and `generate` (inference), so dense regression,
flow sampling and discrete codes are interchangeable per modality.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cooper_lib.modalities import Modality

if TYPE_CHECKING:
    from cooper_lib.config import SpatialConfig


class PerceptionHead(nn.Module, metaclass=abc.ABCMeta):
    """Base class of generation heads.

    Maps are in the format of the head's `modality` (a `cooper_lib.modalities.Modality`: depth
    [n, h, w] positive floats, segmentation [n, h, w] class ids, normals [n, 3, h, w] unit vectors).
    Targets come in the same format (validated by `SpatialModel` through the modality) and may hold
    invalid pixels (`Modality.valid_mask`), which a head must mask out of its loss.
    """

    modality: Modality

    @abc.abstractmethod
    def loss(self, queries: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar training loss of query states [n, K, H] against target maps [n, ...]."""

    @abc.abstractmethod
    def generate(self, queries: torch.Tensor, **options: Any) -> torch.Tensor:
        """Maps [n, ...] for query states [n, K, H]."""

    def apply_settings(self, config: SpatialConfig) -> None:
        """Take from `config` the settings a later stage may change that this head keeps (a loss
        weight, say; `cooper_lib.training.weights.STAGE_SETTINGS`). Called when a stage loads a
        saved model with new settings; a head that reads none keeps this no-op."""


HeadFactory = Callable[["SpatialConfig", str, int], PerceptionHead]
_HEADS: dict[str, HeadFactory] = {}


def register_head(name: str, factory: HeadFactory) -> None:
    """Make `head=name` build `factory(config, modality, hidden_size)` for each modality."""
    if name in _HEADS and _HEADS[name] is not factory:
        raise ValueError(f"name: head {name!r} is already registered")
    _HEADS[name] = factory


def head_names() -> list[str]:
    """Registered head types."""
    return list(_HEADS)


def build_head(config: SpatialConfig, modality: str, hidden_size: int) -> PerceptionHead:
    """The head `config.head_for(modality)` for `modality` on a backbone of `hidden_size`."""
    name = config.head_for(modality)
    if name not in _HEADS:
        where = f" for {modality!r}" if isinstance(config.head, dict) else ""
        raise ValueError(f"head: expected one of {head_names()}{where}, got {name!r}")
    return _HEADS[name](config, modality, hidden_size)
