"""How large a difference can a Table 1 run with n seeds show? The seeds' spread, from the record.

The target of the Table 1 experiment asks that COOPER beat QA-only on distance by at least 5
points with non-overlapping 95 % t-intervals over the seeds. Whether that is within reach depends
on how much an arm's score moves from seed to seed. `benchmarks/RESULTS.md` holds the
measurements: its lever table ("Table 1 (synthetic)") gives, for every lever, QA-only's and
COOPER's distance scores on seeds 0 and 1. This pools the within-pair variance of those pairs
((a - b)^2 / 2 averaged over the runs) into one seed-to-seed standard deviation per arm, then
prints, for n seeds, each arm's expected interval half-width and their sum (the difference at
which the two intervals part), and, by simulation, the chance that a run of n seeds clears the
distance clause for a true difference D. Reads only RESULTS.md, as it stands, so each new lever
row moves the figures a little: a few seconds.

    python benchmarks/table1_power.py [--results benchmarks/RESULTS.md] [--draws 200000]
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import numpy as np

from cooper_lib.experiments.table1.report import t_quantile_975

PAIR = re.compile(r"(\d+\.\d) / (\d+\.\d)")
SEEDS = (2, 3, 4, 5, 10)
EFFECTS = (0.0, 2.5, 5.0, 7.5, 10.0, 12.5)


def lever_pairs(results: Path) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """QA-only's distinct and COOPER's (seed 0, seed 1) distance scores from the lever table."""
    text = results.read_text()
    start = text.index("| lever (its section below)")
    rows = text[start : text.index("\n\n", start)].splitlines()[2:]
    qa_only: list[tuple[float, float]] = []
    cooper: list[tuple[float, float]] = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for cell, into in ((cells[1], qa_only), (cells[2], cooper)):
            match = PAIR.fullmatch(cell)
            pair = (float(match[1]), float(match[2])) if match else None
            if pair and not (into is qa_only and pair in qa_only):  # QA-only repeats across levers
                into.append(pair)
    return qa_only, cooper


def pooled_sd(pairs: list[tuple[float, float]]) -> float:
    """The seed-to-seed standard deviation pooled over two-seed runs."""
    return math.sqrt(sum((a - b) ** 2 / 2 for a, b in pairs) / len(pairs))


def clearing_chance(
    effect: float, seeds: int, sd_qa: float, sd_cooper: float, draws: int, rng: np.random.Generator
) -> float:
    """Share of simulated runs in which COOPER's mean is at least 5 above QA-only's and their 95 %
    t-intervals do not overlap, for a true difference `effect`."""
    t = t_quantile_975(seeds - 1)
    qa = rng.normal(0.0, sd_qa, (draws, seeds))
    cooper = rng.normal(effect, sd_cooper, (draws, seeds))
    half_qa = t * qa.std(1, ddof=1) / math.sqrt(seeds)
    half_cooper = t * cooper.std(1, ddof=1) / math.sqrt(seeds)
    gap = cooper.mean(1) - qa.mean(1)
    return float(((gap >= 5.0) & (gap > half_qa + half_cooper)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "RESULTS.md")
    parser.add_argument("--draws", type=int, default=200_000)
    args = parser.parse_args()
    qa_only, cooper = lever_pairs(args.results)
    sd_qa, sd_cooper = pooled_sd(qa_only), pooled_sd(cooper)
    print(f"Two-seed runs in the lever table: QA-only {len(qa_only)} (distinct), COOPER {len(cooper)}")
    print(f"Seed-to-seed sd of distance accuracy (points): QA-only {sd_qa:.2f}, COOPER {sd_cooper:.2f}")
    print()
    print("| seeds | t | QA-only half-width | COOPER half-width | intervals apart at |")
    print("| --- | --- | --- | --- | --- |")
    for n in SEEDS:
        t = t_quantile_975(n - 1)
        h_qa, h_cooper = t * sd_qa / math.sqrt(n), t * sd_cooper / math.sqrt(n)
        print(f"| {n} | {t:.3f} | {h_qa:.1f} | {h_cooper:.1f} | {h_qa + h_cooper:.1f} |")
    print()
    print(f"Chance (%) of clearing the distance clause, {args.draws:,} simulated runs each:")
    print("| true difference | " + " | ".join(f"{n} seeds" for n in SEEDS) + " |")
    print("| --- " * (1 + len(SEEDS)) + "|")
    rng = np.random.default_rng(0)
    for effect in EFFECTS:
        cells = [f"{100 * clearing_chance(effect, n, sd_qa, sd_cooper, args.draws, rng):.0f}" for n in SEEDS]
        print(f"| {effect:+.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
