"""Throughput of the modality codecs on CPU: maps per second for encode and decode.

Encode takes a map (depth in metres, class ids, unit normals) to a float32 pseudo-image. Decode
is timed twice: on the uint8 pseudo-image (a PNG, a saved generation: the search runs once per
distinct colour) and on float pixels with a little noise (a model's raw output: every pixel is
searched).
Each figure is the best of ``--repeats`` timed runs over a batch of ``--batch`` maps, after one
warm-up run. Spectral depth and palette segmentation decode by nearest colour (one matrix
product per chunk of pixels, no Python loop over pixels).

Example::

    python benchmarks/codecs.py --sizes 256 512 --batch 8 --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from cooper_lib.modalities import DepthCodec, ModalityCodec, NormalsCodec, SegmentationCodec


def _codecs() -> dict[str, ModalityCodec]:
    return {
        "depth gray (nyu)": DepthCodec("gray", preset="nyu"),
        "depth log (nyu)": DepthCodec("log", preset="nyu"),
        "depth spectral (nyu)": DepthCodec("spectral", preset="nyu"),
        "segmentation ade20k (150)": SegmentationCodec(),
        "instance auto (255)": SegmentationCodec(num_classes=255, palette="auto", instance=True),
        "normals": NormalsCodec(),
    }


def _maps(codec: ModalityCodec, batch: int, size: int) -> torch.Tensor:
    if isinstance(codec, DepthCodec):
        return torch.rand(batch, size, size) * 9.0 + 0.5
    if isinstance(codec, SegmentationCodec):
        return torch.randint(0, codec.num_classes, (batch, size, size))
    normals = torch.randn(batch, 3, size, size)
    return normals / normals.norm(dim=1, keepdim=True)


def _best_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch {args.batch}, best of {args.repeats}"
    )
    print()
    print("| codec | size | encode maps/s | decode uint8 maps/s | decode float maps/s |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, codec in _codecs().items():
        for size in args.sizes:
            maps = _maps(codec, args.batch, size)
            pseudo = codec.encode(maps)
            stored = (pseudo * 255).round().to(torch.uint8)
            generated = (pseudo + 0.01 * torch.randn_like(pseudo)).clamp(0, 1)
            encode = _best_seconds(lambda: codec.encode(maps), args.repeats)  # noqa: B023
            decode_uint8 = _best_seconds(lambda: codec.decode(stored), args.repeats)  # noqa: B023
            decode_float = _best_seconds(lambda: codec.decode(generated), args.repeats)  # noqa: B023
            rates = [args.batch / seconds for seconds in (encode, decode_uint8, decode_float)]
            print(f"| {name} | {size}x{size} | " + " | ".join(f"{rate:,.1f}" for rate in rates) + " |")


if __name__ == "__main__":
    main()
