"""MMBench (Liu et al., ECCV 2024), e.g. the v1.1 dev split, from its VLMEvalKit TSV file.

Layout, as published (``MMBench_DEV_EN_V11.tsv`` and friends): one TSV with columns ``index``,
``question``, ``hint``, ``A`` ... ``D`` (unused options empty), ``answer`` (a letter),
``category``, ``l2-category``, ``split`` and ``image``, the base64-encoded image. To save space
an ``image`` cell of at most 64 characters holds another row's ``index`` instead, whose image it
shares. Circular-evaluation copies (options rotated) carry ``index + k * 1,000,000``.

The question shown to the model follows VLMEvalKit's MCQ prompt: ``Hint: ...`` (when there is
one), ``Question: ...``, ``Options:`` with one ``X. text`` line per option, then "Please select the
correct answer from the options above."

Scoring is VLMEvalKit's circular evaluation (``mcq_circular_eval`` in
``vlmeval/dataset/utils/multiple_choice.py``, used for every dataset whose name holds "mmbench"):
a row's group is its ``g_index`` column when the table has one, else ``index % 1e6``; the main
rows are those whose ``index`` equals their group; a main row counts as right only if every
scored row of its group is right (a question without copies is its own group). ``overall``, the
headline figure, and the per-category figures are these circular hits averaged over the main
rows, as VLMEvalKit's ``report_acc`` does; ``row_accuracy`` is the plain per-row accuracy.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from cooper_lib.eval.benchmarks._io import clean, read_delimited, require_columns, require_file
from cooper_lib.eval.benchmarks.base import Benchmark, Score, group_by, rate
from cooper_lib.eval.benchmarks.items import BenchmarkItem
from cooper_lib.images import image_from_base64

NAME = "MMBench"
COLUMNS = ("index", "question", "answer", "A", "B", "image")
OPTION_LETTERS = "ABCDEFGHI"
CIRCULAR_STRIDE = 1_000_000
_IMAGE_REFERENCE_MAX = 64


class MMBenchBenchmark(Benchmark):
    """MMBench: circular accuracy (the headline), per (l2-)category figures, per-row accuracy."""

    score_fields = ("circular_group", "l2_category")

    def aggregate(self, scores: Iterable[Score]) -> dict[str, Any]:
        """Circular figures over the main rows (module docstring).

        ``overall``, ``per_category``, ``category_mean`` and ``per_l2_category`` are circular;
        ``circular_accuracy`` repeats ``overall``; ``row_accuracy`` is the mean over all scored
        rows; ``n`` counts scored rows and ``n_questions`` the main rows among them.
        """
        scores = self._checked(scores)
        groups = group_by(scores, lambda s: s["circular_group"])
        main = [
            {**s, "score": float(all(r["score"] == 1.0 for r in groups[s["circular_group"]]))}
            for s in scores
            if int(s["id"]) == s["circular_group"]
        ]
        if not main:
            raise ValueError(
                f"{self.name}: no scored row is a main question (index equal to its group, index % 1e6), "
                "so there is no circular figure; score the main rows too"
            )
        result = super().aggregate(main)
        result.update(
            n=len(scores),
            n_questions=len(main),
            circular_accuracy=result["overall"],
            row_accuracy=rate(scores),
            extraction_failures=sum(bool(s["failed"]) for s in scores),
        )
        by_l2 = group_by((s for s in main if s.get("l2_category")), lambda s: s["l2_category"])
        result["per_l2_category"] = {k: {"n": len(g), "score": rate(g)} for k, g in sorted(by_l2.items())}
        return result


def compose_question(hint: str, question: str, options: dict[str, str]) -> str:
    """The MCQ prompt text: optional hint, question, lettered options, and the instruction line."""
    lines = [f"Hint: {hint}"] if hint else []
    lines.append(f"Question: {question}")
    lines.append("Options:")
    lines.extend(f"{letter}. {text}" for letter, text in options.items())
    lines.append("Please select the correct answer from the options above.")
    return "\n".join(lines)


def load_mmbench(path: str | Path) -> MMBenchBenchmark:
    """Load an MMBench TSV (dev split: the answer column must be filled)."""
    table = require_file(Path(path), NAME, "the MMBench TSV (e.g. MMBench_DEV_EN_V11.tsv)")
    header, rows = read_delimited(table, "\t")
    require_columns(header, COLUMNS, NAME, table)
    images = {clean(row["index"]): clean(row["image"]) for row in rows}
    items = []
    for number, row in enumerate(rows):
        index = clean(row["index"])
        where = f"{table.name} row {number} (index {index})"
        image = images[index]
        if len(image) <= _IMAGE_REFERENCE_MAX:
            referenced = images.get(image, "")
            if len(referenced) <= _IMAGE_REFERENCE_MAX:
                raise ValueError(f"{NAME}: {where}: image refers to index {image!r}, which holds no image")
            image = referenced
        options = {}
        for letter in OPTION_LETTERS:
            text = clean(row.get(letter))
            if not text:
                break
            options[letter] = text
        answer = clean(row["answer"]).upper()
        if not answer:
            raise ValueError(f"{NAME}: {where}: no answer (test splits have none; use a dev split)")
        if answer not in options:
            raise ValueError(f"{NAME}: {where}: answer must be one of {list(options)}, got {row['answer']!r}")
        try:
            group = int(clean(row["g_index"])) if "g_index" in header else int(index) % CIRCULAR_STRIDE
        except ValueError as err:
            raise ValueError(f"{NAME}: {where}: index and g_index must be integers, got {index!r}") from err
        items.append(
            BenchmarkItem(
                id=index,
                image=partial(
                    image_from_base64, image, f"{NAME}: {table} row {number} (index {index}): image"
                ),
                question=compose_question(clean(row.get("hint")), clean(row["question"]), options),
                answer=answer,
                answer_type="choice",
                choices=tuple(options.values()),
                category=clean(row.get("category")),
                extra={
                    "circular_group": group,
                    "l2_category": clean(row.get("l2-category")),
                    "split": clean(row.get("split")),
                },
            )
        )
    return MMBenchBenchmark(NAME, items, meta={"source": str(table)})
