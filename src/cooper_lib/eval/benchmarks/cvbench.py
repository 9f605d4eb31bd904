"""CV-Bench (Tong et al., Cambrian-1, 2024) from a local copy of its Hugging Face dataset repo.

Layout, as published (``nyu-visionx/CV-Bench``)::

    ROOT/test.jsonl                  (older revisions)   or   ROOT/test_2d.jsonl + ROOT/test_3d.jsonl
    ROOT/img/2D/count/ade20k_10.png  ...                 (``filename`` is relative to ROOT)

Fields used: ``idx``, ``type`` (2D / 3D), ``task`` (Count, Relation, Depth, Distance),
``prompt`` (question with its lettered choices), ``choices``, ``answer`` (like ``(C)``),
``filename`` and ``source`` (ADE20K, COCO, Omni3D).

CV-Bench's reported figure averages by source: ``2D = (acc_ADE20K + acc_COCO) / 2``,
``3D = acc_Omni3D``, ``overall = (2D + 3D) / 2``; it is ``overall`` when all three sources are
scored, and the plain per-question mean stays in ``accuracy``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cooper_lib.eval.benchmarks._io import (
    clean,
    image_path,
    read_jsonl,
    require_columns,
    require_dir,
    require_files,
)
from cooper_lib.eval.benchmarks.base import Benchmark, Score, group_by, rate
from cooper_lib.eval.benchmarks.items import BenchmarkItem

NAME = "CV-Bench"
FIELDS = ("idx", "task", "prompt", "choices", "answer", "filename", "source")
LAYOUTS: tuple[tuple[str, ...], ...] = (("test.jsonl",), ("test_2d.jsonl", "test_3d.jsonl"))


class CVBenchBenchmark(Benchmark):
    """CV-Bench: per-source accuracies and the benchmark's combined 2D / 3D figure."""

    score_fields = ("source",)

    def aggregate(self, scores: Iterable[Score]) -> dict[str, Any]:
        """Adds ``per_source``, and ``accuracy_2d``, ``accuracy_3d`` with the combined ``overall``."""
        scores = self._checked(scores)
        result = super().aggregate(scores)
        by_source = {k.lower(): g for k, g in group_by(scores, lambda s: str(s["source"])).items()}
        result["per_source"] = {k: {"n": len(g), "score": rate(g)} for k, g in sorted(by_source.items())}
        result["accuracy"] = result["overall"]
        if {"ade20k", "coco", "omni3d"} <= by_source.keys():
            result["accuracy_2d"] = (rate(by_source["ade20k"]) + rate(by_source["coco"])) / 2
            result["accuracy_3d"] = rate(by_source["omni3d"])
            result["overall"] = (result["accuracy_2d"] + result["accuracy_3d"]) / 2
        return result


def load_cvbench(path: str | Path, *, allow_outside_root: bool = False) -> CVBenchBenchmark:
    """Load CV-Bench from the dataset repo folder (``test.jsonl`` or the 2D / 3D pair, and ``img/``);
    image paths must stay inside the folder unless `allow_outside_root`."""
    root = require_dir(Path(path), NAME, "test.jsonl (or test_2d.jsonl and test_3d.jsonl) and img/")
    files = next(
        ([root / name for name in layout] for layout in LAYOUTS if all((root / n).is_file() for n in layout)),
        None,
    )
    if files is None:
        expected = " or ".join(" + ".join(layout) for layout in LAYOUTS)
        raise FileNotFoundError(f"{NAME}: expected {expected} in {root}; found none of these layouts")
    items, images = [], []
    for table in files:
        for number, record in enumerate(read_jsonl(table)):
            require_columns(record.keys(), FIELDS, NAME, table)
            where = f"{table.name} line {number + 1}"
            choices = record["choices"]
            if not isinstance(choices, list) or not choices:
                raise ValueError(f"{NAME}: {where}: choices must be a non-empty list, got {choices!r}")
            letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(choices)]
            answer = clean(record["answer"]).strip("()").upper()
            if answer not in letters:
                raise ValueError(
                    f"{NAME}: {where}: answer must be one of {list(letters)}, got {record['answer']!r}"
                )
            images.append(
                image_path(
                    root, clean(record["filename"]), NAME, where, allow_outside_root=allow_outside_root
                )
            )
            items.append(
                BenchmarkItem(
                    id=f"{table.stem}/{record['idx']}",
                    image=images[-1],
                    question=clean(record["prompt"]),
                    answer=answer,
                    answer_type="choice",
                    choices=tuple(str(c) for c in choices),
                    category=clean(record["task"]),
                    extra={"source": clean(record["source"]), "type": clean(record.get("type"))},
                )
            )
    require_files(images, NAME, "images (filename is relative to the repo folder)")
    return CVBenchBenchmark(NAME, items, meta={"root": str(root), "files": [str(f) for f in files]})
