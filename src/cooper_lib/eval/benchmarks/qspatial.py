"""Q-SpatialBench (Liao et al., EMNLP 2024) from a local copy of its Hugging Face dataset repo.

Layout, as published (``andrewliao11/Q-Spatial-Bench``)::

    ROOT/data/QSpatial_plus-00000-of-00001.parquet
    ROOT/data/QSpatial_scannet-00000-of-00001.parquet

Columns: ``question``, ``answer_value`` (float), ``answer_unit`` (e.g. "centimeters"),
``question_type``, ``image_path`` and ``image`` (the datasets ``Image`` struct
``{"bytes", "path"}``). QSpatial_plus (101 questions, COOPER's split) embeds its images; the
ScanNet split stores only ``image_path``, resolved against ``image_root`` (the folder the
benchmark's ScanNet script renders into). Reading parquet needs pyarrow.

Prompt, as VLMEvalKit's ``QSpatial.build_prompt``: the text after the image is the benchmark's
system prompt, a newline, and its ``spatial_prompt_single`` template rendered with the question
(jinja2, sandboxed). VLMEvalKit fetches both files from the ``prompt_templates/`` folder of
github.com/andrewliao11/Q-Spatial-Bench-code; the dataset repo does not hold them, so copy
``system_prompt.txt`` and ``spatial_prompt_single.txt`` into ``ROOT/prompt_templates/`` (or ROOT,
or pass ``prompt_dir``). Without them the bare question is shown, with a warning naming the
missing files. The system prompt asks for ``\\scalar{...} \\distance_unit{...}``, the format
`extract_quantity` reads first.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from cooper_lib.data.quantities import to_cm
from cooper_lib.eval.benchmarks._io import clean, image_path, read_parquet, require_columns, require_files
from cooper_lib.eval.benchmarks.base import Benchmark, Score, rate
from cooper_lib.eval.benchmarks.items import BenchmarkItem
from cooper_lib.images import image_from_bytes
from cooper_lib.serialization import read_text

NAME = "Q-SpatialBench"
SPLITS = ("QSpatial_plus", "QSpatial_scannet")
COLUMNS = ("question", "answer_value", "answer_unit", "question_type", "image")
SYSTEM_PROMPT_FILE = "system_prompt.txt"
TEMPLATE_FILE = "spatial_prompt_single.txt"
PROMPT_FILES = (SYSTEM_PROMPT_FILE, TEMPLATE_FILE)
PROMPT_SOURCE = "prompt_templates/ of github.com/andrewliao11/Q-Spatial-Bench-code"


class QSpatialBenchmark(Benchmark):
    """Q-SpatialBench: success rate within a factor 2 (``overall``), and within 1.5."""

    def aggregate(self, scores: Iterable[Score]) -> dict[str, Any]:
        """Adds ``success_1_5`` (overall and per category) to `Benchmark.aggregate`."""
        scores = self._checked(scores)
        result = super().aggregate(scores)
        result["success_1_5"] = rate(scores, "success_1_5")
        for category, figures in result["per_category"].items():
            group: list[Score] = [s for s in scores if s["category"] == category]
            figures["success_1_5"] = rate(group, "success_1_5")
        return result


def _parquet_file(path: Path, split: str) -> Path:
    if path.is_file():
        return path
    found = sorted((path / "data").glob(f"{split}-*.parquet"))
    if not found:
        raise FileNotFoundError(
            f"{NAME}: expected {path / 'data' / f'{split}-00000-of-00001.parquet'} (the dataset repo "
            f"andrewliao11/Q-Spatial-Bench); no file matches data/{split}-*.parquet"
        )
    if len(found) > 1:
        raise ValueError(f"{NAME}: several files match data/{split}-*.parquet: {[str(f) for f in found]}")
    return found[0]


def _prompt_files(root: Path, prompt_dir: str | Path | None) -> tuple[str, str] | None:
    """(system prompt, template) read from `prompt_dir` or the dataset folder; None, warned, if absent."""
    if prompt_dir is not None:
        folder = Path(prompt_dir)
        require_files([folder / name for name in PROMPT_FILES], NAME, f"prompt files (from {PROMPT_SOURCE})")
    else:
        candidates = [root / "prompt_templates", root]
        folder = next((d for d in candidates if all((d / n).is_file() for n in PROMPT_FILES)), None)
        if folder is None:
            missing = [str(candidates[0] / n) for n in PROMPT_FILES if not (candidates[0] / n).is_file()]
            warnings.warn(
                f"{NAME}: prompt file(s) {missing} not found, so questions are shown without the "
                f"benchmark's system prompt and template; copy them from {PROMPT_SOURCE}",
                stacklevel=3,
            )
            return None
    return read_text(folder / SYSTEM_PROMPT_FILE, "prompt"), read_text(folder / TEMPLATE_FILE, "prompt")


def compose_prompt(system_prompt: str, template: str, question: str) -> str:
    """``system_prompt``, a newline, and ``template`` rendered with ``question`` (VLMEvalKit's text)."""
    try:
        from jinja2.sandbox import SandboxedEnvironment
    except ImportError as err:
        raise ImportError(
            "Q-SpatialBench's prompt template needs jinja2: pip install 'cooper-lib[eval]'"
        ) from err
    return f"{system_prompt}\n{SandboxedEnvironment().from_string(template).render(question=question)}"


def load_qspatial(
    path: str | Path,
    split: str = "QSpatial_plus",
    image_root: str | Path | None = None,
    prompt_dir: str | Path | None = None,
    *,
    allow_outside_root: bool = False,
) -> QSpatialBenchmark:
    """Load Q-SpatialBench from the dataset repo folder (or one of its parquet files).

    Args:
        path: the local dataset repo (holding ``data/``) or a split's parquet file.
        split: ``"QSpatial_plus"`` or ``"QSpatial_scannet"``.
        image_root: where ``image_path`` is resolved for rows without embedded image bytes;
            the dataset folder by default.
        prompt_dir: the folder holding ``system_prompt.txt`` and ``spatial_prompt_single.txt``
            (must hold them); by default ``prompt_templates/`` in the dataset folder, or the
            dataset folder itself, and a warning when neither holds them.
        allow_outside_root: read image paths that lead out of the image root (``..``, absolute).

    Each item's ``question`` is the prompt (module docstring) and ``extra["raw_question"]`` the
    dataset's question; ``answer`` is the ground truth in centimetres, ``extra`` keeps the
    original value and unit. Raises ``ValueError`` for an unknown unit (rather than guessing one).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(path)
    parquet = _parquet_file(path, split)
    rows = read_parquet(parquet, NAME)
    if not rows:
        raise ValueError(f"{NAME}: {parquet} holds no rows")
    require_columns(rows[0].keys(), COLUMNS, NAME, parquet)
    folder = path if path.is_dir() else parquet.parent.parent
    root = Path(image_root) if image_root is not None else folder
    prompts = _prompt_files(folder, prompt_dir)
    items, needed = [], []
    for number, row in enumerate(rows):
        image = row["image"] if isinstance(row["image"], dict) else {}
        if image.get("bytes"):
            source: Any = partial(image_from_bytes, image["bytes"])
        else:
            relative = clean(row.get("image_path")) or clean(image.get("path"))
            if not relative:
                raise ValueError(
                    f"{NAME}: row {number} of {parquet} has neither image bytes nor an image path"
                )
            source = image_path(root, relative, NAME, f"row {number}", allow_outside_root=allow_outside_root)
            needed.append(source)
        try:
            answer_cm = to_cm(float(row["answer_value"]), str(row["answer_unit"]))
        except ValueError as err:
            raise ValueError(f"{NAME}: row {number} of {parquet}: {err}") from err
        items.append(
            BenchmarkItem(
                id=f"{split}/{number}",
                image=source,
                question=(
                    clean(row["question"]) if prompts is None else compose_prompt(*prompts, row["question"])
                ),
                answer=answer_cm,
                answer_type="quantity",
                category=clean(row["question_type"]),
                extra={
                    "answer_value": float(row["answer_value"]),
                    "answer_unit": str(row["answer_unit"]),
                    "image_path": clean(row.get("image_path")),
                    "raw_question": clean(row["question"]),
                },
            )
        )
    require_files(needed, NAME, f"images of {split} (resolved against {root})")
    prompt = (
        "plain question (prompt files missing)" if prompts is None else f"system prompt + {TEMPLATE_FILE}"
    )
    return QSpatialBenchmark(NAME, items, meta={"split": split, "source": str(parquet), "prompt": prompt})
