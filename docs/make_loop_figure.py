"""Make docs/img/loop.png, the home page's picture of the loop, with the library itself.

A synthetic scene (`render_scenes`), one of its depth questions (`make_qa`), a depth map in the
place the tool call inserts one (the scene's true depth, standing in for the head's prediction,
drawn by the depth modality's display codec as the reasoner shows it to the model, with its colour
bar in metres), and COOPER's turns around it. Run from the repository root:

    python docs/make_loop_figure.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from cooper_lib.data.synthetic import make_qa, render_scenes
from cooper_lib.data.synthetic.traces import default_codecs
from cooper_lib.modalities import make_grid, to_pil

OUT = Path(__file__).parent / "img" / "loop.png"
CELL, GAP, TEXT_WIDTH = 224, 28, 230


def _text_panel(title: str, lines: list[str], font: ImageFont.ImageFont) -> Image.Image:
    panel = Image.new("RGB", (TEXT_WIDTH, CELL), "#f4f6fb")
    draw = ImageDraw.Draw(panel)
    draw.rectangle([(0, 0), (TEXT_WIDTH - 1, CELL - 1)], outline="#8a94a6")
    draw.text((10, 10), title, fill="#1f3b73", font=font)
    for k, line in enumerate(lines):
        draw.text((10, 40 + 20 * k), line, fill="black", font=font)
    return panel


def main() -> None:
    (scene,) = render_scenes(1, seed=7)
    question = next(q for q in make_qa(scene, 0, per_category=2) if q.modality == "depth")
    codec = default_codecs()["depth"]
    depth = make_grid([(None, scene.depth)], codec, titles=("", ""), cell_height=CELL)
    depth = depth.crop((CELL + 12, 14, depth.width, 22 + CELL + 8))  # the map and its colour bar
    font = ImageFont.load_default(size=14)
    words = question.question.split()
    wrapped = [" ".join(words[i : i + 4]) for i in range(0, len(words), 4)]
    panels = [
        ("image", to_pil(scene.rgb).resize((CELL, CELL))),
        (
            "question, think",
            _text_panel(
                "<think>", [*wrapped[:5], "a depth map would help", "</think>", "<depth-estimation>"], font
            ),
        ),
        ("depth map (tool result, m)", depth),
        ("answer", _text_panel("<think> ... </think>", ["<answer>", question.answer, "</answer>"], font)),
    ]
    width = sum(p.width for _, p in panels) + GAP * (len(panels) + 1)
    canvas = Image.new("RGB", (width, CELL + 50), "white")
    draw = ImageDraw.Draw(canvas)
    x = GAP
    for k, (title, panel) in enumerate(panels):
        draw.text((x + panel.width // 2, 14), title, fill="black", font=font, anchor="mm")
        canvas.paste(panel, (x, 30))
        x += panel.width + GAP
        if k < len(panels) - 1:
            y = 30 + CELL // 2
            draw.line([(x - GAP + 4, y), (x - 6, y)], fill="#1f3b73", width=3)
            draw.polygon([(x - 4, y), (x - 11, y - 6), (x - 11, y + 6)], fill="#1f3b73")
    OUT.parent.mkdir(exist_ok=True)
    canvas.save(OUT)
    print(
        f"wrote {OUT} ({canvas.width} x {canvas.height}); question: {question.question} -> {question.answer}"
    )


if __name__ == "__main__":
    main()
