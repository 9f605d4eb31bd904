"""Local-file loaders for the benchmarks COOPER reports, each in the layout its authors publish.

Every loader validates the files and says precisely what is missing, and returns a
`Benchmark`: iterate it for `BenchmarkItem`, ``score(item, prediction)`` each
answer, ``aggregate(scores)`` at the end. `load_benchmark` picks a loader by name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cooper_lib.eval.benchmarks.base import Benchmark, Score, score_answer
from cooper_lib.eval.benchmarks.cvbench import CVBenchBenchmark, load_cvbench
from cooper_lib.eval.benchmarks.items import ANSWER_TYPES, AnswerType, BenchmarkItem, ImageSource
from cooper_lib.eval.benchmarks.mmbench import MMBenchBenchmark, load_mmbench
from cooper_lib.eval.benchmarks.mmvp import MMVPBenchmark, load_mmvp
from cooper_lib.eval.benchmarks.nyu import NYUv2Benchmark, load_nyu_v2
from cooper_lib.eval.benchmarks.qspatial import QSpatialBenchmark, load_qspatial
from cooper_lib.eval.benchmarks.sibench import SINGLE_IMAGE_SETTINGS, load_sibench


def _load_synthetic(path: str | Path | None = None, **kwargs: Any) -> Benchmark:
    """`cooper_lib.eval.synthetic_bench.load_synthetic`, imported when called: that module imports
    this package, so importing it here made ``from cooper_lib.eval.synthetic_bench import ...``
    fail as a program's first import (a circular import)."""
    from cooper_lib.eval.synthetic_bench import load_synthetic

    return load_synthetic(path, **kwargs)


BENCHMARK_LOADERS: dict[str, Callable[..., Benchmark]] = {
    "qspatial": load_qspatial,
    "sibench": load_sibench,
    "mmvp": load_mmvp,
    "mmbench": load_mmbench,
    "cvbench": load_cvbench,
    "nyuv2": load_nyu_v2,
    "synthetic": _load_synthetic,
}
"""Loader per benchmark name, as ``cooper-lib eval --benchmark NAME`` spells it."""


def load_benchmark(name: str, path: str | Path, **kwargs: Any) -> Benchmark:
    """Load benchmark ``name`` (a key of `BENCHMARK_LOADERS`) from ``path``."""
    if name not in BENCHMARK_LOADERS:
        raise ValueError(f"name must be one of {sorted(BENCHMARK_LOADERS)}, got {name!r}")
    return BENCHMARK_LOADERS[name](path, **kwargs)


__all__ = [
    "ANSWER_TYPES",
    "BENCHMARK_LOADERS",
    "SINGLE_IMAGE_SETTINGS",
    "AnswerType",
    "Benchmark",
    "BenchmarkItem",
    "CVBenchBenchmark",
    "ImageSource",
    "MMBenchBenchmark",
    "MMVPBenchmark",
    "NYUv2Benchmark",
    "QSpatialBenchmark",
    "Score",
    "load_benchmark",
    "load_cvbench",
    "load_mmbench",
    "load_mmvp",
    "load_nyu_v2",
    "load_qspatial",
    "load_sibench",
    "score_answer",
]
