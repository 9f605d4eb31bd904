"""The synthetic world's eval split as a built-in benchmark (``load_benchmark("synthetic", ...)``).

Items come from a folder written by ``write_dataset(dir, n, seed, stage="eval")`` (or ``"grpo"``),
or, with no folder, are rendered in memory from ``(n, seed)`` exactly as that writer would (same
scene seeds, same question stream), so a run needs no files at all. Each synthetic answer type
is scored by the rule of the benchmark family it mirrors:

* ``choice`` -> option letter (``choice``);
* ``yes-no`` -> yes / no (``yes_no``);
* ``count`` -> exact integer (``integer``);
* ``number`` (metres or centimetres) -> SIBench's mean relative accuracy of the number read from
  the answer, in the question's unit (``number``).

Scores also carry COOPER's CPR flag (``cpr``) and the helpful map (``modality``), and `aggregate`
adds per-flag figures, the split COOPER analyses tool use by.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from cooper_lib.data.records import QARecord
from cooper_lib.data.synthetic import iter_scenes, load_dataset, make_qa
from cooper_lib.data.synthetic.qa import AnswerBalance
from cooper_lib.eval.benchmarks.base import Benchmark, Score, group_by, rate
from cooper_lib.eval.benchmarks.items import AnswerType, BenchmarkItem

SYNTHETIC_ANSWER_TYPES: dict[str, AnswerType] = {
    "choice": "choice",
    "yes-no": "yes_no",
    "count": "integer",
    "number": "number",
}
"""Synthetic answer type -> the `BenchmarkItem` answer type (scoring rule) it is scored by."""


class SyntheticBenchmark(Benchmark):
    """Synthetic eval questions; `aggregate` adds ``per_cpr`` (positive / negative / boundary)."""

    score_fields = ("cpr", "modality", "unit")

    def aggregate(self, scores: Iterable[Score]) -> dict[str, Any]:
        """The base figures plus the mean score per CPR flag, in percent."""
        scores = self._checked(scores)
        result = super().aggregate(scores)
        by_cpr = group_by(scores, lambda s: s["cpr"])
        result["per_cpr"] = {flag: {"n": len(g), "score": rate(g)} for flag, g in sorted(by_cpr.items())}
        return result


def _item(record: QARecord, image: Path | Callable[[], Image.Image]) -> BenchmarkItem:
    if record.answer_type not in SYNTHETIC_ANSWER_TYPES:
        raise ValueError(
            f"record {record.id!r}: answer_type must be one of {sorted(SYNTHETIC_ANSWER_TYPES)}, "
            f"got {record.answer_type!r}"
        )
    kind = SYNTHETIC_ANSWER_TYPES[record.answer_type]
    answer: str | float = record.answer if kind in ("choice", "yes_no") else float(record.value)
    return BenchmarkItem(
        id=record.id,
        image=image,
        question=record.question,
        answer=answer,
        answer_type=kind,
        choices=tuple(record.choices),
        category=record.category,
        extra={"cpr": record.cpr, "modality": record.modality, "unit": record.unit, **record.meta},
    )


def _rgb_loader(rgb: torch.Tensor) -> Callable[[], Image.Image]:
    array = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return lambda: Image.fromarray(array, mode="RGB")


def _rendered_records(
    n: int, seed: int, questions_per_scene: int, answer_style: str = "full"
) -> list[tuple[QARecord, Any]]:
    """The records ``write_dataset(.., n, seed, stage="eval")`` would write (test-split scenes, so
    none is a training scene), with in-memory images."""
    out, balance = [], AnswerBalance()
    for index, scene in enumerate(iter_scenes(n, seed, split="test")):
        rng = random.Random(f"qa-{scene.seed}")
        image = _rgb_loader(scene.rgb)
        questions = make_qa(
            scene, rng, max_questions=questions_per_scene, balance=balance, answer_style=answer_style
        )
        for k, q in enumerate(questions):
            record = QARecord(
                id=f"{index:06d}-{k}",
                image="",
                question=q.prompt,
                answer=q.answer,
                answer_type=q.answer_type,
                category=q.category,
                cpr=q.cpr,
                modality=q.modality,
                unit=q.unit,
                choices=list(q.choices),
                value=q.value,
                meta={"scene": index, "scene_seed": scene.seed},
            )
            out.append((record, image))
    return out


def load_synthetic(
    path: str | Path | None = None,
    *,
    n: int = 16,
    seed: int = 0,
    questions_per_scene: int = 4,
    answer_style: str = "full",
) -> SyntheticBenchmark:
    """The synthetic eval benchmark.

    Args:
        path: a folder written by ``write_dataset(.., stage="eval")`` (or ``"grpo"``); None renders
            ``n`` scenes from ``seed`` in memory instead (``n``, ``seed`` and
            ``questions_per_scene`` are ignored when a folder is given). Rendered scenes come
            from the test split (`cooper_lib.data.synthetic.scene_seed`), so they are never the
            scenes of a training set written with any seed.
        n: scenes to render when ``path`` is None.
        seed: dataset seed when ``path`` is None.
        questions_per_scene: questions asked per rendered scene when ``path`` is None.
        answer_style: ``make_qa``'s answer style when ``path`` is None ("short": number
            questions always ask for metres).
    """
    if path is None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected a positive int, got {n!r}")
        pairs = _rendered_records(n, seed, questions_per_scene, answer_style)
        meta: dict[str, Any] = {"source": "rendered", "n": n, "seed": seed, "split": "test"}
    else:
        root = Path(path)
        dataset = load_dataset(root)
        if dataset.manifest["stage"] not in ("eval", "grpo"):
            raise ValueError(
                f"path: {root} holds {dataset.manifest['stage']!r} records; the synthetic benchmark "
                "reads an 'eval' (or 'grpo') dataset"
            )
        records = [QARecord.from_dict(r) for r in dataset.records]
        pairs = [(r, root / r.image) for r in records]
        meta = {"source": str(root), "n": dataset.manifest["n"], "seed": dataset.manifest["seed"]}
    return SyntheticBenchmark("synthetic", [_item(r, image) for r, image in pairs], meta=meta)
