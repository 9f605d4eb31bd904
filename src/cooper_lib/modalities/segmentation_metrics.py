"""Semantic segmentation metrics from class-id maps: confusion matrix, per-class IoU, mIoU, pixel accuracy.

Work through a confusion matrix so a dataset-level score is the metric of the summed matrices
(the standard ADE20K / Cityscapes convention), not a mean of per-image scores::

    confmat = sum(confusion_matrix(p, g, num_classes=150, ignore_index=255) for p, g in pairs)
    miou = mean_iou(confmat)

With ``C[i, j]`` the number of pixels of true class ``i`` predicted as ``j``:
``IoU_c = C[c, c] / (sum_j C[c, j] + sum_i C[i, c] - C[c, c])``; classes absent from both the
ground truth and the prediction (denominator 0) have no IoU and are left out of the mean;
pixel accuracy is ``trace(C) / sum(C)``. ``torch.bincount`` does the counting.
"""

from __future__ import annotations

import torch


def confusion_matrix(
    pred: torch.Tensor, gt: torch.Tensor, num_classes: int, *, ignore_index: int | None = None
) -> torch.Tensor:
    """Count (true class, predicted class) pairs over the pixels whose ground truth is not ignored.

    Args:
        pred: integer class ids, any shape.
        gt: integer class ids, same shape as ``pred``.
        num_classes: C; every non-ignored id must lie in ``[0, C)``.
        ignore_index: ground-truth id whose pixels are skipped (e.g. 255 for ADE20K "other").

    Returns:
        int64 tensor (C, C), rows indexed by true class, columns by predicted class.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred and gt must have the same shape, got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    if pred.is_floating_point() or gt.is_floating_point():
        raise TypeError(f"pred and gt must hold integer class ids, got {pred.dtype} and {gt.dtype}")
    keep = torch.ones_like(gt, dtype=torch.bool) if ignore_index is None else gt != ignore_index
    p = pred[keep].long()
    g = gt[keep].long()
    for name, ids in (("gt", g), ("pred", p)):
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_classes):
            raise ValueError(
                f"{name} holds class ids in [{int(ids.min())}, {int(ids.max())}] outside [0, {num_classes}) "
                f"at non-ignored pixels"
            )
    counts = torch.bincount(g * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _check_confmat(confmat: torch.Tensor) -> torch.Tensor:
    if confmat.dim() != 2 or confmat.shape[0] != confmat.shape[1]:
        raise ValueError(f"confmat must be a square (C, C) matrix, got shape {tuple(confmat.shape)}")
    return confmat.double()


def per_class_iou(confmat: torch.Tensor) -> torch.Tensor:
    """IoU of every class (float64, length C); NaN for classes absent from both gt and prediction."""
    c = _check_confmat(confmat)
    tp = c.diagonal()
    union = c.sum(dim=1) + c.sum(dim=0) - tp
    iou = torch.full_like(tp, float("nan"))
    present = union > 0
    iou[present] = tp[present] / union[present]
    return iou


def mean_iou(confmat: torch.Tensor) -> float:
    """Mean IoU over the classes present in the ground truth or the prediction."""
    iou = per_class_iou(confmat)
    present = ~iou.isnan()
    if not bool(present.any()):
        raise ValueError("confmat is empty: no pixel was counted, mIoU is undefined")
    return float(iou[present].mean())


def pixel_accuracy(confmat: torch.Tensor) -> float:
    """Fraction of counted pixels whose predicted class equals the true class."""
    c = _check_confmat(confmat)
    total = c.sum()
    if float(total) == 0.0:
        raise ValueError("confmat is empty: no pixel was counted, pixel accuracy is undefined")
    return float(c.diagonal().sum() / total)
