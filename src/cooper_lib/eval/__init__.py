"""Evaluation: metrics with stated formulas, local-file benchmark loaders, the built-in synthetic
benchmark, a resumable runner and side-by-side reports (see docs/evaluation.md). Each benchmark's
own loader (`load_qspatial`, `load_nyu_v2`, ...) comes from `cooper_lib.eval.benchmarks`."""

from typing import TYPE_CHECKING

from cooper_lib.lazy import lazy_exports

if TYPE_CHECKING:
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

#: Public name -> the module defining it (None: a submodule); imported on first access.
_EXPORTS = {
    "metrics": None,
    "BENCHMARK_LOADERS": "cooper_lib.eval.benchmarks",
    "Benchmark": "cooper_lib.eval.benchmarks",
    "BenchmarkItem": "cooper_lib.eval.benchmarks",
    "load_benchmark": "cooper_lib.eval.benchmarks",
    "bar_chart": "cooper_lib.eval.report",
    "write_report": "cooper_lib.eval.report",
    "EvalResult": "cooper_lib.eval.runner",
    "evaluate": "cooper_lib.eval.runner",
    "load_result": "cooper_lib.eval.runner",
    "tool_use": "cooper_lib.eval.runner",
    "SyntheticBenchmark": "cooper_lib.eval.synthetic_bench",
    "load_synthetic": "cooper_lib.eval.synthetic_bench",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
