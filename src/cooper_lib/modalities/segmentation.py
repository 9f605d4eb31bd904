"""Segmentation codec: class or instance ids <-> palette colours, decoded by nearest colour.

Encoding looks each id up in a palette (the ADE20K 150-class palette COOPER draws with, or a
generated one for any number of classes); ignored and masked pixels get the ignore colour.
Decoding assigns every pixel the id of its nearest palette colour, so a slightly noisy
generated image still maps to classes, and reports the colour distance as a confidence.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from cooper_lib.modalities._convert import image_pixels, map_tensor, mask_tensor, parse_colour
from cooper_lib.modalities._nearest import DEFAULT_CHUNK_PIXELS, nearest_colour
from cooper_lib.modalities.base import ArrayLike, DecodedMap, ModalityCodec
from cooper_lib.modalities.modality import Display, Modality, map_batch
from cooper_lib.modalities.palettes import ADE20K_PALETTE_HEX
from cooper_lib.modalities.segmentation_metrics import confusion_matrix, mean_iou
from cooper_lib.ops.seg_ce_dice import seg_ce_dice_loss

__all__ = [
    "IGNORE_INDEX",
    "InstanceModality",
    "SegmentationCodec",
    "SegmentationModality",
    "ade20k_palette",
    "make_palette",
]

PaletteSpec = str | torch.Tensor | np.ndarray | Sequence[Sequence[int]] | Sequence[Sequence[float]]


def ade20k_palette() -> torch.Tensor:
    """The ADE20K 150-class palette as uint8 ``(150, 3)`` (class 48 repeats class 6's colour)."""
    return torch.tensor(
        [[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in ADE20K_PALETTE_HEX], dtype=torch.uint8
    )


@functools.lru_cache(maxsize=32)
def _farthest_point_palette(num_colors: int, exclude: tuple[tuple[int, int, int], ...]) -> torch.Tensor:
    levels = max(16, math.ceil((4 * (num_colors + len(exclude))) ** (1 / 3)))
    if levels > 256:
        raise ValueError(
            f"num_colors: at most {256**3 // 4 - len(exclude)} colours can be generated, got {num_colors}"
        )
    axis = torch.linspace(0, 255, levels).round()
    grid = torch.cartesian_prod(axis, axis, axis)  # (levels^3, 3), candidate colours
    min_dist = torch.full((grid.shape[0],), float("inf"))
    for colour in exclude:
        min_dist = torch.minimum(min_dist, (grid - torch.tensor(colour, dtype=torch.float32)).norm(dim=-1))
    chosen = torch.empty(num_colors, dtype=torch.long)
    for i in range(num_colors):
        # Farthest-point sampling: take the candidate farthest from everything chosen so far
        # (first index on ties, so the result is deterministic).
        chosen[i] = int(min_dist.argmax())
        min_dist = torch.minimum(min_dist, (grid - grid[chosen[i]]).norm(dim=-1))
    return grid[chosen].to(torch.uint8)


def make_palette(num_colors: int, exclude: Sequence[Sequence[int]] = ((0, 0, 0),)) -> torch.Tensor:
    """A deterministic palette of ``num_colors`` colours spread far apart in RGB.

    Greedy farthest-point sampling over a regular RGB grid: each new colour is the grid colour
    farthest from all colours chosen before it and from ``exclude`` (by default black, the ignore
    colour). The first colours are therefore the most distinct. Up to 1023 colours (with one
    excluded colour) the grid is the same 16-level one, so a smaller palette is a prefix of a
    larger one and instance colours stay stable as the instance count grows.

    Args:
        num_colors: number of colours, at least 1.
        exclude: 0..255 RGB colours to keep away from (e.g. the ignore colour).

    Returns:
        uint8 ``(num_colors, 3)``.
    """
    if not isinstance(num_colors, int) or num_colors < 1:
        raise ValueError(f"num_colors: expected a positive int, got {num_colors!r}")
    excluded = tuple(tuple(int(round(float(v) * 255)) for v in parse_colour(c, "exclude")) for c in exclude)
    return _farthest_point_palette(num_colors, excluded).clone()


def _palette_tensor(palette: PaletteSpec, num_classes: int | None, ignore: torch.Tensor) -> torch.Tensor:
    """The palette as float32 ``(C, 3)`` in [0, 1], checked against ``num_classes``."""
    if isinstance(palette, str):
        if palette == "ade20k":
            table = ade20k_palette()
            if num_classes is not None:
                if not 1 <= num_classes <= table.shape[0]:
                    raise ValueError(
                        f"num_classes: the ade20k palette has {table.shape[0]} colours, got {num_classes}; "
                        'use palette="auto" for more classes'
                    )
                table = table[:num_classes]
        elif palette == "auto":
            if num_classes is None:
                raise ValueError('num_classes: palette="auto" needs num_classes, got None')
            table = make_palette(num_classes, exclude=[tuple(int(round(v * 255)) for v in ignore.tolist())])
        else:
            raise ValueError(
                f'palette: expected "ade20k", "auto" or a (C, 3) array of colours, got {palette!r}'
            )
    else:
        table = torch.as_tensor(np.asarray(palette))
        if table.ndim != 2 or table.shape[1] != 3 or table.shape[0] == 0:
            raise ValueError(f"palette: expected shape (C, 3), got {tuple(table.shape)}")
        if num_classes is not None and num_classes != table.shape[0]:
            raise ValueError(
                f"num_classes: {num_classes} does not match the palette's {table.shape[0]} colours"
            )
    if table.dtype == torch.uint8 or not table.is_floating_point():
        if table.min() < 0 or table.max() > 255:
            raise ValueError("palette: integer colours must be on the 0..255 scale")
        return table.float() / 255.0
    if table.min() < 0 or table.max() > 1:
        raise ValueError("palette: float colours must be on the 0..1 scale")
    return table.float()


class SegmentationCodec(ModalityCodec):
    """Class (or instance) ids <-> palette colours.

    Args:
        num_classes: number of ids; None takes the palette's size (150 for ADE20K).
        palette: ``"ade20k"`` (COOPER's colour maps), ``"auto"`` (``make_palette(num_classes)``
            avoiding the ignore colour) or a ``(C, 3)`` array, uint8 0..255 or float 0..1.
        ignore_index: id of unlabelled pixels; encoded as ``ignore_color``; must not be a class id.
        ignore_color: colour of ignored and masked pixels (ints 0..255 or floats 0..1).
        instance: the ids are instance ids (sets ``name`` to "instance"; the coding is the same).
        max_distance: when set, decoded pixels farther than this from every palette colour (RGB
            distance, channels in [0, 1]) are reported invalid instead of snapped to a class.
        chunk_pixels: pixels per step of the nearest-colour search (bounds decode memory).

    Decoding gives each pixel the id of the nearest colour among the palette and the ignore
    colour; pixels nearest the ignore colour decode to ``ignore_index`` with ``valid`` False.
    With distinct palette colours ``decode(encode(ids))`` is the identity. A palette given as an
    array must have distinct colours; the built-in ADE20K palette has one duplicate, listed in
    ``aliases`` ({48: 6}): class 48 decodes to class 6.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        palette: PaletteSpec = "ade20k",
        ignore_index: int = 255,
        ignore_color: Sequence[int] | Sequence[float] = (0, 0, 0),
        *,
        instance: bool = False,
        max_distance: float | None = None,
        chunk_pixels: int = DEFAULT_CHUNK_PIXELS,
    ) -> None:
        self._ignore_color_arg = tuple(ignore_color)
        self.ignore_color = parse_colour(ignore_color, "ignore_color")
        self.palette = _palette_tensor(palette, num_classes, self.ignore_color)
        self.num_classes = int(self.palette.shape[0])
        self._palette_arg = palette if isinstance(palette, str) else self.palette.tolist()
        if 0 <= ignore_index < self.num_classes:
            raise ValueError(f"ignore_index: {ignore_index} is a class id (0..{self.num_classes - 1})")
        if max_distance is not None and max_distance <= 0:
            raise ValueError(f"max_distance: expected a positive distance or None, got {max_distance}")
        if chunk_pixels < 1:
            raise ValueError(f"chunk_pixels: expected a positive int, got {chunk_pixels}")
        self.ignore_index = int(ignore_index)
        self.instance = instance
        self.max_distance = max_distance
        self.chunk_pixels = chunk_pixels
        self.name = "instance" if instance else "segmentation"
        self.units = "instance id" if instance else "class id"
        self.value_range = (0.0, float(self.num_classes - 1))
        self.aliases = self._find_aliases(palette)
        self._table = torch.cat([self.palette, self.ignore_color[None]])  # row C is the ignore colour

    def _find_aliases(self, palette: PaletteSpec) -> dict[int, int]:
        same = (self.palette[:, None] == self.palette[None]).all(-1).triu(diagonal=1)
        aliases = {int(j): int(i) for i, j in same.nonzero().tolist()}
        if aliases and not isinstance(palette, str):
            raise ValueError(
                f"palette: colours must be distinct; class ids {aliases} repeat an earlier colour"
            )
        if (self.palette == self.ignore_color).all(-1).any():
            raise ValueError(f"ignore_color: {self._ignore_color_arg} is also a palette colour")
        return aliases

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "num_classes": self.num_classes,
            "palette": self._palette_arg,
            "ignore_index": self.ignore_index,
            "ignore_color": list(self._ignore_color_arg),
            "max_distance": self.max_distance,
            "chunk_pixels": self.chunk_pixels,
        }
        if self.instance:
            config["instance"] = True
        return config

    def encode(self, x: ArrayLike, mask: ArrayLike | None = None) -> torch.Tensor:
        """Colour an id map ``(..., H, W)`` (any integer dtype) into ``(..., 3, H, W)`` float32.

        Raises:
            TypeError: ``x`` is not an integer map.
            ValueError: an id is neither a class id nor ``ignore_index``, or ``mask`` has the wrong shape.
        """
        ids = map_tensor(x, "x")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"x: expected an integer id map, got dtype {ids.dtype}")
        ids = ids.long()
        ignored = ids == self.ignore_index
        bad = ~ignored & ((ids < 0) | (ids >= self.num_classes))
        if bad.any():
            raise ValueError(
                f"x: ids must be in [0, {self.num_classes - 1}] or ignore_index={self.ignore_index}; "
                f"found {int(ids[bad][0])}"
            )
        keep = mask_tensor(mask, ids.shape, ids.device)
        if keep is not None:
            ignored |= ~keep
        index = torch.where(ignored, self.num_classes, ids)
        return self._table.to(ids.device)[index].movedim(-1, -3).contiguous()

    def decode(self, img: ArrayLike) -> DecodedMap:
        """Nearest-colour ids for a pseudo-image; never fails on a well-shaped image.

        Returns:
            ``value`` long ids (``ignore_index`` where invalid), ``valid``, and ``distance`` to the
            chosen colour (0 for an exact encoding).
        """
        index, distance = nearest_colour(image_pixels(img, "img"), self._table, self.chunk_pixels)
        valid = index < self.num_classes
        if self.max_distance is not None:
            valid &= distance <= self.max_distance
        value = torch.where(valid, index, self.ignore_index)
        return DecodedMap(value=value, valid=valid, distance=distance)


IGNORE_INDEX = 255
"""Id of unlabelled pixels in segmentation targets (the codec's default ``ignore_index``)."""

SEGMENTATION_TAGS = ("<segmentation>", "</segmentation>")
SEGMENTATION_INSTRUCTION = "Segment the objects in the image with different colors."


class SegmentationModality(Modality):
    """Semantic segmentation: class ids [n, h, w], `IGNORE_INDEX` unlabelled. Pseudo-images in the
    ADE20K palette at 150 classes (COOPER's colour maps), a generated far-apart palette otherwise,
    resized nearest so palette colours stay exact. Dense head: per-class logits, cross-entropy +
    Dice. Stage-1 targets: class-id PNGs (``reduce_zero_label`` for ADE20K's files) or colour PNGs
    with ``palette``. Metric: mIoU."""

    default_name = "segmentation"
    default_codec = SegmentationCodec
    default_tool = (*SEGMENTATION_TAGS, SEGMENTATION_INSTRUCTION)
    default_display = Display("ade20k", None, "classes")
    kind = "ids"
    ignore_index = IGNORE_INDEX
    resize_mode = "nearest-exact"
    record_keys = ("palette", "reduce_zero_label")
    metric_names = ("segmentation/miou",)

    def codec_defaults(self, *, num_classes: int, depth_mode: str) -> dict[str, Any]:
        return {"num_classes": num_classes, "palette": "ade20k" if num_classes == 150 else "auto"}

    def build_codec(self, spec: dict[str, Any] | None, *, num_classes: int, depth_mode: str) -> ModalityCodec:
        codec = super().build_codec(spec, num_classes=num_classes, depth_mode=depth_mode)
        if codec.num_classes != num_classes:
            raise ValueError(
                f"head_options['codec']: the codec has {codec.num_classes} classes, the config {num_classes}"
            )
        return codec

    def validate_target(self, target: torch.Tensor, *, where: str, num_classes: int) -> torch.Tensor:
        """Integer class ids [n, h, w] in [0, num_classes) or `IGNORE_INDEX`."""
        target = map_batch(target, where)
        if target.is_floating_point() or target.dtype == torch.bool:
            raise TypeError(f"{where}: expected integer class ids, got dtype {target.dtype}")
        bad = (target < 0) | ((target >= num_classes) & (target != IGNORE_INDEX))
        if bool(bad.any()):
            raise ValueError(
                f"{where}: expected class ids in [0, {num_classes}) or {IGNORE_INDEX} (ignored), "
                f"got values {sorted(set(target[bad].unique().tolist()))[:5]}"
            )
        return target

    def valid_mask(self, target: torch.Tensor) -> torch.Tensor:
        return target != IGNORE_INDEX

    def clean_target(self, target: torch.Tensor) -> torch.Tensor:
        return target.long()

    def target_options(self, row: Mapping[str, Any], where: str) -> dict[str, Any]:
        """``palette`` ("ade20k" or a list of [r, g, b]) and ``reduce_zero_label``."""
        palette = row.get("palette")
        if isinstance(palette, list):
            palette = tuple(tuple(int(c) for c in colour) for colour in palette)
        elif palette is not None and palette != "ade20k":
            raise ValueError(f"{where}: palette: expected 'ade20k' or a list of [r, g, b], got {palette!r}")
        return {"palette": palette, "reduce_zero_label": bool(row.get("reduce_zero_label", False))}

    def load_target(
        self,
        path: str | os.PathLike,
        *,
        palette: str | tuple[tuple[int, int, int], ...] | None = None,
        reduce_zero_label: bool = False,
    ) -> torch.Tensor:
        """Class ids [H, W] long (`IGNORE_INDEX`: unlabelled) from an id PNG or, with `palette`, a colour PNG
        decoded to the nearest palette colour; `reduce_zero_label` makes id 0 unlabelled and shifts the rest."""
        with Image.open(path) as image:
            if palette is not None:
                codec = SegmentationCodec(palette=palette if isinstance(palette, str) else list(palette))
                return codec.decode(np.array(image.convert("RGB"))).value.long()
            ids = torch.from_numpy(np.array(image).astype(np.int64))
        if ids.ndim != 2:
            raise ValueError(
                f"{path}: target has shape {tuple(ids.shape)}; expected a single-channel class-id PNG "
                "(give 'palette' for colour-coded maps)"
            )
        if reduce_zero_label:
            ids = torch.where(ids == 0, IGNORE_INDEX, ids - 1)
        return ids

    def out_channels(self, num_classes: int) -> int:
        return num_classes

    def dense_map(self, raw: torch.Tensor) -> torch.Tensor:
        """Logits -> class ids [n, h, w]."""
        return raw.argmax(dim=1)

    def dense_loss(
        self, raw: torch.Tensor, target: torch.Tensor, *, dice_weight: float = 1.0, **settings: Any
    ) -> torch.Tensor:
        """Cross-entropy + `dice_weight` x Dice, unlabelled pixels left out."""
        return seg_ce_dice_loss(
            raw.float(), target.long(), ignore_index=IGNORE_INDEX, dice_weight=dice_weight
        )

    def image_to_map(self, codec: ModalityCodec, image: torch.Tensor) -> torch.Tensor:
        """The class of the nearest palette colour at every pixel (the ignore colour is not a
        candidate, so every pixel of a generated image gets a class)."""
        pixels = image.movedim(1, -1)  # [n, h, w, 3]
        palette = codec.palette.to(pixels.device)
        return (
            torch.cdist(pixels.reshape(pixels.shape[0], -1, 3), palette[None])
            .argmin(-1)
            .reshape(pixels.shape[:-1])
        )

    def map_metrics(self, pred: torch.Tensor, target: torch.Tensor, *, num_classes: int) -> dict[str, float]:
        """mIoU over the batch's pixels (classes present in the ground truth or the prediction)."""
        confmat = confusion_matrix(pred, target, num_classes, ignore_index=IGNORE_INDEX)
        return {self.metric_names[0]: mean_iou(confmat)}


def instance_codec(**kwargs: Any) -> SegmentationCodec:
    """Instance ids 0..254 (255 = ignore) with a generated palette, unless overridden."""
    if kwargs.pop("instance", True) is not True:
        raise ValueError("instance: the 'instance' modality always has instance=True")
    kwargs.setdefault("palette", "auto")
    kwargs.setdefault("num_classes", 255)
    return SegmentationCodec(instance=True, **kwargs)


class InstanceModality(SegmentationModality):
    """Instance ids 0..254 (255 unlabelled) drawn with a generated palette; a codec-only modality
    (no COOPER tags: attach it with ``tags``)."""

    metric_names = ("instance/miou",)
    default_name = "instance"
    default_codec = staticmethod(instance_codec)
    default_tool = None
    default_display = Display("auto", None, "instances")

    def codec_defaults(self, *, num_classes: int, depth_mode: str) -> dict[str, Any]:
        return {"num_classes": num_classes}
