"""Depth codec: metric (or relative) depth maps <-> RGB pseudo-images, COOPER's way and two more.

Encodings (``t`` is the depth's position in [0, 1]):

- ``"gray"`` (COOPER's): ``t = (d - min_depth) / (max_depth - min_depth)``, three equal channels,
  near is dark. Decode: mean of the channels, then the inverse linear map.
- ``"log"``: ``t = log(d / min_depth) / log(max_depth / min_depth)``, three equal channels; equal
  relative depth steps everywhere, which suits a range spanning indoor and outdoor scenes.
- ``"spectral"``: ``t`` as in ``"gray"``, drawn with matplotlib's "Spectral" table (what COOPER
  shows the model); decode picks the nearest table colour and returns its bin centre.

Invalid pixels (depth 0, NaN, inf, outside the range, or False in ``mask``) are never turned into
a depth: they are drawn in ``invalid_color`` (magenta by default, far from every code colour) and
decode reports a pixel invalid when it is nearer ``invalid_color`` than the code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

from cooper_lib.modalities._convert import (
    as_tensor,
    channel_norm,
    image_pixels,
    map_tensor,
    mask_tensor,
    parse_colour,
)
from cooper_lib.modalities._nearest import nearest_colour
from cooper_lib.modalities.base import ArrayLike, DecodedMap, ModalityCodec
from cooper_lib.modalities.colormaps import colormap_index, spectral_lut
from cooper_lib.modalities.depth_metrics import abs_rel
from cooper_lib.modalities.modality import Display, Modality
from cooper_lib.ops.depth_losses import silog_loss, ssi_depth_loss

__all__ = ["DEPTH_PRESETS", "DepthCodec", "DepthModality", "DepthPreset", "depth_from_png", "depth_to_png"]

DepthEncoding = Literal["gray", "log", "spectral"]
ENCODINGS: tuple[str, ...] = ("gray", "log", "spectral")
DEFAULT_DEPTH_RANGE: tuple[float, float] = (1e-3, 80.0)
MIN_INVALID_SEPARATION = 0.1  # RGB distance the invalid colour must keep from every code colour


@dataclass(frozen=True)
class DepthPreset:
    """A dataset's depth convention: clamp range in metres and PNG integer units per metre."""

    min_depth: float
    max_depth: float
    png_scale: float


DEPTH_PRESETS: dict[str, DepthPreset] = {
    "nyu": DepthPreset(1e-3, 10.0, 1000.0),
    "hypersim": DepthPreset(1e-5, 65.0, 1000.0),
    "vkitti": DepthPreset(1e-5, 80.0, 100.0),
    "kitti": DepthPreset(1e-5, 80.0, 256.0),
}


def _preset(preset: str | None) -> DepthPreset | None:
    if preset is None:
        return None
    if preset not in DEPTH_PRESETS:
        raise ValueError(f"preset: expected one of {sorted(DEPTH_PRESETS)} or None, got {preset!r}")
    return DEPTH_PRESETS[preset]


def _png_scale(preset: str | None, scale: float | None) -> float:
    if (preset is None) == (scale is None):
        raise ValueError(f"give exactly one of preset= or scale=, got preset={preset!r}, scale={scale!r}")
    value = scale if scale is not None else _preset(preset).png_scale
    if not value > 0:
        raise ValueError(f"scale: expected a positive number of PNG units per metre, got {value}")
    return float(value)


def depth_from_png(
    png: ArrayLike | str | os.PathLike, preset: str | None = None, scale: float | None = None
) -> torch.Tensor:
    """Integer depth PNG (path, PIL image, array or tensor) -> float32 metres: ``value / scale``.

    The scale comes from ``preset`` (nyu/hypersim 1000, vkitti 100, kitti 256) or ``scale``.
    A PNG value of 0 ("no depth") stays 0, which every encoding treats as invalid.
    """
    factor = _png_scale(preset, scale)
    if isinstance(png, str | os.PathLike):
        with Image.open(png) as image:
            png = np.array(image)
    values = as_tensor(png, "png")
    if values.is_floating_point() or values.dtype == torch.bool:
        raise TypeError(f"png: expected integer PNG depth, got dtype {values.dtype}")
    return values.to(torch.float32) / factor


def depth_to_png(depth: ArrayLike, preset: str | None = None, scale: float | None = None) -> np.ndarray:
    """Float metres -> uint16 PNG values ``round(depth * scale)``; invalid depth (0, NaN, inf) -> 0.

    Raises:
        ValueError: negative depth, or a depth too large for 16 bits at this scale.
    """
    factor = _png_scale(preset, scale)
    values = map_tensor(depth, "depth").double()
    finite = torch.isfinite(values)
    if (finite & (values < 0)).any():
        raise ValueError(f"depth: must be non-negative, found {float(values[finite].min())}")
    units = torch.where(finite, values * factor, 0.0).round()
    if units.max() > 65535:
        raise ValueError(f"depth: {float(values[finite].max())} m exceeds 16 bits at scale {factor}")
    return units.numpy().astype(np.uint16)


class DepthCodec(ModalityCodec):
    """Depth maps in metres (or relative depth) <-> RGB pseudo-images.

    Args:
        encoding: ``"gray"``, ``"log"`` or ``"spectral"`` (see the module docstring).
        preset: ``"nyu"``, ``"hypersim"``, ``"vkitti"`` or ``"kitti"``: COOPER's range and PNG
            scale for that dataset. Explicit ``min_depth`` / ``max_depth`` / ``png_scale`` override it.
        min_depth: near end of the range in metres (default 1e-3 without a preset).
        max_depth: far end in metres (default 80 without a preset).
        relative: normalise each map by its own valid min and max instead of a fixed range; decode
            then returns the position in [0, 1] (linear in log-depth for ``"log"``), units "relative".
        out_of_range: ``"invalid"`` (default) marks depths outside the range invalid; ``"clamp"``
            clamps them into it, as COOPER does (0, NaN and inf stay invalid either way).
        invalid_color: colour of invalid pixels (ints 0..255 or floats 0..1), at least 0.1 away
            from every code colour.
        spectral_levels: entries of the Spectral table; 256 is matplotlib's.
        png_scale: PNG integer units per metre for ``from_png`` (default: the preset's).

    Round trips: float ``"gray"`` is exact to float32 precision; quantised to uint8 it is within
    half an 8-bit step of the range. ``"spectral"`` is within half a table bin (0.2% of the range
    at 256 levels), also after uint8 quantisation (every table colour rounded to 8 bits is still
    nearest to itself). Near the pale middle of the Spectral table (t around 0.5) the colour
    curve folds back on itself, so there noise of a few 8-bit steps can move a decoded depth by
    several bins; ``"gray"`` degrades evenly everywhere.
    """

    name = "depth"

    def __init__(
        self,
        encoding: DepthEncoding = "gray",
        preset: str | None = None,
        min_depth: float | None = None,
        max_depth: float | None = None,
        *,
        relative: bool = False,
        out_of_range: Literal["invalid", "clamp"] = "invalid",
        invalid_color: Sequence[int] | Sequence[float] = (255, 0, 255),
        spectral_levels: int = 256,
        png_scale: float | None = None,
    ) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding: expected one of {ENCODINGS}, got {encoding!r}")
        if out_of_range not in ("invalid", "clamp"):
            raise ValueError(f'out_of_range: expected "invalid" or "clamp", got {out_of_range!r}')
        spec = _preset(preset)
        self.encoding = encoding
        self.preset = preset
        self.relative = relative
        self.out_of_range = out_of_range
        if relative:
            if min_depth is not None or max_depth is not None:
                raise ValueError(
                    "min_depth/max_depth: a relative codec normalises each map itself; leave them None"
                )
            self.min_depth, self.max_depth = None, None
            self.value_range: tuple[float, float] | None = (0.0, 1.0)
            self.units = "relative"
        else:
            default = (spec.min_depth, spec.max_depth) if spec else DEFAULT_DEPTH_RANGE
            self.min_depth = float(min_depth if min_depth is not None else default[0])
            self.max_depth = float(max_depth if max_depth is not None else default[1])
            if not 0 < self.min_depth < self.max_depth < math.inf:
                raise ValueError(
                    f"min_depth/max_depth: expected 0 < min_depth < max_depth < inf, got "
                    f"{self.min_depth}, {self.max_depth}"
                )
            self.value_range = (self.min_depth, self.max_depth)
            self.units = "m"
        self.png_scale = png_scale if png_scale is not None else (spec.png_scale if spec else None)
        self.spectral_levels = spectral_levels
        self._lut = spectral_lut(spectral_levels) if encoding == "spectral" else None
        self._invalid_color_arg = tuple(invalid_color)
        self.invalid_color = parse_colour(invalid_color, "invalid_color")
        separation = float(self._code_distance(self.invalid_color[:, None, None]).squeeze())
        if separation < MIN_INVALID_SEPARATION:
            raise ValueError(
                f"invalid_color: {self._invalid_color_arg} is {separation:.3f} from the {encoding} code; "
                f"it must be at least {MIN_INVALID_SEPARATION} away to be told apart"
            )

    @property
    def config(self) -> dict[str, Any]:
        return {
            "encoding": self.encoding,
            "preset": self.preset,
            "min_depth": self.min_depth,
            "max_depth": self.max_depth,
            "relative": self.relative,
            "out_of_range": self.out_of_range,
            "invalid_color": list(self._invalid_color_arg),
            "spectral_levels": self.spectral_levels,
            "png_scale": self.png_scale,
        }

    def _forward(self, depth: torch.Tensor) -> torch.Tensor:
        return depth.log() if self.encoding == "log" else depth

    def to_unit(self, depth: torch.Tensor) -> torch.Tensor:
        """Metric depth -> its position ``t`` in the range (0 at min_depth, 1 at max_depth), unclamped."""
        if self.relative:
            raise ValueError("to_unit: a relative codec has no fixed range; encode() normalises per map")
        lo, hi = self._forward(torch.tensor([self.min_depth, self.max_depth], dtype=torch.float64)).tolist()
        return (self._forward(depth) - lo) / (hi - lo)

    def from_unit(self, t: torch.Tensor) -> torch.Tensor:
        """Position ``t`` in [0, 1] -> depth in this codec's units (metres, or ``t`` itself if relative)."""
        if self.relative:
            return t
        if self.encoding == "log":
            lo, hi = math.log(self.min_depth), math.log(self.max_depth)
            return torch.exp(lo + t * (hi - lo))
        return self.min_depth + t * (self.max_depth - self.min_depth)

    def unit_colours(self, t: torch.Tensor) -> torch.Tensor:
        """Code colours ``(..., 3, N)`` of positions ``t`` ``(..., N)`` in [0, 1] (for colour bars)."""
        return self._colour(t.float().clamp(0.0, 1.0).unsqueeze(-2)).squeeze(-2)

    def _relative_unit(self, depth: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        values = self._forward(torch.where(valid, depth, 1.0))
        flat_values, flat_valid = values.flatten(-2), valid.flatten(-2)
        lo = torch.where(flat_valid, flat_values, math.inf).amin(-1)[..., None, None]
        hi = torch.where(flat_valid, flat_values, -math.inf).amax(-1)[..., None, None]
        span = torch.where(hi > lo, hi - lo, 1.0)
        return (values - lo) / span

    def _colour(self, t: torch.Tensor) -> torch.Tensor:
        if self._lut is None:
            return t.unsqueeze(-3).expand(*t.shape[:-2], 3, *t.shape[-2:])
        lut = self._lut.to(t.device)
        return lut[colormap_index(t, self.spectral_levels)].movedim(-1, -3)

    def _code_distance(self, pixels: torch.Tensor) -> torch.Tensor:
        if self._lut is None:
            return channel_norm(pixels - pixels.mean(-3, keepdim=True))
        return nearest_colour(pixels, self._lut)[1]

    def encode(self, x: ArrayLike, mask: ArrayLike | None = None) -> torch.Tensor:
        """Depth ``(..., H, W)`` (float metres; 0 marks missing depth) -> float32 ``(..., 3, H, W)``.

        Raises:
            TypeError: ``x`` is not floating point (integer PNG depth: use ``from_png`` first).
            ValueError: ``x`` has negative depth, or ``mask`` has the wrong shape.
        """
        depth = map_tensor(x, "x")
        if not depth.is_floating_point():
            raise TypeError(
                f"x: expected float depth in metres, got dtype {depth.dtype}; "
                "convert integer PNG depth with DepthCodec.from_png or depth_from_png"
            )
        finite = torch.isfinite(depth)
        if (finite & (depth < 0)).any():
            raise ValueError(
                f"x: depth must be non-negative (0 marks missing depth), found {float(depth[finite].min())}"
            )
        valid = finite & (depth > 0)
        keep = mask_tensor(mask, depth.shape, depth.device)
        if keep is not None:
            valid &= keep
        if self.relative:
            t = self._relative_unit(depth, valid)
        else:
            if self.out_of_range == "clamp":
                depth = depth.clamp(self.min_depth, self.max_depth)
            else:
                valid &= (depth >= self.min_depth) & (depth <= self.max_depth)
            t = self.to_unit(torch.where(valid, depth, self.min_depth))
        t = torch.where(valid, t, 0.0).clamp(0.0, 1.0).float()
        colour = self._colour(t)
        invalid = self.invalid_color.to(depth.device)[:, None, None]
        return torch.where(valid.unsqueeze(-3), colour, invalid).contiguous()

    def decode(self, img: ArrayLike) -> DecodedMap:
        """Pseudo-image ``(..., 3, H, W)`` -> depth (NaN where invalid), validity and code distance."""
        raw = image_pixels(img, "img")
        pixels = raw.float() / 255.0 if raw.dtype == torch.uint8 else raw
        if self._lut is None:
            t = pixels.mean(-3).clamp(0.0, 1.0)
            distance = self._code_distance(pixels)
        else:
            index, distance = nearest_colour(raw, self._lut)
            t = (index.float() + 0.5) / self.spectral_levels
        off_code = channel_norm(pixels - self.invalid_color.to(pixels.device)[:, None, None])
        valid = distance <= off_code
        value = torch.where(valid, self.from_unit(t), math.nan)
        return DecodedMap(value=value, valid=valid, distance=distance)

    def from_png(self, png: ArrayLike | str | os.PathLike) -> torch.Tensor:
        """Integer depth PNG -> float32 metres with this codec's ``png_scale`` (0 stays 0 = missing)."""
        if self.png_scale is None:
            raise ValueError("png_scale: this codec has no PNG scale; build it with preset= or png_scale=")
        return depth_from_png(png, scale=self.png_scale)


DISPLAY_RANGE: tuple[float, float] = (1e-3, 20.0)
"""Metres the depth shown to a model spreads over the Spectral table (farther clamps): the synthetic
SFT traces' and the reasoner's range."""


def check_display_range(value_range: tuple[float, float], name: str) -> tuple[float, float]:
    """`value_range` as (near, far) floats with 0 < near < far < inf, else a ValueError naming `name`."""
    if len(value_range) != 2 or not 0 < float(value_range[0]) < float(value_range[1]) < math.inf:
        raise ValueError(f"{name}: expected (near, far) metres with 0 < near < far < inf, got {value_range}")
    return float(value_range[0]), float(value_range[1])


DEPTH_TAGS = ("<depth-estimation>", "</depth-estimation>")
DEPTH_INSTRUCTION = "Estimate the depth of the image and generate the depth map."


class DepthModality(Modality):
    """Depth in metres (``depth_mode="metric"``) or relative depth: a float map, 0 / NaN / inf /
    negative invalid. Dense head: log-depth, SILog (metric) or scale-and-shift-invariant loss
    (relative). Stage-1 targets: integer PNGs divided by ``depth_scale`` or a preset's scale.
    Metric: AbsRel over valid pixels, averaged over maps."""

    default_name = "depth"
    default_codec = DepthCodec
    default_tool = (*DEPTH_TAGS, DEPTH_INSTRUCTION)
    default_priority = 1
    default_display = Display("Spectral", DISPLAY_RANGE, "m")
    kind = "float"
    record_keys = ("depth_scale", "depth_preset")
    metric_names = ("depth/abs_rel",)
    scaled_png = True

    def codec_defaults(self, *, num_classes: int, depth_mode: str) -> dict[str, Any]:
        return {"relative": True} if depth_mode == "relative" else {}

    def display_codec(
        self, *, num_classes: int, depth_mode: str, value_range: tuple[float, float] | None = None
    ) -> DepthCodec:
        """Spectral colours (COOPER's) per map for relative depth, else over `value_range` metres
        (default `DISPLAY_RANGE`), clamped."""
        if depth_mode == "relative":
            if value_range is not None:
                raise ValueError(
                    f"value_range: relative depth is drawn over each map's own range; expected None, got {value_range}"
                )
            return DepthCodec("spectral", relative=True)
        low, high = check_display_range(value_range or self.display.value_range, "value_range")
        return DepthCodec("spectral", min_depth=low, max_depth=high, out_of_range="clamp")

    def valid_mask(self, target: torch.Tensor) -> torch.Tensor:
        return torch.isfinite(target) & (target > 0)

    def clean_target(self, target: torch.Tensor) -> torch.Tensor:
        """Missing depth as 0, which every depth encoding treats as invalid."""
        target = target.float()
        return torch.where(self.valid_mask(target), target, 0.0)

    def target_options(self, row: Mapping[str, Any], where: str) -> dict[str, Any]:
        """``{"scale": PNG units per metre}`` from exactly one of ``depth_scale`` / ``depth_preset``."""
        if (row.get("depth_scale") is None) == (row.get("depth_preset") is None):
            raise ValueError(f"{where}: a depth record needs exactly one of depth_scale or depth_preset")
        if row.get("depth_preset") is not None:
            if row["depth_preset"] not in DEPTH_PRESETS:
                raise ValueError(
                    f"{where}: depth_preset: expected one of {sorted(DEPTH_PRESETS)}, got {row['depth_preset']!r}"
                )
            return {"scale": DEPTH_PRESETS[row["depth_preset"]].png_scale}
        scale = float(row["depth_scale"])
        if not scale > 0:
            raise ValueError(
                f"{where}: depth_scale: expected a positive number of PNG units per metre, got {scale}"
            )
        return {"scale": scale}

    def load_target(self, path: str | os.PathLike, *, scale: float | None = None) -> torch.Tensor:
        """Depth [H, W] metres (0: invalid) from an integer PNG of `scale` units per metre."""
        if scale is None:
            raise ValueError(
                f"{path}: a depth target PNG needs its scale (depth_scale / depth_preset in stage-1 records, "
                "target_scale or a manifest.json with depth_scale for SFT records)"
            )
        return depth_from_png(path, scale=scale)

    def init_dense_output(self, layer: nn.Conv2d, *, init_depth: float = 3.0, **settings: Any) -> None:
        """Bias at log(`init_depth`): the untrained head predicts a mid-range depth everywhere, which
        spares SILog (weighing the global scale by only 1 - lambda) learning the scale."""
        nn.init.constant_(layer.bias, math.log(init_depth))

    def dense_map(self, raw: torch.Tensor) -> torch.Tensor:
        """Log-depth -> positive depth [n, h, w]."""
        return raw[:, 0].float().exp()

    def dense_loss(
        self,
        raw: torch.Tensor,
        target: torch.Tensor,
        *,
        depth_mode: str = "metric",
        silog_lambda: float = 0.85,
        **settings: Any,
    ) -> torch.Tensor:
        """SILog (metric) or the scale-and-shift-invariant loss (relative) over valid pixels."""
        valid = self.valid_mask(target)
        clean = torch.where(valid, target, torch.ones_like(target))
        pred = self.dense_map(raw)
        if depth_mode == "metric":
            return silog_loss(pred, clean, valid, lambd=silog_lambda)
        return ssi_depth_loss(pred, clean, valid)

    def map_metrics(self, pred: torch.Tensor, target: torch.Tensor, *, num_classes: int) -> dict[str, float]:
        """AbsRel (valid pixels) averaged over the maps that have any valid pixel."""
        gt = target.float()
        valid = self.valid_mask(gt)
        scores = [abs_rel(p, g, v) for p, g, v in zip(pred, gt, valid, strict=True) if bool(v.any())]
        return {self.metric_names[0]: sum(scores) / len(scores)} if scores else {}
