"""The report's maths and files: seed means with 95 % t-intervals, the markdown table, the bar chart."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

# Two-sided 95 % quantiles of Student's t, t_{0.975}(df) for df = 1..30 (standard tables).
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def t_quantile_975(df: int) -> float:
    """t_{0.975}(df): the table for df <= 30, the normal 1.96 beyond it (within 2 % from df 30)."""
    if df < 1:
        raise ValueError(f"df: expected at least 1 degree of freedom, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.960


def mean_interval(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its 95 % t-interval over seeds (None for a single value)."""
    if not values:
        raise ValueError("values: expected at least one value, got none")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t_quantile_975(n - 1) * sd / math.sqrt(n)


def _percent_by_category(
    records: Sequence[Mapping[str, Any]], value: Callable[[Mapping[str, Any]], float]
) -> dict[str, float]:
    """100 times the mean of `value` over each category's records, and over all as ``overall``."""
    groups: dict[str, list[float]] = {}
    for r in records:
        groups.setdefault(r["category"], []).append(value(r))
    out = {c: 100 * sum(v) / len(v) for c, v in sorted(groups.items())}
    out["overall"] = 100 * sum(value(r) for r in records) / len(records)
    return out


def accuracy_by_category(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean score in percent per category, and ``overall``."""
    return _percent_by_category(records, lambda r: float(r["score"]))


def tool_rate_by_category(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Percent of questions answered with at least one tool call, per category and ``overall``."""
    return _percent_by_category(records, lambda r: float(bool(r["tools"])))


def _cell(values: Sequence[float], digits: int = 1) -> str:
    if not values:
        return "-"
    mean, half = mean_interval(values)
    return f"{mean:.{digits}f}" if half is None else f"{mean:.{digits}f} ± {half:.{digits}f}"


def summarize(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per arm, per seed figures gathered from the arms' ``results.json`` contents."""
    arms: dict[str, dict[str, Any]] = {}
    for res in results:
        arm = arms.setdefault(
            res["arm"],
            {"seeds": [], "acc": {}, "probes": {}, "tools": {}, "maps": {}, "elasticity": {}, "wall": []},
        )
        arm["seeds"].append(res["seed"])
        arm["wall"].append(res["wall_seconds"]["total"])
        for condition, records in res["conditions"].items():
            target = arm["acc"] if condition == "main" else arm["probes"].setdefault(condition, {})
            for category, value in accuracy_by_category(records).items():
                target.setdefault(category, []).append(value)
            if condition == "main":
                for category, value in tool_rate_by_category(records).items():
                    arm["tools"].setdefault(category, []).append(value)
        for name, value in res.get("map_quality", {}).items():
            arm["maps"].setdefault(name, []).append(value)
        for region, by_scale in (res.get("map_elasticity") or {}).items():
            for scale, value in by_scale.items():
                slopes = arm["elasticity"].setdefault((region, scale), [])
                if value is not None:  # None: no question answered with a number at both scales
                    slopes.append(value)
    return arms


def paired_differences(
    results: Sequence[Mapping[str, Any]], arm: str, baseline: str = "qa_only"
) -> dict[str, list[float]]:
    """Per category, `arm`'s accuracy minus `baseline`'s on each seed both ran, in seed order.

    Paired by seed: the two arms of a seed share the base model and the test questions. (On the
    runs of benchmarks/RESULTS.md the pairing does not narrow the interval: the arms' scores move
    apart from seed to seed, not together.)"""
    by_seed: dict[str, dict[int, dict[str, float]]] = {arm: {}, baseline: {}}
    for res in results:
        if res["arm"] in by_seed:
            by_seed[res["arm"]][res["seed"]] = accuracy_by_category(res["conditions"]["main"])
    out: dict[str, list[float]] = {}
    for seed in sorted(by_seed[arm].keys() & by_seed[baseline].keys()):
        ours, theirs = by_seed[arm][seed], by_seed[baseline][seed]
        for category in ours.keys() & theirs.keys():
            out.setdefault(category, []).append(ours[category] - theirs[category])
    return out


def _difference_lines(
    results: Sequence[Mapping[str, Any]],
    arms: Mapping[str, Mapping[str, Any]],
    names: Sequence[str],
    categories: Sequence[str],
    baseline: str = "qa_only",
) -> list[str]:
    """The section that sets each arm against `baseline`, or nothing when there is none to compare."""
    others = [n for n in names if n != baseline]
    if baseline not in names or not others:
        return []
    lines = ["", f"## Against `{baseline}` (points)", ""]
    lines.append(
        f"Each arm's accuracy minus `{baseline}`'s on the same seed (the same base model and test "
        "questions): the mean over seeds ± its 95 % t-interval. Seeds ahead: the seeds on which the "
        "arm scores higher. Apart at: how large the difference must be for the two arms' own "
        "intervals in the accuracy table not to overlap (the sum of their half-widths)."
    )
    lines += [
        "",
        "| arm | category | difference | seeds ahead | apart at |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n in others:
        differences = paired_differences(results, n, baseline)
        for c in categories:
            values = differences.get(c, [])
            halves = [mean_interval(arms[a]["acc"][c])[1] for a in (n, baseline) if arms[a]["acc"].get(c)]
            apart = f"{sum(halves):.1f}" if len(halves) == 2 and None not in halves else "-"
            ahead = f"{sum(v > 0 for v in values)} / {len(values)}" if values else "-"
            lines.append(f"| {n} | {c} | {_cell(values)} | {ahead} | {apart} |")
    return lines


def markdown(
    results: Sequence[Mapping[str, Any]],
    priors: Mapping[str, Mapping[str, float]],
    arms_info: Mapping[str, Any],
    setup: Mapping[str, Any],
    fixed_map: Mapping[str, float] | None = None,
) -> str:
    """The report: accuracy per category with the priors, each arm against QA-only, perception use,
    map elasticity, tool rates, maps, wall time. `fixed_map`: `fixed_map_quality`'s scores, the
    maps' row of a fixed answer."""
    arms = summarize(results)
    names = [n for n in arms_info if n in arms]
    categories = [c for c in priors if c != "overall"] + ["overall"]
    seeds = sorted({s for a in arms.values() for s in a["seeds"]})
    lines = ["# Table 1 (synthetic)", ""]
    lines.append(
        f"Seeds: {seeds}. Cells are the mean over seeds ± the half-width of the 95 % t-interval"
        + (" (one seed: no interval)." if len(seeds) == 1 else ".")
    )
    lines += ["", "## Set-up", ""] + [f"- {k}: {v}" for k, v in setup.items()]
    lines += ["", "## Accuracy (%) per question category", ""]
    lines.append("| category | n | chance | best fixed | " + " | ".join(names) + " |")
    lines.append("| --- " * (4 + len(names)) + "|")
    for c in categories:
        p = priors[c]
        cells = [_cell(arms[n]["acc"].get(c, [])) for n in names]
        lines.append(
            f"| {c} | {p['n']} | {p['chance']:.1f} | {p['best_fixed']:.1f} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "Arms: " + "; ".join(f"`{n}` = {arms_info[n].label} ({arms_info[n].analogue})" for n in names),
    ]
    lines += _difference_lines(results, arms, names, categories)
    perceiving = [n for n in names if arms[n]["probes"]]
    if perceiving:
        lines += ["", "## Perception use: accuracy (%) with the maps replaced", ""]
        lines.append("| arm | category | generated maps | another scene's maps | true maps |")
        lines.append("| --- | --- | --- | --- | --- |")
        for n in perceiving:
            for c in categories:
                probes = arms[n]["probes"]
                lines.append(
                    f"| {n} | {c} | {_cell(arms[n]['acc'].get(c, []))} | "
                    f"{_cell(probes.get('other_scene', {}).get(c, []))} | {_cell(probes.get('true', {}).get(c, []))} |"
                )
    elastic = [n for n in names if arms[n]["elasticity"]]
    if elastic:
        columns = sorted(
            {k for n in elastic for k in arms[n]["elasticity"]}, key=lambda k: (k[0], float(k[1]))
        )
        lines += ["", "## Map elasticity: do the metres follow the map?", ""]
        lines.append(
            "The questions answered in metres off a depth map, asked again with the true depth map's "
            "depths times s, over the whole map or over the asked objects alone. Each cell is the mean "
            "of log(answer at s / answer at s = 1) / log(s): 1 when the answer follows the scaled "
            "depths, 0 when it ignores them. A reader that takes the map's overall scale follows the "
            "whole map; only one that finds the asked object in the map follows the object."
        )
        lines.append("")
        names_of = {"map": "whole map", "object": "asked object"}
        lines.append("| arm | " + " | ".join(f"{names_of.get(r, r)}, s = {s}" for r, s in columns) + " |")
        lines.append("| --- " * (1 + len(columns)) + "|")
        for n in elastic:
            cells = [_cell(arms[n]["elasticity"].get(k, []), 2) for k in columns]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "## Tool-call rate (% of questions with a tool call)", ""]
    lines.append("| category | " + " | ".join(names) + " |")
    lines.append("| --- " * (1 + len(names)) + "|")
    for c in categories:
        lines.append(f"| {c} | " + " | ".join(_cell(arms[n]["tools"].get(c, [])) for n in names) + " |")
    lines += ["", "## Generated maps and wall time", ""]
    lines.append(
        "Maps of the first test scenes, at the heads' output size; depth AbsRel on objects: over the "
        "pixels of the objects the questions ask about; object distance (%): each object's median "
        "depth in the map read as its distance and scored like a distance answer (compare the "
        "distance questions' best fixed answer). Fixed map: the training scenes' per-pixel "
        "median depth, given for every scene; true map: the scenes' own, at the same size. Wall time: "
        "training and evaluation of one seed (`true_maps` evaluates the `bagel_pe` model: evaluation only)."
    )
    lines.append("")
    lines.append(
        "| arm | depth AbsRel | depth AbsRel on objects | object distance (%) | depth delta1 "
        "| segmentation mIoU | wall time per seed (s) |"
    )
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    if fixed_map is not None:
        lines.append(
            f"| fixed map | {fixed_map['depth_abs_rel']:.3f} | {fixed_map['depth_abs_rel_objects']:.3f} | "
            f"{100 * fixed_map['depth_object_mra']:.1f} | {fixed_map['depth_delta1']:.3f} | | |"
        )
        lines.append(f"| true map | | | {100 * fixed_map['true_map_object_mra']:.1f} | | | |")
    for n in names:
        m = arms[n]["maps"]
        mra = [100 * v for v in m.get("depth_object_mra", [])]
        lines.append(
            f"| {n} | {_cell(m.get('depth_abs_rel', []), 3)} | {_cell(m.get('depth_abs_rel_objects', []), 3)} | "
            f"{_cell(mra)} | {_cell(m.get('depth_delta1', []), 3)} | {_cell(m.get('segmentation_miou', []), 3)} | "
            f"{_cell(arms[n]['wall'], 0)} |"
        )
    return "\n".join(lines) + "\n"


def bar_chart(
    results: Sequence[Mapping[str, Any]],
    priors: Mapping[str, Mapping[str, float]],
    path: Path,
    order: Sequence[str],
) -> Path:
    """Overall accuracy per arm (mean, with the 95 % interval as a whisker) beside the chance and
    best-fixed-answer lines, drawn with PIL (no plotting library needed)."""
    arms = summarize(results)
    names = [n for n in order if n in arms]
    width, height, left, bottom, top = max(420, 120 + 90 * len(names)), 360, 60, 60, 30
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    plot_h = height - bottom - top

    def y(value: float) -> float:
        return top + plot_h * (1 - value / 100)

    for tick in range(0, 101, 20):
        draw.line([(left, y(tick)), (width - 20, y(tick))], fill=(225, 225, 225))
        draw.text((10, y(tick) - 6), f"{tick}%", fill="black")
    for key, colour in (("chance", (150, 150, 150)), ("best_fixed", (200, 60, 60))):
        value = priors["overall"][key]
        draw.line([(left, y(value)), (width - 20, y(value))], fill=colour, width=2)
        draw.text((width - 110, y(value) - 14), key.replace("_", " "), fill=colour)
    for i, name in enumerate(names):
        mean, half = mean_interval(arms[name]["acc"]["overall"])
        x0 = left + 20 + 90 * i
        draw.rectangle([x0, y(mean), x0 + 50, y(0)], fill=(70, 110, 180))
        if half is not None:
            draw.line(
                [(x0 + 25, y(min(100, mean + half))), (x0 + 25, y(max(0, mean - half)))],
                fill="black",
                width=2,
            )
        draw.text((x0, y(mean) - 14), f"{mean:.1f}", fill="black")
        draw.text((x0 - 5, height - bottom + 8), name, fill="black")
    draw.text((left, 8), "Table 1 (synthetic): overall accuracy per arm", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
