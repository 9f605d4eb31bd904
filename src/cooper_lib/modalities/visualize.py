"""Pictures of auxiliary maps: one map as a PIL image, and input / target / prediction grids.

Maps are drawn through their codec, so a picture shows exactly the pseudo-image a model sees;
depth grids get a colour bar labelled in the codec's units, segmentation grids a legend of the
classes they show. A depth grid asked for by name without a range or preset is drawn over the
range of its own maps (0 to their largest depth, rounded up to a metre), not the default 0-80 m.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont

from cooper_lib import images
from cooper_lib.modalities.base import ArrayLike, ModalityCodec
from cooper_lib.modalities.depth import DepthCodec
from cooper_lib.modalities.registry import get_codec
from cooper_lib.modalities.segmentation import SegmentationCodec

__all__ = ["make_grid", "to_pil"]

GridRow = Sequence[ArrayLike | None]


def _codec(modality: str | ModalityCodec, codec_kwargs: dict[str, Any]) -> ModalityCodec:
    if isinstance(modality, str):
        return get_codec(modality, **codec_kwargs)
    if codec_kwargs:
        raise TypeError(f"codec keyword arguments {sorted(codec_kwargs)} need modality given by name")
    return modality


def to_pil(x: ArrayLike, modality: str | ModalityCodec | None = None, **codec_kwargs: Any) -> Image.Image:
    """One image or map as an RGB PIL image.

    Args:
        x: with ``modality`` None, an image (any input `cooper_lib.images.to_pil` takes: a
            ``(3, H, W)`` tensor in [0, 1] or uint8, a batch of 1, numpy/PIL channel-last, ...);
            otherwise a single map for that modality, drawn through its codec.
        modality: a registered modality name or a codec.
        **codec_kwargs: arguments for the codec when ``modality`` is a name.
    """
    if modality is None:
        if codec_kwargs:
            raise TypeError(f"codec keyword arguments {sorted(codec_kwargs)} need a modality")
        return images.to_pil(x, "x")
    return images.to_pil(_codec(modality, codec_kwargs).encode(x), "x")


def _fit(image: Image.Image, height: int, resample: Image.Resampling) -> Image.Image:
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), resample)


def _colour_bar(codec: DepthCodec, height: int, font: ImageFont.ImageFont) -> Image.Image:
    """A vertical bar (far at the top) with five ticks labelled in the codec's units."""
    bar_width, tick, pad = 16, 4, 4
    positions = torch.linspace(1.0, 0.0, height)
    strip = codec.unit_colours(positions)[:, :, None].expand(3, height, bar_width)
    labels = [
        (t, codec.from_unit(torch.tensor(t, dtype=torch.float64)).item()) for t in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    texts = [f"{value:.3g}" + ("" if codec.units == "relative" else f" {codec.units}") for _, value in labels]
    text_width = max(font.getbbox(text)[2] for text in texts)
    canvas = Image.new("RGB", (bar_width + tick + pad + text_width + pad, height + 16), "white")
    canvas.paste(to_pil(strip), (0, 8))
    draw = ImageDraw.Draw(canvas)
    for (t, _), text in zip(labels, texts, strict=True):
        y = 8 + round((1.0 - t) * (height - 1))
        draw.line([(bar_width, y), (bar_width + tick, y)], fill="black")
        draw.text((bar_width + tick + pad, y), text, fill="black", font=font, anchor="lm")
    return canvas


def _legend(
    codec: SegmentationCodec,
    maps: list[torch.Tensor],
    names: Sequence[str] | None,
    height: int,
    font: ImageFont.ImageFont,
) -> Image.Image | None:
    """Colour swatches of the class ids the maps show (at most as many as fit in `height`)."""
    ids = sorted(
        {int(i) for m in maps for i in torch.as_tensor(m).long().unique() if 0 <= int(i) < codec.num_classes}
    )
    if not ids:
        return None
    row, swatch, pad = 18, 12, 4
    ids = ids[: max(1, height // row)]
    texts = [f"{i}" + (f" {names[i]}" if names is not None and i < len(names) else "") for i in ids]
    text_width = max(font.getbbox(text)[2] for text in texts)
    canvas = Image.new("RGB", (swatch + pad + text_width + pad, len(ids) * row + 8), "white")
    draw = ImageDraw.Draw(canvas)
    colours = (codec.encode(torch.tensor([ids])) * 255).round().byte()
    for k, text in enumerate(texts):
        y = 8 + k * row
        draw.rectangle(
            [(0, y), (swatch - 1, y + swatch - 1)], fill=tuple(colours[:, 0, k].tolist()), outline="black"
        )
        draw.text((swatch + pad, y + swatch // 2), text, fill="black", font=font, anchor="lm")
    return canvas


def _fitted_depth_codec(rows: Sequence[GridRow]) -> DepthCodec:
    """A depth codec over 0 .. the grid maps' largest depth rounded up to a metre."""
    values = [torch.as_tensor(e).float() for row in rows for e in list(row)[1:] if e is not None]
    finite = [v[torch.isfinite(v) & (v > 0)] for v in values]
    largest = max((float(v.max()) for v in finite if v.numel()), default=1.0)
    return DepthCodec(max_depth=max(1.0, math.ceil(largest)))


def make_grid(
    rows: Sequence[GridRow],
    modality: str | ModalityCodec,
    *,
    titles: Sequence[str] = ("input", "target", "prediction"),
    cell_height: int = 192,
    colorbar: bool = True,
    legend: bool = True,
    class_names: Sequence[str] | None = None,
    **codec_kwargs: Any,
) -> Image.Image:
    """A grid with one row per example: input RGB, target map, predicted map.

    Args:
        rows: each ``(rgb, target, prediction)``; rgb is an image ``(3, H, W)``, target and
            prediction are maps for ``modality``; any entry may be None (left blank).
        modality: a registered modality name or a codec; it draws the maps.
        titles: column headings.
        cell_height: every cell is resized to this height, keeping its aspect ratio (maps with
            nearest-neighbour sampling so palette colours stay exact).
        colorbar: add a labelled colour bar on the right for depth codecs.
        legend: add a legend of the classes shown on the right for segmentation codecs.
        class_names: names of the class ids, for the legend (default: ids only).
        **codec_kwargs: arguments for the codec when ``modality`` is a name; ``"depth"`` with
            none of them is drawn over the maps' own range (see the module docstring).

    Example:
        >>> import torch
        >>> depth = torch.full((24, 32), 3.0)
        >>> grid = make_grid([(torch.rand(3, 24, 32), depth, depth * 1.1)], "depth")
        >>> grid.size[1] > 192
        True
    """
    if modality == "depth" and not codec_kwargs:
        codec: ModalityCodec = _fitted_depth_codec(rows)
    else:
        codec = _codec(modality, codec_kwargs)
    if not rows:
        raise ValueError("rows: expected at least one (rgb, target, prediction) row, got none")
    cells: list[list[Image.Image | None]] = []
    for i, row in enumerate(rows):
        if len(row) != len(titles):
            raise ValueError(
                f"rows[{i}]: expected {len(titles)} entries ({', '.join(titles)}), got {len(row)}"
            )
        drawn = []
        for j, entry in enumerate(row):
            if entry is None:
                drawn.append(None)
            elif j == 0:
                drawn.append(_fit(to_pil(entry), cell_height, Image.Resampling.BILINEAR))
            else:
                drawn.append(_fit(to_pil(entry, codec), cell_height, Image.Resampling.NEAREST))
        cells.append(drawn)
    font = ImageFont.load_default(size=14)
    gap, header = 6, 22
    widths = [
        max((r[j].width for r in cells if r[j] is not None), default=cell_height) for j in range(len(titles))
    ]
    body_height = len(cells) * (cell_height + gap) - gap
    bar = _colour_bar(codec, body_height, font) if colorbar and isinstance(codec, DepthCodec) else None
    if legend and isinstance(codec, SegmentationCodec):
        maps = [e for row in rows for e in list(row)[1:] if e is not None]
        bar = _legend(codec, maps, class_names, body_height, font)
    width = sum(widths) + gap * (len(widths) + 1) + (bar.width + gap if bar else 0)
    canvas = Image.new("RGB", (width, header + body_height + gap), "white")
    draw = ImageDraw.Draw(canvas)
    x = gap
    for j, title in enumerate(titles):
        draw.text((x + widths[j] // 2, header // 2), title, fill="black", font=font, anchor="mm")
        for i, row in enumerate(cells):
            if row[j] is not None:
                canvas.paste(row[j], (x, header + i * (cell_height + gap)))
        x += widths[j] + gap
    if bar is not None:
        canvas.paste(bar, (x, header - 8))
    return canvas
