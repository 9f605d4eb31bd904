"""Step time and peak memory of `SpatialModel.forward + backward` against the plain backbone.

Both run one training step on the same tokens: the backbone with `labels` (transformers computes
full `[tokens, vocab]` logits), the SpatialModel with the same labels plus a depth target (its LM
loss goes through the fused linear cross-entropy, its depth head through SILog). Each measurement
runs in a fresh subprocess so peak-memory baselines do not leak between rows.

    python benchmarks/spatial_model.py            # tiny and mid-size (hidden 1024, vocab 152k, 2k tokens)
    python benchmarks/spatial_model.py --configs tiny
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from memory import PeakRSS  # noqa: E402

CONFIGS = {
    "tiny": {"overrides": {}, "tokens": 256},
    "mid": {
        "overrides": {
            "hidden_size": 1024,
            "num_hidden_layers": 4,
            "num_attention_heads": 16,
            "num_key_value_heads": 4,
            "intermediate_size": 2816,
            "vocab_size": 151936,
        },
        "tokens": 2048,
    },
}


def _build(config_name: str, variant: str):
    from PIL import Image

    from cooper_lib import add_spatial_heads
    from cooper_lib.backbones.tiny import build_tiny_backbone

    spec = CONFIGS[config_name]
    backbone, processor = build_tiny_backbone("qwen2_vl", **spec["overrides"])
    backbone.train()
    model = add_spatial_heads(backbone, processor, ("depth",), output_size=(64, 64))
    image = Image.new("RGB", (56, 56), (90, 120, 200))
    inputs = model.perception_inputs([image], "depth")
    filler = processor.tokenizer.encode(" far", add_special_tokens=False)[0]
    extra = spec["tokens"] - inputs["input_ids"].shape[1]
    if extra > 0:  # lengthen the prompt with ordinary text tokens before the perception request
        pad = torch.full((1, extra), filler)
        cut = int((inputs["input_ids"][0] == model.adapter.image_token_id).nonzero()[-1]) + 1
        for key in ("input_ids", "mm_token_type_ids"):
            if key in inputs:
                value = pad if key == "input_ids" else torch.zeros_like(pad)
                inputs[key] = torch.cat([inputs[key][:, :cut], value, inputs[key][:, cut:]], dim=1)
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    labels = inputs["input_ids"].masked_fill(inputs["input_ids"] == model.adapter.image_token_id, -100)
    depth = torch.rand(1, 64, 64) * 5 + 0.5
    if variant == "backbone":
        return lambda: backbone(**inputs, labels=labels).loss, backbone, inputs
    return lambda: model(**inputs, labels=labels, aux_targets={"depth": depth}).loss, model, inputs


def measure(config_name: str, variant: str, repeats: int) -> dict:
    """Run in this process: one warm-up step, then `repeats` timed steps; peak RSS over one step."""
    torch.manual_seed(0)
    step, module, inputs = _build(config_name, variant)

    def run() -> None:
        module.zero_grad(set_to_none=True)
        step().backward()

    run()
    with PeakRSS() as peak:
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {
        "config": config_name,
        "variant": variant,
        "tokens": int(inputs["input_ids"].shape[1]),
        "step_s": statistics.median(times),
        "peak_mib": peak.delta_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.repeats)))
        return
    rows = []
    for config_name in args.configs:
        for variant in ("backbone", "spatial"):
            cmd = [sys.executable, __file__, "--one", config_name, variant]
            cmd += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32, batch 1")
    print(f"{'config':<6} {'variant':<28} {'tokens':>6} {'step (s)':>9} {'peak (MiB)':>11}")
    names = {"backbone": "backbone fwd+bwd (labels)", "spatial": "SpatialModel fwd+bwd (+depth)"}
    for row in rows:
        print(
            f"{row['config']:<6} {names[row['variant']]:<28} {row['tokens']:>6} "
            f"{row['step_s']:>9.3f} {row['peak_mib']:>11.0f}"
        )


if __name__ == "__main__":
    main()
