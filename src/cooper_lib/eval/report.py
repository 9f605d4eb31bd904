"""Side-by-side reports of several evaluation runs: a markdown page and PNG bar charts.

The charts are drawn with PIL (already a dependency) rather than matplotlib, which the library
does not depend on; they are plain horizontal grouped bars: one group per category, one bar
per run, so long category names fit as row labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from cooper_lib.eval.runner import TOOL_COLUMNS, EvalResult

PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
)
"""Bar colours, one per series, in order (repeating after eight)."""


def bar_chart(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    x_max: float = 100.0,
    bar_height: int = 12,
    plot_width: int = 360,
) -> Image.Image:
    """Horizontal grouped bars: a row group per entry of ``groups``, one bar per series.

    Args:
        groups: row labels.
        series: series name -> one value per group (drawn left to right from 0 to ``x_max``).
        title: the chart's title.
        x_max: the value at the right edge (values above are clipped, the number shows the truth).
        bar_height: pixel height of one bar.
        plot_width: pixel width of the bar area.
    """
    if not groups or not series:
        raise ValueError(
            f"groups and series must be non-empty, got {len(groups)} groups, {len(series)} series"
        )
    for name, values in series.items():
        if len(values) != len(groups):
            raise ValueError(f"series {name!r}: expected {len(groups)} values, got {len(values)}")
    if x_max <= 0:
        raise ValueError(f"x_max: expected > 0, got {x_max}")
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def width(text: str) -> int:
        return int(probe.textlength(text, font=font))

    pad, gap = 8, 6
    label_w = max(width(g) for g in groups) + 2 * pad
    group_h = bar_height * len(series) + gap
    legend_h = 16 * len(series)
    top = 24
    height = top + group_h * len(groups) + 20 + legend_h + pad
    total_w = label_w + plot_width + 60
    image = Image.new("RGB", (total_w, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((pad, 6), title, fill="black", font=font)
    x0 = label_w
    for gi, group in enumerate(groups):
        y = top + gi * group_h
        draw.text((pad, y + (group_h - gap) / 2 - 5), group, fill="black", font=font)
        for si, values in enumerate(series.values()):
            value = float(values[gi])
            length = round(plot_width * min(max(value, 0.0), x_max) / x_max)
            by = y + si * bar_height
            draw.rectangle((x0, by, x0 + length, by + bar_height - 2), fill=PALETTE[si % len(PALETTE)])
            draw.text((x0 + length + 3, by), f"{value:.1f}", fill="black", font=font)
    axis_y = top + group_h * len(groups)
    draw.line((x0, top - 2, x0, axis_y), fill="black")
    draw.line((x0, axis_y, x0 + plot_width, axis_y), fill="black")
    for tick in (0.0, 0.5, 1.0):
        x = x0 + round(plot_width * tick)
        draw.text((x - 6, axis_y + 3), f"{x_max * tick:g}", fill="black", font=font)
    for si, name in enumerate(series):
        y = axis_y + 20 + 16 * si
        draw.rectangle((x0, y, x0 + 10, y + 10), fill=PALETTE[si % len(PALETTE)])
        draw.text((x0 + 16, y), name, fill="black", font=font)
    return image


def _names(results: Sequence[EvalResult], names: Sequence[str] | None) -> list[str]:
    if names is not None:
        if len(names) != len(results) or len(set(names)) != len(names):
            raise ValueError(f"names: expected {len(results)} distinct names, got {list(names)}")
        return list(names)
    out: list[str] = []
    for result in results:
        base = result.output.stem if result.output is not None else f"{result.benchmark}-{result.policy}"
        name, k = base, 2
        while name in out:
            name, k = f"{base}-{k}", k + 1
        out.append(name)
    return out


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def write_report(
    results: Sequence[EvalResult], out_dir: str | Path, *, names: Sequence[str] | None = None
) -> Path:
    """Write ``report.md`` with ``scores.png`` (per-category score) and ``tool_use.png`` into ``out_dir``.

    Args:
        results: the runs, in column order (`evaluate` results or `load_result` of their caches).
        out_dir: folder for the report (created).
        names: column names (default: the caches' file stems).

    Returns:
        The path of ``report.md``.
    """
    if not results:
        raise ValueError("results: expected at least one EvalResult, got none")
    for result in results:
        if not isinstance(result, EvalResult):
            raise TypeError(f"results: expected EvalResult items, got {type(result).__name__}")
        if "metrics" in result.metrics:
            raise ValueError(
                f"results: {result.benchmark} is a depth-map run (its figures are depth metrics, not "
                "per-category scores); compare such runs with their EvalResult.table()"
            )
    names = _names(results, names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    categories = sorted({c for r in results for c in r.metrics.get("per_category", {})})

    def score(result: EvalResult, category: str) -> float | None:
        figures = result.metrics.get("per_category", {}).get(category)
        return None if figures is None else figures["score"]

    rows = ["overall", *categories]
    scores = {
        name: [r.metrics["overall"], *(score(r, c) or 0.0 for c in categories)]
        for name, r in zip(names, results, strict=True)
    }
    bar_chart(rows, scores, title="Score (%) per category").save(out / "scores.png")
    columns = list(dict.fromkeys(c for r in results for c in r.tool_use.get("all", TOOL_COLUMNS) if c != "n"))
    tools = {
        f"{name}: {column}": [r.tool_use["all"].get(column, 0.0)]
        for name, r in zip(names, results, strict=True)
        for column in columns
    }
    bar_chart(["all items"], tools, title="Tool use (% of items)").save(out / "tool_use.png")

    lines = [
        "# Evaluation report",
        "",
        "| run | benchmark | policy | items | overall % | extraction failures |",
    ]
    lines.append("|---|---|---|---:|---:|---:|")
    for name, r in zip(names, results, strict=True):
        lines.append(
            f"| {name} | {r.benchmark} | {r.policy} | {r.metrics['n']} | {r.metrics['overall']:.1f} | "
            f"{r.metrics['extraction_failures']} |"
        )
    per_row = [f"{name} {r.metrics['row_accuracy']:.1f} %" for name, r in zip(names, results, strict=True)
               if "row_accuracy" in r.metrics]  # fmt: skip
    if per_row:
        lines += ["", f"MMBench's overall is its circular accuracy; per-row accuracy: {', '.join(per_row)}."]
    lines += ["", "## Score per category (%)", "", "| category | " + " | ".join(names) + " |"]
    lines.append("|---|" + "---:|" * len(names))
    for category in categories:
        lines.append(f"| {category} | " + " | ".join(_cell(score(r, category)) for r in results) + " |")
    lines += ["", "![scores](scores.png)", "", "## Tool use (% of items per category)", ""]
    lines.append("| category | " + " | ".join(f"{n} {c}" for n in names for c in columns) + " |")
    lines.append("|---|" + "---:|" * (len(names) * len(columns)))
    tool_rows = sorted({c for r in results for c in r.tool_use}, key=lambda c: (c == "all", c))
    for category in tool_rows:
        cells = [
            _cell(r.tool_use[category].get(c, 0.0) if category in r.tool_use else None)
            for r in results
            for c in columns
        ]
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    lines += ["", "![tool use](tool_use.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
