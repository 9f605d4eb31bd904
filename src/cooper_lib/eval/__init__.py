"""Evaluation: metrics with stated formulas and local-file benchmark loaders (see docs/evaluation.md)."""

from cooper_lib.eval import metrics
from cooper_lib.eval.benchmarks import (
    BENCHMARK_LOADERS,
    Benchmark,
    BenchmarkItem,
    load_benchmark,
    load_cvbench,
    load_mmbench,
    load_mmvp,
    load_nyu_v2,
    load_qspatial,
    load_sibench,
)

__all__ = [
    "BENCHMARK_LOADERS",
    "Benchmark",
    "BenchmarkItem",
    "load_benchmark",
    "load_cvbench",
    "load_mmbench",
    "load_mmvp",
    "load_nyu_v2",
    "load_qspatial",
    "load_sibench",
    "metrics",
]
