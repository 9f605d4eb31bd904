"""Draw docs/img/architecture_layers.png: the import layers of cooper_lib, top to bottom.

The layers are read from the import-linter contract in pyproject.toml (the one CI enforces), and
each box counts the modules of its package and the imports it makes into lower layers, from the
package's own import graph (grimp, which import-linter uses). Run from the repository root:

    python docs/make_architecture_figure.py
"""

from __future__ import annotations

from pathlib import Path

import grimp
import tomllib
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "architecture_layers.png"
WIDTH, ROW, GAP, MARGIN = 900, 54, 14, 16


def layers() -> list[list[str]]:
    """The contract's layers, top first, each a list of sibling modules."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [[name.strip() for name in layer.split("|")] for layer in contract["layers"]]


def main() -> None:
    graph = grimp.build_graph("cooper_lib", cache_dir=None)
    rows = layers()
    font = ImageFont.load_default(size=15)
    small = ImageFont.load_default(size=12)
    height = MARGIN * 2 + len(rows) * ROW + (len(rows) - 1) * GAP
    canvas = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(canvas)
    left, right = MARGIN + 40, WIDTH - MARGIN
    for i, row in enumerate(rows):
        top = MARGIN + i * (ROW + GAP)
        width = (right - left - GAP * (len(row) - 1)) / len(row)
        for j, name in enumerate(row):
            x0 = left + j * (width + GAP)
            package = f"cooper_lib.{name}"
            modules = {package} | graph.find_descendants(package) if package in graph.modules else set()
            imported = {m for src in modules for m in graph.find_modules_directly_imported_by(src)}
            external = {m for m in imported if m.startswith("cooper_lib.") and m not in modules}
            shade = (232, 240, 252) if i % 2 == 0 else (240, 246, 236)
            draw.rounded_rectangle((x0, top, x0 + width, top + ROW), radius=6, fill=shade, outline="#5a6f8f")
            draw.text((x0 + 10, top + 8), name, fill="black", font=font)
            draw.text(
                (x0 + 10, top + 30),
                f"{len(modules)} module{'s' * (len(modules) != 1)}; uses {len(external)} modules of lower layers",
                fill="#555555",
                font=small,
            )
    draw.line((MARGIN + 14, MARGIN + 6, MARGIN + 14, height - MARGIN - 4), fill="#b0306a", width=3)
    tip = height - MARGIN
    draw.polygon([(MARGIN + 6, tip - 14), (MARGIN + 22, tip - 14), (MARGIN + 14, tip)], fill="#b0306a")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(OUT)
    print(f"wrote {OUT} ({len(rows)} layers)")


if __name__ == "__main__":
    main()
