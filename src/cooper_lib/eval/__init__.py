"""Evaluation: metrics with stated formulas, local-file benchmark loaders, the built-in synthetic
benchmark, a resumable runner and side-by-side reports (see docs/evaluation.md). Each benchmark's
own loader (`load_qspatial`, `load_nyu_v2`, ...) comes from `cooper_lib.eval.benchmarks`."""

from cooper_lib.eval import metrics
from cooper_lib.eval.benchmarks import BENCHMARK_LOADERS, Benchmark, BenchmarkItem, load_benchmark
from cooper_lib.eval.report import bar_chart, write_report
from cooper_lib.eval.runner import EvalResult, evaluate, load_result, tool_use
from cooper_lib.eval.synthetic_bench import SyntheticBenchmark, load_synthetic

__all__ = [
    "BENCHMARK_LOADERS",
    "Benchmark",
    "BenchmarkItem",
    "EvalResult",
    "SyntheticBenchmark",
    "bar_chart",
    "evaluate",
    "load_benchmark",
    "load_result",
    "load_synthetic",
    "metrics",
    "tool_use",
    "write_report",
]
