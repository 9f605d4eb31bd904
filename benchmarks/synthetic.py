"""Benchmark the synthetic world: scenes rendered per second on one CPU core.

Renders fixed sets of scene layouts (sampling them is included in the timing, as in
`render_scenes`) for each image size and batch size, with `torch.set_num_threads(1)`, and prints
scenes per second by wall-clock time and by this process's CPU time (the second is steadier on a
busy machine). `--dense` adds the same renders without screen-space culling, for comparison.
`--write` also times `write_dataset` per stage (rendering, questions, traces and PNG files).

Examples::

    python benchmarks/synthetic.py
    python benchmarks/synthetic.py --sizes 64 128 256 --batch 1 8 32 --dense --write
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from cooper_lib.data.synthetic import SceneConfig, render_layouts, sample_layout, scene_seed, write_dataset
from cooper_lib.data.synthetic.render import default_batch_size


def _time(fn, repeats: int) -> tuple[float, float]:
    """Median (wall, cpu) seconds of `fn` over `repeats` runs after one warm-up run."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def bench_render(size: int, batch: int, n: int, repeats: int, cull: bool) -> tuple[float, float]:
    config = SceneConfig(width=size, height=size)

    def run() -> None:
        for start in range(0, n, batch):
            layouts = [sample_layout(scene_seed(0, i), config) for i in range(start, min(n, start + batch))]
            render_layouts(layouts, config, cull=cull)

    wall, cpu = _time(run, repeats)
    return n / wall, n / cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument(
        "--batch", type=int, nargs="*", default=None, help="batch sizes (default: the library's)"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="rough rendering time per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dense", action="store_true", help="also time rendering without culling")
    parser.add_argument("--write", action="store_true", help="also time write_dataset per stage (64 x 64)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("| size | batch | culling | scenes/s (wall) | scenes/s (CPU time) |")
    print("| --- | --- | --- | --- | --- |")
    for size in args.sizes:
        batches = args.batch or [default_batch_size(SceneConfig(width=size, height=size))]
        n = max(8, int(args.seconds * (1000 if size <= 64 else 60 * (256 / size) ** 2)))
        for batch in batches:
            for cull in (True, False) if args.dense else (True,):
                wall, cpu = bench_render(size, batch, n, args.repeats, cull)
                print(f"| {size} x {size} | {batch} | {'yes' if cull else 'no'} | {wall:.1f} | {cpu:.1f} |")

    if args.write:
        print("\n| stage (64 x 64, 4 questions) | scenes/s (wall) |")
        print("| --- | --- |")
        for stage in ("stage1", "sft", "grpo", "eval"):
            with tempfile.TemporaryDirectory() as root:
                start = time.perf_counter()
                write_dataset(root, 200, stage=stage, overwrite=True)
                print(f"| {stage} | {200 / (time.perf_counter() - start):.1f} |")


if __name__ == "__main__":
    main()
