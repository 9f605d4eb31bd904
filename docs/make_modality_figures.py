"""Make the pictures of docs/modalities.md and docs/tokenizers.md with the library.

Writes into docs/img/:

- ``modalities_depth.png``: scenes of the synthetic world with their depth in the three encodings;
- ``modalities_maps.png``: semantic classes (ADE20K palette), instances (generated palette), normals;
- ``modalities_palettes.png``: the ADE20K palette next to ``make_palette(150)``;
- ``modalities_noise.png``: decoding a noisy segmentation pseudo-image, with the per-pixel distance;
- ``tokenizers_vq.png``: a ``make_grid`` of RGB, target depth and the depth a small VQ tokenizer
  (trained here: the script needs about 12 minutes of CPU time) reconstructs from its codes.

Run from the repository root (prints the figures quoted on the pages):

    python docs/make_modality_figures.py
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from cooper_lib.data.synthetic import SceneConfig, render_scenes
from cooper_lib.modalities import (
    DepthCodec,
    NormalsCodec,
    SegmentationCodec,
    ade20k_palette,
    make_grid,
    make_palette,
    to_pil,
)
from cooper_lib.tokenizers import VQConfig, VQTokenizer, train_vq_tokenizer

OUT = Path(__file__).parent / "img"
SEED = 7
CELL = 160
GAP, HEADER = 6, 24


def _columns(rows: list[list[Image.Image]], titles: list[str]) -> Image.Image:
    """Cells of CELL x CELL pixels (nearest-neighbour, so code colours stay exact) under titles."""
    font = ImageFont.load_default(size=14)
    canvas = Image.new("RGB", (len(titles) * (CELL + GAP) + GAP, HEADER + len(rows) * (CELL + GAP)), "white")
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(titles):
        draw.text(
            (GAP + j * (CELL + GAP) + CELL // 2, HEADER // 2), title, fill="black", font=font, anchor="mm"
        )
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            canvas.paste(
                cell.resize((CELL, CELL), Image.Resampling.NEAREST),
                (GAP + j * (CELL + GAP), HEADER + i * (CELL + GAP)),
            )
    return canvas


def depth_figure(scenes: list) -> None:
    codecs = {name: DepthCodec(name, min_depth=0.5, max_depth=12.0) for name in ("gray", "log", "spectral")}
    rows = [[to_pil(s.rgb)] + [to_pil(s.depth, codec) for codec in codecs.values()] for s in scenes]
    _columns(rows, ["RGB", "gray (COOPER)", "log", "spectral"]).save(OUT / "modalities_depth.png")


def maps_figure(scenes: list) -> None:
    semantic = SegmentationCodec()  # ADE20K colours for the world's class ids
    instances = SegmentationCodec(num_classes=16, palette="auto", instance=True)
    normals = NormalsCodec()
    rows = [
        [
            to_pil(s.rgb),
            to_pil(s.semantic, semantic),
            to_pil(s.instance, instances),
            to_pil(s.normals, normals),
        ]
        for s in scenes
    ]
    _columns(rows, ["RGB", "classes (ADE20K)", "instances (auto)", "normals"]).save(
        OUT / "modalities_maps.png"
    )


def palettes_figure() -> None:
    def swatches(palette: torch.Tensor) -> Image.Image:
        ids = torch.arange(150).reshape(10, 15)
        codec = SegmentationCodec(palette=palette) if palette is not None else SegmentationCodec()
        return to_pil(ids, codec).resize((15 * 16, 10 * 16), Image.Resampling.NEAREST)

    ade, auto = ade20k_palette(), make_palette(150)
    font = ImageFont.load_default(size=14)
    canvas = Image.new("RGB", (2 * 240 + 3 * GAP, HEADER + 160 + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (title, image) in enumerate(
        [("ADE20K (150)", swatches(None)), ("make_palette(150)", swatches(auto))]
    ):
        x = GAP + k * (240 + GAP)
        draw.text((x + 120, HEADER // 2), title, fill="black", font=font, anchor="mm")
        canvas.paste(image, (x, HEADER))
    canvas.save(OUT / "modalities_palettes.png")
    for name, palette in [("ADE20K", ade), ("make_palette(150)", auto)]:
        colours = palette.float()
        dist = torch.cdist(colours, colours) + torch.eye(len(colours)) * 1e9
        distinct = dist[dist > 0].min()
        print(f"{name}: closest two distinct colours are {float(distinct):.1f} apart (0..255 RGB units)")


def noise_figure(scenes: list) -> None:
    codec = SegmentationCodec()
    generator = torch.Generator().manual_seed(0)
    rows = []
    for s in scenes:
        clean = codec.encode(s.semantic)
        noisy = (clean + 0.04 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
        out = codec.decode(noisy)
        distance = (out.distance / out.distance.max()).expand(3, -1, -1)
        rows.append([to_pil(noisy), to_pil(out.value, codec), to_pil(distance)])
        print(
            f"noise 0.04: {float((out.value == s.semantic).float().mean()):.4f} of pixels decode to their class"
        )
    _columns(rows, ["noisy pseudo-image", "decoded classes", "distance (white = far)"]).save(
        OUT / "modalities_noise.png"
    )


def vq_figure() -> None:
    size = 64
    codec = DepthCodec("gray", min_depth=0.5, max_depth=12.0)
    config = SceneConfig(width=size, height=size, min_objects=2, max_objects=6)
    train = render_scenes(768, seed=1, config=config)
    test = render_scenes(3, seed=99, config=config)
    images = codec.encode(torch.stack([s.depth for s in train]))
    tokenizer = VQTokenizer(
        VQConfig(image_size=size, downsample=4, base_channels=16, codebook_size=256, code_dim=16)
    )
    train_vq_tokenizer(
        tokenizer, images, steps=800, lr=2e-3, batch_size=16, generator=torch.Generator().manual_seed(0)
    )
    depth = torch.stack([s.depth for s in test])
    decoded = codec.decode(tokenizer.decode(tokenizer.encode(codec.encode(depth))))
    valid = decoded.valid & (depth > 0)
    abs_rel = float(((decoded.value - depth).abs() / depth)[valid].mean())
    print(
        f"VQ tokenizer: {tokenizer.num_tokens} codes of {tokenizer.codebook_size}, held-out AbsRel {abs_rel:.3f}"
    )
    rows = [(s.rgb, s.depth, decoded.value[i].nan_to_num(0.0)) for i, s in enumerate(test)]
    grid = make_grid(rows, codec, titles=("RGB", "target depth", "VQ reconstruction"), cell_height=CELL)
    grid.save(OUT / "tokenizers_vq.png")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    torch.manual_seed(0)
    scenes = render_scenes(
        3, seed=SEED, config=SceneConfig(width=CELL, height=CELL, min_objects=3, max_objects=6)
    )
    depth_figure(scenes)
    maps_figure(scenes)
    palettes_figure()
    noise_figure(scenes)
    vq_figure()


if __name__ == "__main__":
    main()
