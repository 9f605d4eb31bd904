"""MMVP (Tong et al., "Eyes Wide Shut?", CVPR 2024) from a local copy of its benchmark folder.

Layout, as published (``MMVP/MMVP``)::

    ROOT/Questions.csv        columns: Index, Question, Options, Correct Answer
    ROOT/MMVP Images/1.jpg    one image per Index

``Options`` reads like ``(a) Open (b) Closed`` and ``Correct Answer`` like ``(a)``. The 300
questions come in 150 pairs, Index 2k-1 and 2k: the same question on two CLIP-blind images.
COOPER reports per-question accuracy (``overall``); the benchmark's own pair accuracy (a pair
counts when both of its questions are right) is reported as ``pair_accuracy``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cooper_lib.eval.benchmarks._io import (
    clean,
    read_delimited,
    require_columns,
    require_dir,
    require_file,
    require_files,
)
from cooper_lib.eval.benchmarks.base import Benchmark, Score, group_by
from cooper_lib.eval.benchmarks.items import BenchmarkItem

NAME = "MMVP"
COLUMNS = ("Index", "Question", "Options", "Correct Answer")
IMAGE_DIR = "MMVP Images"
_OPTION = re.compile(r"\(([a-zA-Z])\)\s*(.*?)\s*(?=\([a-zA-Z]\)|$)", re.DOTALL)


class MMVPBenchmark(Benchmark):
    """MMVP: per-question accuracy, and pair accuracy over the complete pairs scored."""

    score_fields = ("pair_id",)

    def aggregate(self, scores: Iterable[Score]) -> dict[str, Any]:
        """Adds ``pair_accuracy`` and ``pairs`` (complete pairs counted) when items carry pair ids."""
        scores = self._checked(scores)
        result = super().aggregate(scores)
        paired = [s for s in scores if s.get("pair_id") is not None]
        pairs = [g for g in group_by(paired, lambda s: s["pair_id"]).values() if len(g) == 2]
        if pairs:
            result["pairs"] = len(pairs)
            result["pair_accuracy"] = (
                100.0 * sum(all(s["score"] == 1.0 for s in g) for g in pairs) / len(pairs)
            )
        return result


def parse_options(options: str) -> tuple[tuple[str, ...], str]:
    """``"(a) Open (b) Closed"`` -> (("Open", "Closed"), "AB"); ``ValueError`` if letters skip."""
    found = _OPTION.findall(options)
    letters = "".join(letter.upper() for letter, _ in found)
    if not found or letters != "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(found)]:
        raise ValueError(f"options must read '(a) ... (b) ...' with letters in order, got {options!r}")
    return tuple(text for _, text in found), letters


def load_mmvp(path: str | Path) -> MMVPBenchmark:
    """Load MMVP from the folder holding ``Questions.csv`` and ``MMVP Images/``.

    Items carry ``extra["pair_id"] = (Index - 1) // 2``; answers are upper-case letters.
    """
    root = require_dir(Path(path), NAME, f"Questions.csv and the '{IMAGE_DIR}' folder")
    table = require_file(root / "Questions.csv", NAME, "the question table Questions.csv")
    images = require_dir(root / IMAGE_DIR, NAME, "the images <Index>.jpg")
    header, rows = read_delimited(table, ",")
    require_columns(header, COLUMNS, NAME, table)
    items, paths = [], []
    for number, row in enumerate(rows):
        where = f"{table.name} row {number}"
        try:
            index = int(clean(row["Index"]))
            choices, letters = parse_options(clean(row["Options"]))
        except ValueError as err:
            raise ValueError(f"{NAME}: {where}: {err}") from err
        answer = clean(row["Correct Answer"]).strip("()").upper()
        if answer not in letters:
            raise ValueError(
                f"{NAME}: {where}: Correct Answer must be one of {list(letters)}, got {row['Correct Answer']!r}"
            )
        paths.append(images / f"{index}.jpg")
        items.append(
            BenchmarkItem(
                id=str(index),
                image=paths[-1],
                question=f"{clean(row['Question'])} {clean(row['Options'])}",
                answer=answer,
                answer_type="choice",
                choices=choices,
                extra={"pair_id": (index - 1) // 2},
            )
        )
    require_files(paths, NAME, f"images in '{IMAGE_DIR}'")
    return MMVPBenchmark(NAME, items, meta={"root": str(root)})
