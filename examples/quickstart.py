"""Quickstart: attach spatial heads to a backbone, train depth on the synthetic world, save and reload.

Runs offline on a CPU in about a minute with the tiny Qwen2-VL fixture. For a real backbone,
replace `build_tiny_backbone` with `AutoModelForImageTextToText.from_pretrained(...)` and
`AutoProcessor.from_pretrained(...)`.

    python examples/quickstart.py --steps 300 --out quickstart_out
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import trange

from cooper_lib import SpatialModel, add_spatial_heads
from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.data.synthetic import render_scenes
from cooper_lib.eval.metrics import abs_rel
from cooper_lib.modalities import make_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("quickstart_out"))
    args = parser.parse_args()
    torch.manual_seed(0)

    backbone, processor = build_tiny_backbone("qwen2_vl")
    model = add_spatial_heads(backbone, processor, modalities=("depth",), output_size=(32, 32))
    train, held_out = render_scenes(64, seed=0), render_scenes(8, seed=1)
    # no weight decay: the frozen backbone's embedding matrices train only in the added tokens' rows,
    # and decay would shrink every row (save_pretrained would then have to save the whole matrices)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0
    )

    def absrel() -> float:
        model.eval()
        pred = model.perceive([s.rgb for s in held_out], "depth")
        target = torch.stack([s.depth for s in held_out])
        pred = torch.nn.functional.interpolate(pred[:, None], size=target.shape[-2:], mode="bilinear")[:, 0]
        model.train()
        return abs_rel(pred, target, target > 0)

    before = absrel()
    for step in trange(args.steps, desc="stage-1 depth"):
        batch = [train[(step * 8 + i) % len(train)] for i in range(8)]
        inputs = model.perception_inputs([s.rgb for s in batch], "depth")
        loss = model(**inputs, aux_targets={"depth": torch.stack([s.depth for s in batch])}).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = absrel()
    print(f"held-out depth AbsRel: {before:.3f} before, {after:.3f} after {args.steps} steps")

    model.save_pretrained(args.out / "heads")
    fresh, fresh_processor = build_tiny_backbone("qwen2_vl")  # the same seeded weights
    reloaded = SpatialModel.from_pretrained(fresh, args.out / "heads", fresh_processor).eval()
    scene = held_out[0]
    depth = reloaded.perceive([scene.rgb], "depth")[0]
    assert torch.equal(depth, model.eval().perceive([scene.rgb], "depth")[0]), "reloaded heads differ"
    make_grid([(scene.rgb, scene.depth, depth)], "depth").save(args.out / "depth.png")
    print(f"saved {args.out / 'heads'} and {args.out / 'depth.png'}")


if __name__ == "__main__":
    main()
