"""SIBench (Yu et al., 2025), single-image part, from a local copy of its data folder.

Layout, as published (``Two-hot/SIBench``, used through VLMEvalKit with ``LMUData=ROOT``)::

    ROOT/relative_distance.tsv   ROOT/Height.tsv   ...   (one TSV per task setting)
    ROOT/<source benchmark>/...  (the images; ``image_path`` is relative to ROOT)

TSV columns: ``index``, ``question`` (options written into it), ``answer`` (a letter, Yes/No,
or a number), ``type`` (``MCQ``, ``YN``, ``Number``, ``Number_Int``), ``image_path``
(comma-separated for multi-view rows), ``input_type`` (``image``, ``multi-view``, ``video``) and
``data_source``. A single TSV holding several settings can be passed instead of the folder when
it has a ``category`` column naming each row's setting.

Scoring (COOPER's SIBench code): MCQ by exact letter, YN by yes/no, Number by mean relative
accuracy over thresholds 0.50 ... 0.95, Number_Int by exact value; ``overall`` averages items.
"""

from __future__ import annotations

from pathlib import Path

from cooper_lib.data.answers import AnswerType
from cooper_lib.eval.benchmarks._io import (
    clean,
    image_path,
    read_delimited,
    require_columns,
    require_dir,
    require_files,
)
from cooper_lib.eval.benchmarks.base import Benchmark
from cooper_lib.eval.benchmarks.items import BenchmarkItem

NAME = "SIBench"
SINGLE_IMAGE_SETTINGS: tuple[str, ...] = (
    "relative_distance",
    "Reach_Prediction",
    "Height",
    "Existence",
    "Spatial_Compatibility",
    "Coordinate_Conversion",
    "Geometric_Reasoning",
    "Spatial_Imagination",
    "Spatial_Grid",
    "Situational_QA",
    "Maze_Navigation",
    "Occlusion",
    "Spatial_Relation",
)
"""The 13 single-image task settings COOPER reports."""

COLUMNS = ("index", "question", "answer", "type", "image_path")
ANSWER_TYPES: dict[str, AnswerType] = {  # SIBench's ``type`` column -> the answer type
    "MCQ": "choice",
    "YN": "yes_no",
    "Number": "number",
    "Number_Int": "integer",
}

PROMPTED_SOURCES = frozenset(
    {
        "vstibench", "MMSI-Bench", "3DSRBench", "OmniSpatial", "Spatial-MM", "SpatialMQA", "VSI-Bench",
        "STI-Bench", "SpatialEval", "SITE-Bench", "SPHERE-VLM", "SRBench", "BLINK",
    }
)  # fmt: skip
"""Source datasets whose questions SIBench's reference prompt extends with an answer-format line."""
FORMAT_LINES = {
    "choice": "Select from the given options, answer with letters only.",
    "yes_no": "Answer with 'Yes' or 'No' only.",
    "number": "Answer using a single number and nothing else.",
    "integer": "Answer using a single number and nothing else.",
}


def _answer(raw: str, kind: str, where: str) -> str | float:
    if kind == "choice":
        letter = raw.strip().strip("().").upper()
        if len(letter) != 1 or not letter.isalpha():
            raise ValueError(f"{NAME}: {where}: MCQ answer must be one letter, got {raw!r}")
        return letter
    if kind == "yes_no":
        word = raw.strip().strip(".").lower()
        if word not in ("yes", "no"):
            raise ValueError(f"{NAME}: {where}: YN answer must be Yes or No, got {raw!r}")
        return word
    try:
        value = float(raw)
    except ValueError as err:
        raise ValueError(f"{NAME}: {where}: numeric answer expected, got {raw!r}") from err
    if kind == "number" and value == 0:
        raise ValueError(f"{NAME}: {where}: a Number answer of 0 has no relative accuracy")
    return value


def load_sibench(
    path: str | Path,
    settings: tuple[str, ...] = SINGLE_IMAGE_SETTINGS,
    input_types: tuple[str, ...] = ("image",),
    *,
    allow_outside_root: bool = False,
) -> Benchmark:
    """Load SIBench settings from the data folder (or one TSV with a ``category`` column).

    Args:
        path: the folder holding ``<setting>.tsv`` files and the images, or a single TSV.
        settings: task settings to load (folder layout); the 13 single-image ones by default.
        input_types: rows whose ``input_type`` is not listed are left out; how many were left
            out per setting is recorded in ``benchmark.meta["dropped"]``. A table without an
            ``input_type`` column holds single images only.
        allow_outside_root: read image paths that lead out of the folder (``..``, absolute).

    Image paths are resolved against the folder (or, for a single TSV, the TSV's folder) and must
    stay inside it unless `allow_outside_root`.
    """
    path = Path(path)
    if path.is_file():
        root, tables = path.parent, [(None, path)]
    else:
        root = require_dir(path, NAME, "one <setting>.tsv per task setting and the image folders")
        tables = [(setting, root / f"{setting}.tsv") for setting in settings]
        require_files((t for _, t in tables), NAME, "setting TSV files")
    items: list[BenchmarkItem] = []
    images: list[Path] = []
    dropped: dict[str, int] = {}
    for setting, table in tables:
        header, rows = read_delimited(table, "\t")
        require_columns(header, COLUMNS + (("category",) if setting is None else ()), NAME, table)
        for number, row in enumerate(rows):
            category = setting or clean(row["category"])
            where = f"{table.name} row {number} (index {clean(row['index'])})"
            input_type = clean(row["input_type"]) if "input_type" in header else "image"
            if input_type not in input_types:
                dropped[category] = dropped.get(category, 0) + 1
                continue
            kind = ANSWER_TYPES.get(clean(row["type"]))
            if kind is None:
                raise ValueError(
                    f"{NAME}: {where}: type must be one of {sorted(ANSWER_TYPES)}, got {row['type']!r}"
                )
            paths = [p for p in "".join(clean(row["image_path"]).split()).split(",") if p]
            if len(paths) != 1:
                raise ValueError(f"{NAME}: {where}: a single-image row needs one image_path, got {paths}")
            question = clean(row["question"])
            source = clean(row.get("data_source"))
            if source in PROMPTED_SOURCES:
                question = f"{question}\n{FORMAT_LINES[kind]}"
            images.append(image_path(root, paths[0], NAME, where, allow_outside_root=allow_outside_root))
            items.append(
                BenchmarkItem(
                    id=f"{category}/{clean(row['index'])}",
                    image=images[-1],
                    question=question,
                    answer=_answer(clean(row["answer"]), kind, where),
                    answer_type=kind,
                    category=category,
                    extra={"data_source": source, "index": clean(row["index"])},
                )
            )
    require_files(images, NAME, "images (image_path is relative to the data folder)")
    return Benchmark(NAME, items, meta={"root": str(root), "dropped": dropped})
