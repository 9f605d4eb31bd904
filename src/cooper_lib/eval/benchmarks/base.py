"""A benchmark: its items, the per-item scoring rule, and the aggregation into reported figures.

A runner iterates ``benchmark`` (items), asks the model, calls ``benchmark.score(item, text)``
for each answer (a JSON-serialisable dict it can cache), and finally
``benchmark.aggregate(scores)``. Per-item scores hold ``id``, ``category``, ``answer_type``,
``extracted`` (what was read from the answer, ``None`` on failure), ``failed`` and ``score``
(in [0, 1]); aggregates report percentages like the papers do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from cooper_lib.data.answers import AnswerKey, grade
from cooper_lib.eval.benchmarks.items import BenchmarkItem

Score = dict[str, Any]


def score_answer(item: BenchmarkItem, prediction: str) -> Score:
    """Score one free-text answer by the rule of ``item.answer_type`` (`cooper_lib.data.answers`).

    * ``choice``: the extracted letter equals the answer letter (1 or 0);
    * ``yes_no``: the extracted yes / no equals the answer;
    * ``number``: mean relative accuracy of the extracted number (SIBench);
    * ``integer``: the extracted number equals the answer exactly;
    * ``quantity``: Q-SpatialBench success, ``max(pred/gt, gt/pred) < 2`` in cm
      (``success_1_5`` holds the ``< 1.5`` outcome, ``ratio`` the ratio, ``None`` if undefined);
    * ``text``: the answer span equals the answer (case, spaces and a final dot aside).

    An answer nothing can be read from scores 0 with ``failed`` True.
    """
    if not isinstance(prediction, str):
        raise TypeError(
            f"prediction must be str for {item.answer_type!r} items, got {type(prediction).__name__}"
        )
    if item.map_modality is not None:
        raise ValueError(
            f"item {item.id!r} has answer_type {item.answer_type!r}, a map, which is not scored from text"
        )
    try:
        key = AnswerKey(item.answer, item.answer_type, item.choices)
    except ValueError as err:
        raise ValueError(f"item {item.id!r}: {err}") from err
    graded = grade(prediction, key)
    out: Score = {"id": item.id, "category": item.category, "answer_type": item.answer_type}
    out.update(graded.fields)
    out.update(extracted=graded.extracted, failed=graded.failed, score=graded.score)
    return out


def rate(scores: Sequence[Score], key: str = "score") -> float:
    """Mean of ``score[key]`` over ``scores``, in percent."""
    return 100.0 * sum(float(s[key]) for s in scores) / len(scores)


def group_by(scores: Iterable[Score], key: Callable[[Score], Any]) -> dict[Any, list[Score]]:
    """Scores grouped by ``key(score)``, groups in first-seen order."""
    groups: dict[Any, list[Score]] = defaultdict(list)
    for s in scores:
        groups[key(s)].append(s)
    return dict(groups)


class Benchmark:
    """A list of `BenchmarkItem` with the benchmark's scoring and aggregation rules.

    Subclasses change the rules where a benchmark defines its own (pairs, circular groups,
    combined figures, depth maps); ``score_fields`` names ``item.extra`` keys copied into each
    score so `aggregate` can group by them from cached scores alone.
    """

    score_fields: tuple[str, ...] = ()

    def __init__(self, name: str, items: Sequence[BenchmarkItem], *, meta: Mapping[str, Any] | None = None):
        if not items:
            raise ValueError(f"{name}: a benchmark needs at least one item, got none")
        seen: set[str] = set()
        for item in items:
            if item.id in seen:
                raise ValueError(f"{name}: item id {item.id!r} occurs more than once")
            seen.add(item.id)
        self.name = name
        self.items: list[BenchmarkItem] = list(items)
        self.meta: dict[str, Any] = dict(meta or {})
        self._by_id = {item.id: item for item in self.items}

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[BenchmarkItem]:
        return iter(self.items)

    def __getitem__(self, index: int) -> BenchmarkItem:
        return self.items[index]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, items={len(self)})"

    def item(self, item_id: str) -> BenchmarkItem:
        """The item with id ``item_id``."""
        if item_id not in self._by_id:
            raise KeyError(f"{self.name}: no item with id {item_id!r}")
        return self._by_id[item_id]

    def score(self, item: BenchmarkItem, prediction: Any) -> Score:
        """Score one prediction for ``item`` (free text for question-answer benchmarks)."""
        out = score_answer(item, prediction)
        out.update({key: item.extra.get(key) for key in self.score_fields})
        return out

    def _checked(self, scores: Iterable[Score]) -> list[Score]:
        scores = list(scores)
        if not scores:
            raise ValueError(f"{self.name}: aggregate needs at least one score, got none")
        ids = [s.get("id") for s in scores]
        unknown = [i for i in ids if i not in self._by_id]
        if unknown:
            raise ValueError(f"{self.name}: scores for unknown item ids {unknown[:5]}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"{self.name}: scores contain the same item id more than once")
        return scores

    def aggregate(self, scores: Iterable[Score]) -> dict[str, Any]:
        """Overall and per-category figures (percent), and the count of unreadable answers.

        ``overall`` is the mean item score; ``category_mean`` the mean of the per-category
        figures; ``n`` counts the scored items and ``n_items`` the benchmark's items, so a
        partial run shows as ``n < n_items``.
        """
        scores = self._checked(scores)
        by_category = group_by((s for s in scores if s["category"]), lambda s: s["category"])
        per_category = {
            category: {"n": len(group), "score": rate(group), "failed": sum(bool(s["failed"]) for s in group)}
            for category, group in sorted(by_category.items())
        }
        result: dict[str, Any] = {
            "benchmark": self.name,
            "n": len(scores),
            "n_items": len(self),
            "overall": rate(scores),
            "extraction_failures": sum(bool(s["failed"]) for s in scores),
            "per_category": per_category,
        }
        if per_category:
            result["category_mean"] = sum(c["score"] for c in per_category.values()) / len(per_category)
        return result
