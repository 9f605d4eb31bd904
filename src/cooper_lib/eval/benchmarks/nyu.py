"""NYU Depth v2 (Silberman et al., ECCV 2012) depth evaluation from local files.

Two published layouts:

* the labelled MATLAB file ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, i.e. HDF5, read with
  h5py): datasets ``images`` stored as (N, 3, 640, 480) uint8 and ``depths`` as (N, 640, 480)
  float metres (MATLAB's column-major order; transposed here to 480 x 640). The Eigen test
  split is 654 of its 1449 frames: pass their 0-based positions as ``indices`` (the official
  ``splits.mat`` lists them 1-based as ``testNdxs``).
* a folder of RGB / depth pairs named as in the widely used Eigen test copy (BTS, Depth Anything):
  ``<scene>/rgb_00045.jpg`` (or ``.png``) beside ``<scene>/sync_depth_00045.png``, a 16-bit PNG
  of depth times ``depth_scale`` (1000: millimetres).

Scoring is `cooper_lib.modalities.depth_metrics.nyu_depth_metrics` per image (Eigen crop on the
480 x 640 grid, ``0.001 < gt < 10`` m, prediction resized to the ground truth), averaged over
images. COOPER aligns relative predictions by least-squares scale and shift in depth space,
which is the default here; pass ``mode="none"`` for metric predictions.

`evaluate` runs a depth-map benchmark through the depth-map path at the bottom of this module: the
model's depth head generates a map per image (`depth_records`), recorded under the policy
``"depth_map"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cooper_lib.eval.benchmarks._io import require_dir, require_file
from cooper_lib.eval.benchmarks.base import Benchmark, Score
from cooper_lib.eval.benchmarks.items import BenchmarkItem
from cooper_lib.images import to_pil
from cooper_lib.modalities.depth_metrics import NYU_GRID, AlignMode, AlignSpace, nyu_depth_metrics
from cooper_lib.model import SpatialModel

NAME = "NYU Depth v2"
DEPTH_INSTRUCTION = "Estimate the depth of the image and generate the depth map."
_RGB_NAME = re.compile(r"rgb_(\d+)\.(?:jpg|jpeg|png)", re.IGNORECASE)
_MAT_LAYOUT = {"images": (3, 640, 480), "depths": (640, 480)}


class NYUv2Benchmark(Benchmark):
    """NYU v2 depth: predictions are depth maps (tensors), scores are the protocol's metrics."""

    def __init__(
        self,
        items: Sequence[BenchmarkItem],
        *,
        mode: AlignMode = "scale_shift",
        space: AlignSpace = "depth",
        meta: dict[str, Any] | None = None,
    ):
        super().__init__(NAME, items, meta={**(meta or {}), "mode": mode, "space": space})
        self.mode: AlignMode = mode
        self.space: AlignSpace = space

    def score(self, item: BenchmarkItem, prediction: Any) -> Score:
        """Eigen-protocol metrics of one predicted depth map (any H x W tensor)."""
        if not isinstance(prediction, torch.Tensor):
            raise TypeError(f"prediction must be a torch.Tensor depth map, got {type(prediction).__name__}")
        if item.target is None:
            raise ValueError(f"item {item.id!r} has no depth target; it is not an NYU v2 item")
        gt = item.target()
        metrics = nyu_depth_metrics(prediction, gt, mode=self.mode, space=self.space)
        return {"id": item.id, "category": item.category, "answer_type": "depth", "failed": False, **metrics}

    def aggregate(self, scores: Iterable[Score]) -> dict[str, Any]:
        """Mean of every metric over the scored images; ``overall`` is the mean AbsRel."""
        scores = self._checked(scores)
        metrics = mean_depth_metrics(scores)
        return {
            "benchmark": self.name,
            "n": len(scores),
            "n_items": len(self),
            "overall": metrics["abs_rel"],
            "metrics": metrics,
            "mode": self.mode,
            "space": self.space,
        }


def mean_depth_metrics(scores: Sequence[Score]) -> dict[str, float]:
    """Mean of every metric over per-image depth scores (those `NYUv2Benchmark.score` returns)."""
    names = [k for k in scores[0] if k not in ("id", "category", "answer_type", "failed")]
    return {name: sum(float(s[name]) for s in scores) / len(scores) for name in names}


def _mat_rgb(path: Path, index: int) -> Image.Image:
    import h5py

    with h5py.File(path, "r") as f:
        return to_pil(f["images"][index].transpose(2, 1, 0), f"{path.name} image {index}")


def _mat_depth(path: Path, index: int) -> torch.Tensor:
    import h5py

    with h5py.File(path, "r") as f:
        return torch.from_numpy(np.ascontiguousarray(f["depths"][index].T, dtype=np.float32))


def _png_depth(path: Path, depth_scale: float) -> torch.Tensor:
    with Image.open(path) as image:
        depth = np.asarray(image, dtype=np.float32) / depth_scale
    return torch.from_numpy(depth)


def _mat_items(path: Path, indices: Sequence[int] | None) -> list[BenchmarkItem]:
    try:
        import h5py
    except ImportError as err:
        raise ImportError(
            f"{NAME}: {path.name} is a MATLAB v7.3 (HDF5) file and reading it needs h5py; "
            "install it with `pip install h5py`"
        ) from err
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{NAME}: {path}: not a readable HDF5 file, truncated or corrupt ({err})") from err
    with handle as f:
        counts = set()
        for key, frame_shape in _MAT_LAYOUT.items():
            if key not in f:
                raise ValueError(f"{NAME}: {path} lacks the dataset {key!r}; found {sorted(f.keys())}")
            shape = f[key].shape
            if tuple(shape[1:]) != frame_shape:
                raise ValueError(f"{NAME}: {path}: {key!r} must be (N, *{frame_shape}), got {shape}")
            counts.add(shape[0])
    if len(counts) != 1:
        raise ValueError(f"{NAME}: {path}: images and depths hold different frame counts {sorted(counts)}")
    count = counts.pop()
    chosen = list(range(count)) if indices is None else [int(i) for i in indices]
    bad = [i for i in chosen if not 0 <= i < count]
    if bad:
        raise ValueError(f"indices must lie in [0, {count}), got {bad[:5]}")
    return [
        BenchmarkItem(
            id=f"{i:04d}",
            image=partial(_mat_rgb, path, i),
            question=DEPTH_INSTRUCTION,
            answer=None,
            answer_type="depth",
            target=partial(_mat_depth, path, i),
        )
        for i in chosen
    ]


def _folder_items(root: Path, depth_scale: float) -> list[BenchmarkItem]:
    rgbs = sorted(p for p in root.rglob("rgb_*") if _RGB_NAME.fullmatch(p.name))
    if not rgbs:
        raise FileNotFoundError(
            f"{NAME}: no rgb_<id>.jpg / rgb_<id>.png files under {root}; expected pairs like "
            "<scene>/rgb_00045.jpg and <scene>/sync_depth_00045.png"
        )
    pairs = [(rgb, rgb.with_name(f"sync_depth_{rgb.stem.removeprefix('rgb_')}.png")) for rgb in rgbs]
    missing = [str(depth) for _, depth in pairs if not depth.is_file()]
    if missing:
        raise FileNotFoundError(f"{NAME}: {len(missing)} depth files missing beside their RGB: {missing[:5]}")
    items = []
    for rgb, depth in pairs:
        with Image.open(depth) as image:
            if image.size != (NYU_GRID[1], NYU_GRID[0]):
                raise ValueError(f"{NAME}: {depth} must be {NYU_GRID[1]} x {NYU_GRID[0]}, got {image.size}")
        items.append(
            BenchmarkItem(
                id=rgb.relative_to(root).with_suffix("").as_posix(),
                image=rgb,
                question=DEPTH_INSTRUCTION,
                answer=None,
                answer_type="depth",
                category=rgb.parent.name if rgb.parent != root else "",
                target=partial(_png_depth, depth, depth_scale),
            )
        )
    return items


def load_nyu_v2(
    path: str | Path,
    *,
    indices: Sequence[int] | None = None,
    mode: AlignMode = "scale_shift",
    space: AlignSpace = "depth",
    depth_scale: float = 1000.0,
) -> NYUv2Benchmark:
    """Load NYU v2 from ``nyu_depth_v2_labeled.mat`` or a folder of ``rgb_*`` / ``sync_depth_*`` pairs.

    Args:
        path: the .mat file or the folder.
        indices: 0-based frames of the .mat file to use (all 1449 by default).
        mode: alignment of predictions before scoring (``"none"``, ``"scale"``, ``"scale_shift"``).
        space: ``"depth"`` or ``"disparity"``, the space the alignment is fitted in.
        depth_scale: depth PNG integer per metre (folder layout only).
    """
    if not depth_scale > 0:
        raise ValueError(f"depth_scale must be > 0, got {depth_scale!r}")
    path = Path(path)
    if path.suffix.lower() == ".mat":
        items = _mat_items(require_file(path, NAME, "the labelled dataset nyu_depth_v2_labeled.mat"), indices)
    else:
        if indices is not None:
            raise ValueError("indices select frames of the .mat file; the folder layout takes none")
        items = _folder_items(require_dir(path, NAME, "rgb_<id> / sync_depth_<id>.png pairs"), depth_scale)
    return NYUv2Benchmark(items, mode=mode, space=space, meta={"source": str(path)})


# ------------------------------------------------------------------------------------ the depth-map run
# `cooper_lib.eval.runner.evaluate` answers question benchmarks with the reasoner; a depth-map
# benchmark runs the model's depth head instead, through the functions below.
DEPTH_MAP_POLICY = "depth_map"
"""The policy name recorded for depth-map benchmarks, which run the depth head, not the reasoner."""


def depth_model(model_or_reasoner: Any, policy: str | None) -> SpatialModel:
    """The `SpatialModel` whose depth head a depth-map benchmark scores (a reasoner's own model)."""
    if policy is not None:
        raise ValueError(f"policy: a depth-map benchmark runs the depth head directly; got policy={policy!r}")
    model = getattr(model_or_reasoner, "model", model_or_reasoner)
    if not isinstance(model, SpatialModel):
        raise TypeError(
            "model_or_reasoner: a depth-map benchmark needs a SpatialModel (or a reasoner holding one), "
            f"got {type(model_or_reasoner).__name__}"
        )
    if "depth" not in model.heads:
        raise ValueError(f"model_or_reasoner: the model has no depth head (heads: {list(model.heads)})")
    return model


def depth_records(
    model: SpatialModel, benchmark: Benchmark, batch: list[BenchmarkItem]
) -> list[dict[str, Any]]:
    """Cache records of one batch of images scored on the maps of ``model``'s depth head."""
    was_training = model.training
    model.eval()
    try:
        maps = model.perceive([item.load_image() for item in batch], "depth").float().cpu()
    finally:
        model.train(was_training)
    return [
        {
            "id": item.id,
            "category": item.category,
            "prediction": None,
            "tools": ["depth"],
            "stop_reason": "map",
            "generated_tokens": 0,
            "score": benchmark.score(item, depth),
        }
        for item, depth in zip(batch, maps, strict=True)
    ]


def depth_run_metrics(name: str, scores: Sequence[Score]) -> dict[str, Any]:
    """The figures of a finished depth-map run read back from its cache (no benchmark at hand):
    the mean depth metrics, AbsRel as the overall figure."""
    depth = mean_depth_metrics(scores)
    return {"benchmark": name, "n": len(scores), "overall": depth["abs_rel"], "metrics": depth}
