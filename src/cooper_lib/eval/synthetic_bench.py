"""The synthetic world's eval split as a built-in benchmark (``load_benchmark("synthetic", ...)``).

Items come from a folder written by ``write_dataset(dir, n, seed, stage="eval")`` (or ``"grpo"``),
or, with no folder, are rendered in memory from ``(n, seed)`` exactly as that writer would (same
scene seeds, same question stream), so a run needs no files at all. The synthetic questions use
the answer vocabulary of `cooper_lib.data.answers` and are scored by its rules: an option letter,
yes / no, an exact count (``integer``), and for ``number`` questions (metres or centimetres)
SIBench's mean relative accuracy of the number read from the answer, in the question's unit.
Records written with the old spellings ``yes-no`` / ``count`` load as ``yes_no`` / ``integer``.

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

from cooper_lib.data.answers import answer_type
from cooper_lib.data.records import QARecord
from cooper_lib.data.synthetic import iter_scenes, load_synthetic_dataset, make_qa
from cooper_lib.data.synthetic.qa import AnswerBalance
from cooper_lib.eval.benchmarks.base import Benchmark, Score, group_by, rate
from cooper_lib.eval.benchmarks.items import BenchmarkItem
from cooper_lib.images import to_pil

SYNTHETIC_ANSWER_TYPES: tuple[str, ...] = ("choice", "yes_no", "integer", "number")
"""The answer types synthetic questions use."""


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
    try:
        kind = answer_type(record.answer_type)
    except ValueError as err:
        raise ValueError(f"record {record.id!r}: {err}") from err
    if kind not in SYNTHETIC_ANSWER_TYPES:
        raise ValueError(
            f"record {record.id!r}: answer_type must be one of {list(SYNTHETIC_ANSWER_TYPES)}, got {kind!r}"
        )
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
    return lambda: to_pil(rgb)


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
            record = q.record(f"{index:06d}-{k}", "", {"scene": index, "scene_seed": scene.seed})
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
        answer_style: ``make_qa``'s answer style when ``path`` is None ("short" and
            "short_text": number questions always ask for metres; "short_text" choice questions
            ask for the option's text).
    """
    if path is None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected a positive int, got {n!r}")
        pairs = _rendered_records(n, seed, questions_per_scene, answer_style)
        meta: dict[str, Any] = {"source": "rendered", "n": n, "seed": seed, "split": "test"}
    else:
        root = Path(path)
        dataset = load_synthetic_dataset(root)
        if dataset.manifest["stage"] not in ("eval", "grpo"):
            raise ValueError(
                f"path: {root} holds {dataset.manifest['stage']!r} records; the synthetic benchmark "
                "reads an 'eval' (or 'grpo') dataset"
            )
        records = [QARecord.from_dict(r) for r in dataset.records]
        pairs = [(r, root / r.image) for r in records]
        meta = {"source": str(root), "n": dataset.manifest["n"], "seed": dataset.manifest["seed"]}
    return SyntheticBenchmark("synthetic", [_item(r, image) for r, image in pairs], meta=meta)
