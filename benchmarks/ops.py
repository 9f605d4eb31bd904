"""Benchmark the fused loss ops: time of forward+backward and measured peak memory.

Two tables:

* ``lce``: linear cross-entropy at V = 151,936 (Qwen2) for naive PyTorch (logits, then
  ``F.cross_entropy``), ``torch.compile`` of that, ours, Liger's fused linear CE and Cut
  Cross-Entropy (the last two when importable; Liger needs CUDA). ``ours`` takes its default sweep
  (in 16-bit: over vocabulary blocks, the weight gradient in its own dtype), ``ours-rows`` the rows
  sweep (an fp32 weight-gradient accumulator). ``--mode no_grad`` times the
  forward alone under ``torch.no_grad()`` (the weight a Parameter, as in a model).
  ``--chunk-sizes`` times ours at each chunk size in one process (the CUDA default is picked from
  this sweep). ``--baseline peers`` prints time and memory as ratios to the fastest of Liger and
  CCE instead of to naive (the GPU table of ``benchmarks/gpu_check.sh``).
* ``patch``: one ``transformers.Trainer`` run (warm-up step, then timed steps) of a tiny Qwen2-VL
  and LLaVA backbone with a large vocabulary, plain and after ``patch_linear_cross_entropy``: the
  memory the patch saves inside a stock training loop.
* ``dense``: flow-matching, SILog, SSI and segmentation CE+Dice: achieved bandwidth against the
  bytes that must move (inputs read once, gradient written once) for ours and for the unfused
  PyTorch composition (the ``*_reference`` functions; on CPU ours dispatches to exactly that code).

Every (method, shape) runs in its own subprocess so one's memory cannot hide another's. Peak memory
is the increase over the memory held just before the timed step (inputs, and the gradients left
by the warm-up are freed first): on CUDA ``torch.cuda.max_memory_allocated``; on CPU the resident
set size sampled every millisecond from ``/proc/self/statm`` by a background thread (torch's CPU
allocator has no statistics; tracemalloc does not see torch's allocations). The peak includes the
weight gradient (V x H fp32), which every method must produce.

Examples::

    python benchmarks/ops.py --table lce --n 8192 --h 896 --device cpu
    python benchmarks/ops.py --table dense --device cpu
    python benchmarks/ops.py --table lce --n 8192 32768 --h 896 3584 --device cuda --dtype bfloat16
    python benchmarks/ops.py --table lce --n 1024 --h 896 --v 32768 --mode no_grad --methods naive ours
    python benchmarks/ops.py --table patch --n 1024 --device cpu
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

LCE_METHODS = ("naive", "compiled", "ours", "ours-rows", "liger", "cce")
DENSE_OPS = ("flow", "silog", "ssi", "seg")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class PeakMemory:
    """Peak bytes above the level at ``__enter__``: CUDA allocator stats, or sampled RSS on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss() - self.base)
            time.sleep(0.001)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = self._rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss() - self.base)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _measure(step: Callable[[], None], reset: Callable[[], None], device, warmup: int, repeats: int) -> dict:
    for _ in range(warmup):
        step()
        reset()
    times, peaks = [], []
    for _ in range(repeats):
        gc.collect()
        with PeakMemory(device) as mem:
            start = time.perf_counter()
            step()
            _sync(device)
            times.append(time.perf_counter() - start)
        peaks.append(mem.peak)
        reset()
    return {"time_s": statistics.median(times), "peak_bytes": max(peaks)}


# --------------------------------------------------------------------------------------------------
# linear cross-entropy


def _lce_fn(method: str, device: torch.device, chunk_size: int | None = None) -> Callable:
    if method == "naive":
        return lambda h, w, y: F.cross_entropy((h @ w.T).float(), y)
    if method == "compiled":
        return torch.compile(lambda h, w, y: F.cross_entropy((h @ w.T).float(), y))
    if method == "ours":
        from cooper_lib.ops import linear_cross_entropy

        return lambda h, w, y: linear_cross_entropy(h, w, y, chunk_size=chunk_size)
    if method == "ours-rows":
        from cooper_lib.ops import linear_cross_entropy

        return lambda h, w, y: linear_cross_entropy(h, w, y, chunk_size=chunk_size, sweep="rows")
    if method == "liger":
        if device.type != "cuda":
            raise RuntimeError("Liger's kernels are Triton-only; on CPU they would run in the interpreter")
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        loss = LigerFusedLinearCrossEntropyLoss()
        return lambda h, w, y: loss(w, h, y)
    if method == "cce":
        from cut_cross_entropy import linear_cross_entropy as cce

        impl = "cce" if device.type == "cuda" else "torch_compile"
        return lambda h, w, y: cce(h, w, y, impl=impl)
    raise ValueError(f"unknown method {method!r}")


def lce_child(args: argparse.Namespace) -> dict:
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    (n,), (h,) = args.n, args.h
    torch.manual_seed(0)
    train = args.mode == "train"
    hidden = torch.randn(n, h, device=device, dtype=dtype, requires_grad=train)
    weight = torch.nn.Parameter((torch.randn(args.v, h, device=device) / math.sqrt(h)).to(dtype))
    labels = torch.randint(0, args.v, (n,), device=device)
    labels[::10] = -100
    chunks = args.chunk_sizes if args.method in ("ours", "ours-rows") and args.chunk_sizes else [None]
    runs = []
    for chunk in chunks:
        fn = _lce_fn(args.method, device, chunk)
        result = {"chunk": chunk}

        def step(fn: Callable = fn, result: dict = result) -> None:
            if train:
                loss = fn(hidden, weight, labels)
                loss.backward()
            else:
                with torch.no_grad():
                    loss = fn(hidden, weight, labels)
            result["loss"] = loss.item()

        def reset() -> None:
            hidden.grad = weight.grad = None

        result.update(_measure(step, reset, device, args.warmup, args.repeats))
        runs.append(result)
    return {"runs": runs}


# --------------------------------------------------------------------------------------------------
# the Hugging Face patch inside a plain Trainer


def patch_child(args: argparse.Namespace) -> dict:
    import tempfile

    from transformers import Trainer, TrainerCallback, TrainingArguments

    from cooper_lib.backbones.tiny import build_tiny_backbone
    from cooper_lib.ops import patch_linear_cross_entropy

    torch.manual_seed(0)
    model, _ = build_tiny_backbone(args.method, vocab_size=args.v)
    if args.impl == "patched":
        patch_linear_cross_entropy(model)
    (n,) = args.n
    ids = torch.randint(0, 500, (2, n // 2))  # text tokens of the tiny tokenizer
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    device = torch.device(args.device)

    class Peak(TrainerCallback):
        """Peak memory over the steps after the first (which creates the optimizer state)."""

        def __init__(self) -> None:
            self.meter, self.times, self.losses = None, [], []

        def on_step_begin(self, args, state, control, **kwargs) -> None:
            if state.global_step >= 1 and self.meter is None:
                self.meter = PeakMemory(device).__enter__()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs) -> None:
            _sync(device)
            self.times.append(time.perf_counter() - self.start)

    peak = Peak()
    with tempfile.TemporaryDirectory() as out:
        train_args = TrainingArguments(
            output_dir=out, max_steps=1 + args.repeats, learning_rate=1e-3, per_device_train_batch_size=1,
            report_to=[], save_strategy="no", use_cpu=device.type == "cpu", remove_unused_columns=False,
            disable_tqdm=True, logging_steps=1,
        )  # fmt: skip
        trainer = Trainer(
            model=model, args=train_args, train_dataset=[batch] * (1 + args.repeats),
            data_collator=lambda items: items[0], callbacks=[peak],
        )  # fmt: skip
        trainer.train()
    peak.meter.__exit__(None, None, None)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"time_s": statistics.median(peak.times[1:]), "peak_bytes": peak.meter.peak, "loss": losses[0]}


# --------------------------------------------------------------------------------------------------
# dense and flow losses


def _dense_case(
    op: str, device: torch.device, dtype: torch.dtype, size: str
) -> tuple[list, Callable, Callable, int]:
    """Inputs (the first requires grad), our function, the reference composition, bytes that must move."""
    import cooper_lib.ops as ops

    small = size == "small"
    item = torch.finfo(dtype).bits // 8
    if op == "flow":
        shape = (2, 256, 64) if small else (8, 4096, 64)
        tensors = [torch.randn(shape, device=device, dtype=dtype) for _ in range(3)]
        mask = torch.rand(shape[:-1], device=device) > 0.1
        moved = 4 * tensors[0].numel() * item + mask.numel()
        return (
            [*tensors, mask],
            lambda p, n, c, m: ops.flow_matching_loss(p, n, c, mask=m),
            lambda p, n, c, m: ops.flow_matching_loss_reference(p, n, c, mask=m),
            moved,
        )
    if op in ("silog", "ssi"):
        shape = (2, 48, 64) if small else (8, 480, 640)
        pred = torch.rand(shape, device=device).add(0.1).to(dtype)
        target = torch.rand(shape, device=device).add(0.1).to(dtype)
        mask = torch.rand(shape, device=device) > 0.2
        moved = 3 * pred.numel() * item + mask.numel()
        ours, ref = (
            (ops.silog_loss, ops.silog_loss_reference)
            if op == "silog"
            else (
                ops.ssi_depth_loss,
                ops.ssi_depth_loss_reference,
            )
        )
        return [pred, target, mask], ours, ref, moved
    if op == "seg":
        batch, classes, side = (2, 150, 16) if small else (8, 150, 128)
        logits = torch.randn(batch, classes, side, side, device=device, dtype=dtype)
        target = torch.randint(0, classes, (batch, side, side), device=device)
        moved = 2 * logits.numel() * item + target.numel() * target.element_size()
        return [logits, target], ops.seg_ce_dice_loss, ops.seg_ce_dice_loss_reference, moved
    raise ValueError(f"unknown op {op!r}")


def dense_child(args: argparse.Namespace) -> dict:
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    torch.manual_seed(0)
    inputs, ours, ref, moved = _dense_case(args.method, device, dtype, args.size)
    inputs[0].requires_grad_()
    fn = ours if args.impl == "ours" else ref

    def step() -> None:
        fn(*inputs).backward()

    def reset() -> None:
        inputs[0].grad = None

    result = _measure(step, reset, device, args.warmup, args.repeats)
    result["bytes"] = moved
    return result


# --------------------------------------------------------------------------------------------------
# driver


def _run_child(argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def _lce_row(n: int, h: int, name: str, res: dict, base: dict | None) -> str:
    rel_mem = f"{res['peak_bytes'] / base['peak_bytes']:.3f}" if base else "-"
    rel_time = f"{res['time_s'] / base['time_s']:.2f}" if base else "-"
    return (
        f"| {n} | {h} | {name} | {res['time_s']:.4g} | {_gib(res['peak_bytes'])} | {rel_mem} "
        f"| {rel_time} | {res['loss']:.5f} |"
    )


def run_lce(args: argparse.Namespace) -> None:
    item = torch.finfo(DTYPES[args.dtype]).bits // 8
    base_name = "fastest peer" if args.baseline == "peers" else "naive"
    what = "fwd+bwd" if args.mode == "train" else "no_grad fwd"
    print(
        f"linear cross-entropy, V={args.v}, {args.dtype}, device={args.device}, mode={args.mode}, "
        f"torch {torch.__version__}, threads={torch.get_num_threads()}"
    )
    print(f"| N | H | method | {what} s | peak GiB | peak / {base_name} | time / {base_name} | loss |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in args.n:
        for h in args.h:
            results = {}
            for method in args.methods:
                # naive-style methods hold logits, their softmax and gradient: ~3 * N * V * 4 bytes.
                need = 3 * n * args.v * 4 + args.v * h * (item + 4)
                if (
                    method in ("naive", "compiled")
                    and args.device == "cpu"
                    and need > 0.9 * _available_bytes()
                ):
                    results[method] = {"error": f"skipped: needs ~{_gib(need)} GiB"}
                    continue
                argv = ["--child", "lce", "--method", method, "--n", str(n), "--h", str(h), "--v", str(args.v),
                        "--device", args.device, "--dtype", args.dtype, "--warmup", str(args.warmup),
                        "--repeats", str(args.repeats), "--mode", args.mode]  # fmt: skip
                if method in ("ours", "ours-rows") and args.chunk_sizes:
                    argv += ["--chunk-sizes", *map(str, args.chunk_sizes)]
                results[method] = _run_child(argv)
            if args.baseline == "peers":
                peers = [results[m]["runs"][0] for m in ("liger", "cce") if "runs" in results.get(m, {})]
                base = min(peers, key=lambda r: r["time_s"]) if peers else None
                if base is None:
                    print(f"| {n} | {h} | (no peer ran: ratios not available) | | | | | |", flush=True)
            else:
                base = results.get("naive", {}).get("runs", [None])[0]
            for method, res in results.items():
                if "error" in res:
                    print(f"| {n} | {h} | {method} | {res['error']} | | | | |", flush=True)
                    continue
                for run in res["runs"]:
                    name = method if run["chunk"] is None else f"{method} (chunk {run['chunk']})"
                    print(_lce_row(n, h, name, run, base), flush=True)
                if len(res["runs"]) > 1:
                    best = min(res["runs"], key=lambda r: r["time_s"])
                    print(f"| {n} | {h} | fastest chunk: {best['chunk']} rows ({_gib(best['peak_bytes'])} GiB) "
                          "| | | | | |", flush=True)  # fmt: skip


def run_patch(args: argparse.Namespace) -> None:
    (n,) = args.n[:1]
    print(f"HF patch in a plain Trainer, tiny backbones, V={args.v}, {n} tokens a step, device={args.device}")
    print(
        "| backbone | loss path | step s | peak above the optimizer state GiB | peak / plain | first loss |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for family in ("qwen2_vl", "llava"):
        plain = None
        for impl in ("plain", "patched"):
            res = _run_child(
                ["--child", "patch", "--method", family, "--impl", impl, "--n", str(n), "--v", str(args.v),
                 "--device", args.device, "--repeats", str(max(args.repeats, 2))]
            )  # fmt: skip
            if "error" in res:
                print(f"| {family} | {impl} | {res['error']} | | | |", flush=True)
                continue
            plain = plain or res
            print(
                f"| {family} | {impl} | {res['time_s']:.3f} | {_gib(res['peak_bytes'])} "
                f"| {res['peak_bytes'] / plain['peak_bytes']:.3f} | {res['loss']:.4f} |",
                flush=True,
            )


def run_dense(args: argparse.Namespace) -> None:
    print(f"dense / flow losses ({args.size} shapes), {args.dtype}, device={args.device}")
    print("| op | impl | fwd+bwd ms | bytes that must move (MiB) | achieved GB/s | time / composition |")
    print("| --- | --- | --- | --- | --- | --- |")
    for op in args.ops:
        base = None
        for impl in ("composition", "ours"):
            res = _run_child(
                ["--child", "dense", "--method", op, "--impl", impl, "--device", args.device, "--dtype", args.dtype,
                 "--size", args.size, "--warmup", str(args.warmup), "--repeats", str(args.dense_repeats)]
            )  # fmt: skip
            if "error" in res:
                print(f"| {op} | {impl} | {res['error']} | | | |", flush=True)
                continue
            base = base or res
            print(
                f"| {op} | {impl} | {res['time_s'] * 1e3:.2f} | {res['bytes'] / 2**20:.1f} "
                f"| {res['bytes'] / res['time_s'] / 1e9:.2f} | {res['time_s'] / base['time_s']:.2f} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", choices=("lce", "patch", "dense", "all"), default="all")
    parser.add_argument("--n", type=int, nargs="+", default=[8192, 32768], help="tokens (lce)")
    parser.add_argument("--h", type=int, nargs="+", default=[896, 3584], help="hidden sizes (lce)")
    parser.add_argument("--v", type=int, default=151936, help="vocabulary (lce)")
    parser.add_argument("--methods", nargs="+", choices=LCE_METHODS, default=list(LCE_METHODS))
    parser.add_argument("--ops", nargs="+", choices=DENSE_OPS, default=list(DENSE_OPS))
    parser.add_argument("--size", choices=("small", "full"), default="full", help="dense shapes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype", choices=tuple(DTYPES), default=None, help="default: bf16 on CUDA, fp32 on CPU"
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per lce case (median)")
    parser.add_argument("--dense-repeats", type=int, default=10, help="timed runs per dense case (median)")
    parser.add_argument("--mode", choices=("train", "no_grad"), default="train", help="lce: what is timed")
    parser.add_argument(
        "--chunk-sizes", type=int, nargs="+", help="lce: time ours at each of these chunk sizes"
    )
    parser.add_argument(
        "--baseline", choices=("naive", "peers"), default="naive", help="lce: ratios relative to"
    )
    parser.add_argument("--child", choices=("lce", "patch", "dense"), help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    if args.child:
        child = {"lce": lce_child, "patch": patch_child, "dense": dense_child}[args.child]
        print(json.dumps(child(args)))
        return
    if args.table in ("lce", "all"):
        run_lce(args)
    if args.table == "patch":
        run_patch(args)
    if args.table in ("dense", "all"):
        run_dense(args)


if __name__ == "__main__":
    main()
