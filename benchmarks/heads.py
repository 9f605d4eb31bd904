"""Maps per second of each generation head at 64 x 64 on CPU: dense, discrete, flow (10 / 25 / 50
Euler updates, without guidance, with batched guidance, and with the two guidance branches run as
separate passes).

Only the head runs: it turns query hidden states [batch, K, H] (random, as a backbone would give
them) into maps. The backbone pass that produces the query states is the same for every head and
is not timed. Heads use their default sizes (`head_options` defaults): dense width 128; flow DiT
width 256, 4 blocks, 4 x 4 pixel patches (256 tokens); discrete mixer width 256, 2 blocks, over
an 8 x 8 code grid (a VQ tokenizer with downsample 8, one code per query at K = 64). Weights are
untrained: speed does not depend on them.

    python benchmarks/heads.py                      # batch 4, hidden 896, torch's default threads
    python benchmarks/heads.py --batch 1 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch

from cooper_lib.config import SpatialConfig
from cooper_lib.heads import build_head
from cooper_lib.tokenizers import VQConfig, VQTokenizer

SIZE = (64, 64)
QUERY_GRID = (8, 8)


def _head(kind: str, hidden: int, vq_folder: str) -> torch.nn.Module:
    options = {"tokenizer": vq_folder} if kind == "discrete" else {}
    config = SpatialConfig(
        modalities=("depth",), head=kind, query_grid=QUERY_GRID, output_size=SIZE, head_options=options
    )
    return build_head(config, "depth", hidden).eval()


def _time(run: Callable[[], torch.Tensor], repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4, help="maps per call")
    parser.add_argument("--hidden", type=int, default=896, help="backbone hidden size H")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    queries = torch.randn(args.batch, QUERY_GRID[0] * QUERY_GRID[1], args.hidden)
    with tempfile.TemporaryDirectory() as vq_folder:
        VQTokenizer(VQConfig(image_size=SIZE[0], downsample=8)).save_pretrained(vq_folder)
        heads = {kind: _head(kind, args.hidden, vq_folder) for kind in ("dense", "discrete", "flow")}
    rows: list[tuple[str, str, int, dict]] = [
        ("dense", "one pass", 1, {}),
        ("discrete", "most likely codes, VQ decode", 1, {}),
    ]
    for updates in (10, 25, 50):
        steps = updates + 1  # time points, as BAGEL's num_timesteps: one Euler update fewer
        rows += [
            ("flow", f"{updates} updates, no guidance", updates, {"steps": steps}),
            (
                "flow",
                f"{updates} updates, guidance 2.0 (batched)",
                updates,
                {"steps": steps, "cfg_text_scale": 2.0},
            ),
            (
                "flow",
                f"{updates} updates, guidance 2.0 (two passes)",
                2 * updates,
                {"steps": steps, "cfg_text_scale": 2.0, "batch_cfg": False},
            ),
        ]
    print(
        f"heads at {SIZE[0]} x {SIZE[1]}, batch {args.batch}, K = {queries.shape[1]}, H = {args.hidden}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}\n"
    )
    print("| head | setting | params (M) | network calls | ms / map | maps / s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for kind, setting, calls, options in rows:
        head = heads[kind]
        trainable = sum(p.numel() for p in head.parameters() if p.requires_grad) / 1e6
        seconds = _time(lambda: head.generate(queries, **options), args.repeats)  # noqa: B023 (called at once)
        print(
            f"| {kind} | {setting} | {trainable:.2f} | {calls} | {1000 * seconds / args.batch:.1f} | "
            f"{args.batch / seconds:.2f} |"
        )


if __name__ == "__main__":
    main()
