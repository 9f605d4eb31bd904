"""Does a Table 1 reader find the asked object? Distance scores split by the scene's object count.

To answer "how far is the blue box from the camera?" off a depth map, a reader must find the blue
box in the map (the first hop) and read the map there (the second). In a scene of one object the
first hop is free: any depth the map shows of an object is the asked one's. So a reader that reads
maps but cannot find the asked object gains from a right map on one-object scenes and little on
scenes of two or three, and another scene's map costs it most on one-object scenes.

For every finished arm of a `cooper-lib experiment table1` run, this prints the mean score of its
distance answers (`benchmark.score`, mean relative accuracy) under each evaluation condition
(own maps, another scene's, the true ones), by the number of objects placed in the question's
scene (`OUT/data/test/scenes.jsonl`), with the count of questions in each column. Reads only the
run's JSON files: instant.

    python benchmarks/table1_by_objects.py table1-full
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

CATEGORY = "distance_camera"


def objects_per_scene(out: Path) -> dict[str, int]:
    """Scene name (``"000012"``) -> objects placed in it, for the run's held-out scenes."""
    lines = (out / "data" / "test" / "scenes.jsonl").read_text().splitlines()
    return {scene["name"]: len(scene["objects"]) for scene in map(json.loads, filter(None, lines))}


def scores_by_count(rows: list[dict], counts: dict[str, int]) -> dict[int, list[float]]:
    """The distance answers' scores of one condition, by their scene's object count."""
    by: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        if row["category"] == CATEGORY:
            by[counts[row["id"].split("-")[0]]].append(row["score"])
    return dict(by)


def table(out: Path) -> str:
    """The markdown table of every finished arm of the run at `out`."""
    counts = objects_per_scene(out)
    results = sorted(out.glob("seed-*/*/results.json"))
    if not results:
        raise SystemExit(f"out: expected finished arms (seed-*/ARM/results.json) under {out}, found none")
    columns = sorted(set(counts.values()))
    lines = [
        "| seed | arm | condition | " + " | ".join(f"{k} object{'s' * (k > 1)}" for k in columns) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    for path in results:
        result = json.loads(path.read_text())
        for condition, rows in result["conditions"].items():
            by = scores_by_count(rows, counts)
            cells = [
                f"{100 * sum(by[k]) / len(by[k]):.1f} ({len(by[k])})" if by.get(k) else "" for k in columns
            ]
            lines.append(f"| {result['seed']} | {result['arm']} | {condition} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a finished (or partly finished) table1 run's --out folder")
    print(table(parser.parse_args().out))


if __name__ == "__main__":
    main()
