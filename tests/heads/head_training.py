"""Brief end-to-end training of a generative head on the synthetic world, and its map errors.

Shared by the flow and discrete head tests: a tiny Qwen2-VL backbone with one modality attached,
trained on a few rendered scenes, evaluated on scenes it has not seen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cooper_lib.data.synthetic.config import SEMANTIC_CLASSES, SceneConfig
from cooper_lib.data.synthetic.render import render_scenes
from cooper_lib.eval.metrics import abs_rel, align_depth, confusion_matrix, pixel_accuracy

#: Depth: the world's defaults at 56 px (4 visual tokens in the tiny Qwen2-VL), up to 3 objects.
DEPTH_SCENES = SceneConfig(width=56, height=56, max_objects=3)
#: Segmentation: bigger, nearer objects, walls half the time and a wider camera pitch, so the
#: classes are less dominated by the ground (ground is 49% of the pixels instead of 64%).
SEGMENTATION_SCENES = SceneConfig(
    width=56,
    height=56,
    min_objects=2,
    max_objects=4,
    object_size=(0.6, 1.5),
    placement_distance=(2.0, 6.0),
    camera_pitch=(0.0, 40.0),
    wall_probability=0.5,
)
NUM_CLASSES = len(SEMANTIC_CLASSES)


def scenes(n: int, seed: int, modality: str) -> list:
    return render_scenes(n, seed=seed, config=DEPTH_SCENES if modality == "depth" else SEGMENTATION_SCENES)


def targets(batch: list, modality: str) -> torch.Tensor:
    """Depth [n, H, W] in metres (0 on the background: invalid) or semantic ids [n, H, W]."""
    return torch.stack([s.depth if modality == "depth" else s.semantic for s in batch])


def train(
    spatial, modality: str, train_scenes: list, steps: int, lr: float = 3e-3, batch: int = 8
) -> list[float]:
    """AdamW on everything trainable (backbone, queries, head); returns the losses."""
    batches = [
        (spatial.perception_inputs([s.rgb for s in chunk], modality), targets(chunk, modality))
        for chunk in (train_scenes[i : i + batch] for i in range(0, len(train_scenes), batch))
    ]
    optimizer = torch.optim.AdamW([p for p in spatial.parameters() if p.requires_grad], lr=lr)
    spatial.train()
    losses = []
    for step in range(steps):
        inputs, target = batches[step % len(batches)]
        loss = spatial(**inputs, aux_targets={modality: target}).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    spatial.eval()
    return losses


def _resized(gt: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(gt[:, None].float(), size=size, mode="nearest-exact")[:, 0]


def depth_error(spatial, test_scenes: list) -> float:
    """Mean AbsRel after least-squares scale-and-shift alignment, over valid ground-truth pixels
    where the prediction is a depth (not NaN)."""
    pred = spatial.perceive([s.rgb for s in test_scenes], "depth")
    gt = _resized(targets(test_scenes, "depth"), pred.shape[-2:])
    errors = []
    for p, g in zip(pred, gt, strict=True):
        mask = (g > 0) & torch.isfinite(p)
        errors.append(abs_rel(align_depth(torch.nan_to_num(p), g, mask, mode="scale_shift"), g, mask))
    return sum(errors) / len(errors)


def segmentation_error(spatial, test_scenes: list) -> float:
    """1 - pixel accuracy."""
    pred = spatial.perceive([s.rgb for s in test_scenes], "segmentation")
    gt = _resized(targets(test_scenes, "segmentation"), pred.shape[-2:]).long()
    return 1.0 - pixel_accuracy(confusion_matrix(pred, gt, NUM_CLASSES))
