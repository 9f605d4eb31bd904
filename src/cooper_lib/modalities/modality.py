"""`Modality`: everything the library knows about one auxiliary modality, in one object.

A modality carries its name, COOPER's tool tags and instruction, its pseudo-image codec (with the
defaults a head builds it with), how maps are shown (colormap, range, legend), the kind of map
(float / class ids / vectors), its invalid-pixel convention, target validation and cleaning, the
dense head's output layer, decoding and loss, how a stage-1 target file is read, and the metrics of
generated maps. Code outside ``cooper_lib.modalities`` asks the object and never compares names.

The base class is a complete one-channel float map (masked L1 loss, mean absolute error, targets
stored as the modality's pseudo-image); a new modality subclasses it, overrides what differs and
registers an instance with ``register_modality``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cooper_lib.modalities.base import ModalityCodec

__all__ = ["Display", "MapKind", "Modality"]

MapKind = Literal["float", "ids", "vectors"]
MAP_KINDS: tuple[str, ...] = ("float", "ids", "vectors")


@dataclass(frozen=True)
class Display:
    """How maps of a modality are drawn for people and shown to a model.

    Attributes:
        colormap: name of the colour table (e.g. "Spectral", "ade20k", "rgb").
        value_range: (low, high) of the values spread over the colormap, or None (per map / unbounded).
        legend: label of the colour bar or legend (units, or "classes").
    """

    colormap: str
    value_range: tuple[float, float] | None = None
    legend: str = ""


class Modality:
    """One auxiliary modality. The base class describes a one-channel float map.

    Args:
        name: registry key and the name maps go by (``aux_targets[name]``, ``SpatialOutput.maps[name]``).
        codec_factory: a callable returning the pseudo-image codec from keyword arguments (a codec
            class works), or a ready codec served as is.
        open_tag: the opening tag of COOPER's tool call ``<open>instruction</close>``; None (with
            the other two) for a codec-only modality that cannot be attached without ``tags``.
        close_tag: its closing tag.
        instruction: the request written between the tags.
        priority: order when one turn calls several tools (higher first; depth is 1, others 0).
        display: `Display` defaults.

    A subclass may instead set the class attributes ``default_name``, ``default_codec``,
    ``default_tool`` (open tag, close tag, instruction), ``default_priority`` and
    ``default_display``; the constructor's arguments, when given, take their place.
    """

    #: The kind of map: "float" ([n, h, w] floats), "ids" ([n, h, w] class ids) or "vectors" ([n, C, h, w]).
    kind: MapKind = "float"
    #: Channels of a "vectors" map (1 for the other kinds).
    channels: int = 1
    #: Id of unlabelled pixels of an "ids" map; None for float maps (invalid pixels are NaN there).
    ignore_index: int | None = None
    #: Interpolation of pseudo-images: nearest keeps palette colours exact.
    resize_mode: str = "bilinear"
    #: Keys a stage-1 record of this modality may add (read by `target_options`).
    record_keys: tuple[str, ...] = ()
    #: Whether target files are integer PNGs in units of 1 / scale (depth); `load_target` then takes
    #: ``scale`` and SFT items carry ``target_scale``.
    scaled_png: bool = False
    #: Names of `map_metrics`' results.
    metric_names: tuple[str, ...] = ()
    #: Constructor defaults a subclass may set instead of passing them (None: required / none).
    default_name: str | None = None
    default_codec: Callable[..., ModalityCodec] | ModalityCodec | None = None
    default_tool: tuple[str, str, str] | None = None
    default_priority: int = 0
    default_display: Display | None = None

    def __init__(
        self,
        name: str | None = None,
        codec_factory: Callable[..., ModalityCodec] | ModalityCodec | None = None,
        *,
        open_tag: str | None = None,
        close_tag: str | None = None,
        instruction: str | None = None,
        priority: int | None = None,
        display: Display | None = None,
    ) -> None:
        name = self.default_name if name is None else name
        codec_factory = type(self).default_codec if codec_factory is None else codec_factory
        if open_tag is None and close_tag is None and instruction is None and self.default_tool:
            open_tag, close_tag, instruction = self.default_tool
        priority = self.default_priority if priority is None else priority
        display = display or self.default_display
        if not isinstance(name, str) or not name:
            raise ValueError(f"name: expected a non-empty string, got {name!r}")
        if not (_is_codec(codec_factory) or callable(codec_factory)):
            raise TypeError(
                "codec_factory: expected a codec (with encode/decode) or a callable returning one, "
                f"got {type(codec_factory).__name__}"
            )
        tags = (open_tag, close_tag, instruction)
        if any(t is None for t in tags) and any(t is not None for t in tags):
            raise ValueError(f"open_tag, close_tag, instruction: give all three or none, got {tags}")
        if self.kind not in MAP_KINDS:
            raise ValueError(f"kind: expected one of {list(MAP_KINDS)}, got {self.kind!r}")
        self.name = name
        self.codec_factory = codec_factory
        self.open_tag = open_tag
        self.close_tag = close_tag
        self.instruction = instruction
        self.priority = int(priority)
        self.display = display or Display("gray")
        if not self.metric_names:
            self.metric_names = (f"{name}/mae",)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r}, tags={self.open_tag!r})"

    @property
    def has_tags(self) -> bool:
        """Whether the modality defines its tool tags (and can be attached without ``tags``)."""
        return self.open_tag is not None

    # ------------------------------------------------------------------ codec
    def codec(self, **kwargs: Any) -> ModalityCodec:
        """The codec, built with ``kwargs`` when registered as a factory."""
        entry = self.codec_factory
        if _is_codec(entry) and not isinstance(entry, type):
            if kwargs:
                raise TypeError(
                    f"modality {self.name!r} was registered as a ready codec; it takes no arguments, "
                    f"got {sorted(kwargs)}"
                )
            return entry
        codec = entry(**kwargs)
        if not _is_codec(codec):
            raise TypeError(
                f"the codec factory of modality {self.name!r} returned {type(codec).__name__}, not a codec"
            )
        return codec

    def codec_defaults(self, *, num_classes: int, depth_mode: str) -> dict[str, Any]:
        """Codec arguments a head uses unless `head_options['codec']` overrides them."""
        return {}

    def build_codec(self, spec: dict[str, Any] | None, *, num_classes: int, depth_mode: str) -> ModalityCodec:
        """The head's codec: `spec` (JSON keyword arguments) over `codec_defaults`."""
        if spec is not None and not isinstance(spec, dict):
            raise TypeError(
                f"head_options['codec']: expected a dict of codec arguments, got {type(spec).__name__}"
            )
        defaults = self.codec_defaults(num_classes=num_classes, depth_mode=depth_mode)
        return self.codec(**{**defaults, **(spec or {})})

    def display_codec(self, *, num_classes: int, depth_mode: str) -> ModalityCodec:
        """The codec that draws maps shown to a model during reasoning (default: the head's)."""
        return self.build_codec(None, num_classes=num_classes, depth_mode=depth_mode)

    # ------------------------------------------------------------------ targets
    def validate_target(self, target: torch.Tensor, *, where: str, num_classes: int) -> torch.Tensor:
        """A batch of target maps in this modality's format, or a ValueError / TypeError naming `where`."""
        target = map_batch(target, where)
        if not target.is_floating_point():
            raise TypeError(f"{where}: expected a floating-point tensor, got dtype {target.dtype}")
        return target

    def valid_mask(self, target: torch.Tensor) -> torch.Tensor:
        """Bool [n, h, w]: pixels that hold a value (the invalid-pixel convention)."""
        return torch.isfinite(target)

    def clean_target(self, target: torch.Tensor) -> torch.Tensor:
        """Targets the codec accepts: invalid pixels in the form `encode` reads as invalid (NaN here)."""
        target = target.float()
        return torch.where(torch.isfinite(target), target, torch.nan)

    def blank_target(self, like: torch.Tensor) -> torch.Tensor:
        """An all-invalid target shaped as `like` (a query block without a true map)."""
        fill = float("nan") if self.ignore_index is None else self.ignore_index
        return torch.full_like(like, fill)

    def target_options(self, row: Mapping[str, Any], where: str) -> dict[str, Any]:
        """The `record_keys` of a stage-1 record, validated, as keyword arguments of `load_target`."""
        return {}

    def load_target(self, path: str | os.PathLike, **options: Any) -> torch.Tensor:
        """A true map from a file. Default: the file is the modality's pseudo-image, decoded by its codec."""
        if options:
            raise TypeError(f"modality {self.name!r}: load_target takes no options, got {sorted(options)}")
        with Image.open(path) as image:
            return self.codec().decode(np.array(image.convert("RGB"))).value

    # ------------------------------------------------------------------ heads
    def out_channels(self, num_classes: int) -> int:
        """Output channels of the dense head."""
        return self.channels

    def init_dense_output(self, layer: nn.Conv2d, **settings: Any) -> None:
        """Initialise the dense head's output layer (default: leave PyTorch's initialisation)."""

    def dense_map(self, raw: torch.Tensor) -> torch.Tensor:
        """The dense head's raw output [n, C, h, w] -> maps."""
        return raw[:, 0].float()

    def dense_loss(self, raw: torch.Tensor, target: torch.Tensor, **settings: Any) -> torch.Tensor:
        """Loss of the dense head's raw output (at the target's size) against targets: masked L1."""
        valid = self.valid_mask(target)
        error = (self.dense_map(raw) - torch.nan_to_num(target.float())).abs()
        return error[valid].mean() if bool(valid.any()) else raw.sum() * 0.0

    def image_to_map(self, codec: ModalityCodec, image: torch.Tensor) -> torch.Tensor:
        """Generated pseudo-images [n, 3, h, w] -> maps (the codec's decoding)."""
        return codec.decode(image).value

    def resize_image(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Pseudo-images [n, 3, h, w] resized to `size` with `resize_mode`."""
        if tuple(image.shape[-2:]) == tuple(size):
            return image
        if self.resize_mode == "bilinear":
            return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
        return F.interpolate(image, size=size, mode=self.resize_mode)

    # ------------------------------------------------------------------ evaluation
    def map_metrics(self, pred: torch.Tensor, target: torch.Tensor, *, num_classes: int) -> dict[str, float]:
        """Metrics of generated maps against targets of the same size (default: mean absolute error)."""
        valid = self.valid_mask(target) & torch.isfinite(pred)
        if not bool(valid.any()):
            return {}
        return {self.metric_names[0]: float((pred.float() - target.float()).abs()[valid].mean())}


def map_batch(target: Any, where: str) -> torch.Tensor:
    """`target` as a batch of one-channel maps [n, h, w] ([n, 1, h, w] is squeezed), or an error naming `where`."""
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{where}: expected a torch.Tensor, got {type(target).__name__}")
    if target.ndim == 4 and target.shape[1] == 1:
        target = target[:, 0]
    if target.ndim != 3:
        raise ValueError(f"{where}: expected maps of shape [n, h, w], got {tuple(target.shape)}")
    return target


def _is_codec(obj: object) -> bool:
    return all(callable(getattr(obj, method, None)) for method in ("encode", "decode"))
