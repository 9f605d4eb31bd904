"""Make the pictures of docs/synthetic.md with the library, and print the example questions.

Writes docs/img/synthetic_scenes.png (scenes with their depth, segmentation, instance and normal
maps) and docs/img/synthetic_trace.png (the images of one tool-using SFT trace), then prints the
questions and the trace shown on the page. Run from the repository root:

    python docs/make_synthetic_figures.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from cooper_lib.data.synthetic import (
    SEMANTIC_CLASSES,
    SceneConfig,
    make_qa,
    make_traces,
    render_scenes,
)
from cooper_lib.data.synthetic.traces import default_codecs
from cooper_lib.modalities import NormalsCodec, SegmentationCodec, to_pil

OUT = Path(__file__).parent / "img"
SEED = 2024
CELL = 192
GAP, HEADER = 6, 24


def _grid(rows: list[list[Image.Image]], titles: list[str]) -> Image.Image:
    """Cells of CELL x CELL pixels under a row of titles."""
    font = ImageFont.load_default(size=14)
    width = len(titles) * (CELL + GAP) + GAP
    canvas = Image.new("RGB", (width, HEADER + len(rows) * (CELL + GAP)), "white")
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


def main() -> None:
    OUT.mkdir(exist_ok=True)
    config = SceneConfig(width=CELL, height=CELL, min_objects=3, max_objects=7)
    scenes = render_scenes(4, seed=SEED, config=config)
    codecs = default_codecs()
    instances = SegmentationCodec(num_classes=9, palette="auto", instance=True)
    rows = []
    for scene in scenes:
        far = scene.depth.where(scene.valid_mask, codecs["depth"].max_depth)
        rows.append(
            [
                to_pil(scene.rgb),
                to_pil(far, codecs["depth"]),
                to_pil(scene.semantic, codecs["segmentation"]),
                to_pil(scene.instance, instances),
                to_pil(scene.normals, NormalsCodec()),
            ]
        )
    titles = ["RGB", "depth (Spectral, 0-20 m)", "semantic classes", "instances", "normals (camera)"]
    _grid(rows, titles).save(OUT / "synthetic_scenes.png")

    scene = scenes[1]
    print(f"Scene seed {scene.seed}; classes {SEMANTIC_CLASSES}")
    for obj in scene.objects:
        print(
            f"  {obj.name}: distance {obj.distance:.2f} m, size {tuple(round(s, 2) for s in obj.size)}, "
            f"visible {obj.visible_pixels} px, occlusion {obj.occlusion:.2f}"
        )
    questions = make_qa(scene, 0)
    print("\n| category | question | answer | map | CPR |\n| --- | --- | --- | --- | --- |")
    for q in questions:
        prompt = q.prompt.replace("\n", "<br>")
        print(f"| {q.category} | {prompt} | {q.boxed} | {q.modality or '-'} | {q.cpr} |")

    depth_questions = [q for q in questions if q.modality == "depth"]
    (trace,) = make_traces(scene, depth_questions[:1], 0, tool_ratio=1.0)
    images = [to_pil(item.value) for item in trace.items if item.type == "image"]
    _grid([images], ["input image", "inserted depth map"]).save(OUT / "synthetic_trace.png")
    print("\nTrace:")
    for item in trace.items:
        shown = (
            item.value if item.type == "text" else f"<image{': ' + item.modality if item.modality else ''}>"
        )
        print(f"[{item.role}{', loss' if item.need_loss else ''}] {shown}")


if __name__ == "__main__":
    main()
