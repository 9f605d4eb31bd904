"""Evaluation metrics: depth, segmentation, and (from `cooper_lib.data`, where training reads them
too) answer extraction, answer scoring and Q-SpatialBench quantities.

Pure functions on tensors, strings and floats; each module's docstring states its formulas.
"""

from cooper_lib.data.answers import MRA_THRESHOLDS, mean_relative_accuracy
from cooper_lib.data.extraction import (
    answer_spans,
    boxed_contents,
    extract_choice,
    extract_number,
    extract_yes_no,
    parse_number,
)
from cooper_lib.data.quantities import (
    CM_PER_UNIT,
    QSPATIAL_THRESHOLDS,
    Quantity,
    extract_quantity,
    normalize_unit,
    qspatial_ratio,
    qspatial_success,
    to_cm,
)
from cooper_lib.modalities.depth_metrics import (
    EIGEN_CROP,
    NYU_GRID,
    NYU_MAX_DEPTH,
    NYU_MIN_DEPTH,
    abs_rel,
    align_depth,
    delta_accuracy,
    depth_metrics,
    eigen_crop_mask,
    fit_scale_shift,
    log10_error,
    nyu_depth_metrics,
    nyu_valid_mask,
    resize_to_grid,
    rmse,
    rmse_log,
    silog,
    sq_rel,
)
from cooper_lib.modalities.segmentation_metrics import (
    confusion_matrix,
    mean_iou,
    per_class_iou,
    pixel_accuracy,
)

__all__ = [
    "CM_PER_UNIT",
    "EIGEN_CROP",
    "MRA_THRESHOLDS",
    "NYU_GRID",
    "NYU_MAX_DEPTH",
    "NYU_MIN_DEPTH",
    "QSPATIAL_THRESHOLDS",
    "Quantity",
    "abs_rel",
    "align_depth",
    "answer_spans",
    "boxed_contents",
    "confusion_matrix",
    "delta_accuracy",
    "depth_metrics",
    "eigen_crop_mask",
    "extract_choice",
    "extract_number",
    "extract_quantity",
    "extract_yes_no",
    "fit_scale_shift",
    "log10_error",
    "mean_iou",
    "mean_relative_accuracy",
    "normalize_unit",
    "nyu_depth_metrics",
    "nyu_valid_mask",
    "parse_number",
    "per_class_iou",
    "pixel_accuracy",
    "qspatial_ratio",
    "qspatial_success",
    "resize_to_grid",
    "rmse",
    "rmse_log",
    "silog",
    "sq_rel",
    "to_cm",
]
