"""Monocular depth metrics, least-squares alignment and the NYU v2 (Eigen) protocol.

All metrics take a prediction and a ground truth of the same shape (metres, or any common unit)
and an optional boolean mask, and average over the valid pixels only. With ``p`` the predicted
and ``g`` the true depth at the N valid pixels:

* AbsRel: ``mean(abs(p - g) / g)``
* SqRel: ``mean((p - g)^2 / g)``
* RMSE: ``sqrt(mean((p - g)^2))``
* RMSE-log: ``sqrt(mean((ln p - ln g)^2))``
* log10: ``mean(abs(log10 p - log10 g))``
* delta_k: ``mean(max(p / g, g / p) < 1.25^k)`` for k = 1, 2, 3
* SILog: ``100 * sqrt(mean(d^2) - mean(d)^2)`` with ``d = ln p - ln g``

Each formula is one line of torch; they are written here, next to the masking, alignment and
resizing rules of the NYU protocol, so the whole protocol reads in one file.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

AlignMode = Literal["none", "scale", "scale_shift"]
AlignSpace = Literal["depth", "disparity"]

NYU_MIN_DEPTH = 1e-3
"""Metres; NYU v2 ground truth at or below this is invalid (strict ``gt > 0.001``)."""
NYU_MAX_DEPTH = 10.0
"""Metres; NYU v2 ground truth at or above this is invalid (strict ``gt < 10``)."""
NYU_GRID = (480, 640)
"""(height, width) of the NYU v2 ground truth on which the Eigen crop is defined."""
EIGEN_CROP = (45, 471, 41, 601)
"""Rows 45:471 and columns 41:601 (end-exclusive) of the 480 x 640 grid."""

DISPARITY_FLOOR = 1e-8
"""Aligned disparities are floored here before inversion, so a non-positive fit means "far"."""


def _check_pair(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if not isinstance(pred, torch.Tensor) or not isinstance(gt, torch.Tensor):
        raise TypeError(
            f"pred and gt must be torch.Tensor, got {type(pred).__name__} and {type(gt).__name__}"
        )
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred and gt must have the same shape, got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    if mask is None:
        return torch.ones_like(gt, dtype=torch.bool)
    if mask.dtype != torch.bool or mask.shape != gt.shape:
        raise ValueError(
            f"mask must be a bool tensor of shape {tuple(gt.shape)}, got {mask.dtype} {tuple(mask.shape)}"
        )
    return mask


def _valid(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None, *, positive_pred: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten to the valid pixels in float64; the ground truth must be positive there."""
    mask = _check_pair(pred, gt, mask)
    p = pred[mask].double()
    g = gt[mask].double()
    if p.numel() == 0:
        raise ValueError("mask selects no pixels: a depth metric needs at least one valid pixel")
    if bool((g <= 0).any()):
        raise ValueError("gt must be > 0 at every valid pixel; exclude invalid pixels with mask")
    if positive_pred and bool((p <= 0).any()):
        raise ValueError(
            "pred must be > 0 at every valid pixel for ratio and log metrics; clamp it first "
            "(nyu_depth_metrics clamps to [0.001, 10] m)"
        )
    return p, g


_FORMULAS = {
    "abs_rel": lambda p, g: ((p - g).abs() / g).mean(),
    "sq_rel": lambda p, g: ((p - g) ** 2 / g).mean(),
    "rmse": lambda p, g: ((p - g) ** 2).mean().sqrt(),
    "rmse_log": lambda p, g: ((p.log() - g.log()) ** 2).mean().sqrt(),
    "log10": lambda p, g: (p.log10() - g.log10()).abs().mean(),
    "delta1": lambda p, g: (torch.maximum(p / g, g / p) < 1.25).double().mean(),
    "delta2": lambda p, g: (torch.maximum(p / g, g / p) < 1.25**2).double().mean(),
    "delta3": lambda p, g: (torch.maximum(p / g, g / p) < 1.25**3).double().mean(),
    "silog": lambda p, g: (p.log() - g.log()).var(correction=0).clamp_min(0.0).sqrt() * 100.0,
}
"""Each metric on the flattened valid pixels (float64), as in the module table."""


def abs_rel(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Absolute relative error ``mean(|p - g| / g)`` over valid pixels."""
    return float(_FORMULAS["abs_rel"](*_valid(pred, gt, mask, positive_pred=False)))


def sq_rel(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Squared relative error ``mean((p - g)^2 / g)`` over valid pixels."""
    return float(_FORMULAS["sq_rel"](*_valid(pred, gt, mask, positive_pred=False)))


def rmse(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Root mean squared error ``sqrt(mean((p - g)^2))`` over valid pixels."""
    return float(_FORMULAS["rmse"](*_valid(pred, gt, mask, positive_pred=False)))


def rmse_log(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """RMSE of natural logs ``sqrt(mean((ln p - ln g)^2))`` over valid pixels."""
    return float(_FORMULAS["rmse_log"](*_valid(pred, gt, mask, positive_pred=True)))


def log10_error(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean absolute log10 error ``mean(|log10 p - log10 g|)`` over valid pixels."""
    return float(_FORMULAS["log10"](*_valid(pred, gt, mask, positive_pred=True)))


def delta_accuracy(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None, *, power: int = 1
) -> float:
    """Threshold accuracy ``mean(max(p / g, g / p) < 1.25 ** power)``; power 1, 2, 3 give delta1/2/3."""
    if power not in (1, 2, 3):
        raise ValueError(f"power must be 1, 2 or 3, got {power!r}")
    return float(_FORMULAS[f"delta{power}"](*_valid(pred, gt, mask, positive_pred=True)))


def silog(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Scale-invariant log error ``100 * sqrt(mean(d^2) - mean(d)^2)``, ``d = ln p - ln g`` (KITTI form)."""
    return float(_FORMULAS["silog"](*_valid(pred, gt, mask, positive_pred=True)))


def depth_metrics(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, float]:
    """All depth metrics at once: ``abs_rel, sq_rel, rmse, rmse_log, log10, delta1..3, silog``."""
    p, g = _valid(pred, gt, mask, positive_pred=True)
    return {name: float(formula(p, g)) for name, formula in _FORMULAS.items()}


def fit_scale_shift(x: torch.Tensor, y: torch.Tensor, *, shift: bool) -> tuple[float, float]:
    """Least-squares ``(s, t)`` minimising ``sum((s * x + t - y)^2)`` (``t = 0`` when ``shift`` is False).

    Closed form: scale only ``s = sum(x y) / sum(x^2)``; with shift the 2 x 2 normal equations
    ``[[sum x^2, sum x], [sum x, n]] [s, t] = [sum x y, sum y]``.
    """
    if x.shape != y.shape or x.dim() != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got {tuple(x.shape)} and {tuple(y.shape)}")
    x = x.double()
    y = y.double()
    n = x.numel()
    sxx, sxy = (x * x).sum(), (x * y).sum()
    if not shift:
        if float(sxx) == 0.0:
            raise ValueError("cannot fit a scale: the prediction is zero at every valid pixel")
        return float(sxy / sxx), 0.0
    if n < 2:
        raise ValueError(f"scale-and-shift needs at least 2 valid pixels, got {n}")
    sx, sy = x.sum(), y.sum()
    det = sxx * n - sx * sx
    if float(det.abs()) <= 1e-12 * float(sxx * n):
        raise ValueError("cannot fit scale and shift: the prediction is constant over the valid pixels")
    s = (sxy * n - sx * sy) / det
    t = (sxx * sy - sx * sxy) / det
    return float(s), float(t)


def align_depth(
    pred: torch.Tensor,
    gt: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    mode: AlignMode = "none",
    space: AlignSpace = "depth",
) -> torch.Tensor:
    """Align a (relative) prediction to the ground truth by least squares over the valid pixels.

    ``space="depth"``: ``pred`` is a depth map and ``s * pred + t`` is fitted to ``gt``.
    ``space="disparity"``: ``pred`` is a disparity (inverse-depth) map, as relative depth models
    output; ``s * pred + t`` is fitted to ``1 / gt`` and the result is returned as depth
    ``1 / max(s * pred + t, DISPARITY_FLOOR)``. ``mode="none"`` returns ``pred`` unchanged in
    depth space and ``1 / pred`` in disparity space.

    Returns:
        The aligned depth map, same shape as ``pred``, float32 unless ``pred`` is float64.
    """
    if mode not in ("none", "scale", "scale_shift"):
        raise ValueError(f"mode must be 'none', 'scale' or 'scale_shift', got {mode!r}")
    if space not in ("depth", "disparity"):
        raise ValueError(f"space must be 'depth' or 'disparity', got {space!r}")
    mask = _check_pair(pred, gt, mask)
    out_dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
    x = pred.double()
    if space == "depth":
        target = gt.double()
    else:
        if bool((gt[mask] <= 0).any()):
            raise ValueError("gt must be > 0 at every valid pixel to fit in disparity space")
        target = gt.double().reciprocal()
    if mode == "none":
        fitted = x
    else:
        s, t = fit_scale_shift(x[mask], target[mask], shift=mode == "scale_shift")
        fitted = s * x + t
    if space == "disparity":
        fitted = fitted.clamp_min(DISPARITY_FLOOR).reciprocal()
    return fitted.to(out_dtype)


def eigen_crop_mask(device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean 480 x 640 mask, True on rows 45:471 and columns 41:601 (the Eigen crop).

    The crop is defined on the original NYU v2 grid only; there is deliberately no size
    argument, because cropping a resized grid (as some upstream code does) changes the region.
    """
    mask = torch.zeros(NYU_GRID, dtype=torch.bool, device=device)
    top, bottom, left, right = EIGEN_CROP
    mask[top:bottom, left:right] = True
    return mask


def nyu_valid_mask(gt: torch.Tensor) -> torch.Tensor:
    """Valid pixels of the NYU v2 protocol: ``0.001 < gt < 10`` inside the Eigen crop."""
    if gt.shape != NYU_GRID:
        raise ValueError(f"gt must be the {NYU_GRID[0]} x {NYU_GRID[1]} NYU v2 grid, got {tuple(gt.shape)}")
    return (gt > NYU_MIN_DEPTH) & (gt < NYU_MAX_DEPTH) & eigen_crop_mask(gt.device)


def resize_to_grid(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a 2-D map to ``size`` (align_corners False); unchanged if already that size."""
    if pred.dim() != 2:
        raise ValueError(f"pred must be a 2-D (H, W) map, got shape {tuple(pred.shape)}")
    if tuple(pred.shape) == tuple(size):
        return pred
    out = F.interpolate(pred[None, None].double(), size=size, mode="bilinear", align_corners=False)
    return out[0, 0].to(pred.dtype if pred.is_floating_point() else torch.float32)


def nyu_depth_metrics(
    pred: torch.Tensor,
    gt: torch.Tensor,
    *,
    mode: AlignMode = "none",
    space: AlignSpace = "depth",
) -> dict[str, float]:
    """Score one NYU v2 prediction with the Eigen protocol.

    Steps: the prediction (any H x W) is resized bilinearly to the 480 x 640 ground-truth grid
    (never the ground truth to the prediction); valid pixels are ``0.001 < gt < 10`` m inside
    the Eigen crop; the prediction is aligned on those pixels (``mode``, ``space``, see
    `align_depth`); it is clamped to ``[0.001, 10]`` m; then `depth_metrics`.

    Args:
        pred: predicted depth (or disparity with ``space="disparity"``), shape (H, W).
        gt: ground-truth depth in metres, shape (480, 640).
        mode: ``"none"`` for metric predictions, ``"scale"`` or ``"scale_shift"`` for relative ones.
        space: the space the alignment is fitted in.
    """
    if not isinstance(pred, torch.Tensor) or not isinstance(gt, torch.Tensor):
        raise TypeError(
            f"pred and gt must be torch.Tensor, got {type(pred).__name__} and {type(gt).__name__}"
        )
    valid = nyu_valid_mask(gt)
    resized = resize_to_grid(pred, NYU_GRID)
    aligned = align_depth(resized, gt, valid, mode=mode, space=space)
    clamped = aligned.clamp(NYU_MIN_DEPTH, NYU_MAX_DEPTH)
    return depth_metrics(clamped, gt.to(clamped.dtype), valid)
