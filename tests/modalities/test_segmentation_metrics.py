import math

import pytest
import torch

from cooper_lib.modalities.segmentation_metrics import (
    confusion_matrix,
    mean_iou,
    per_class_iou,
    pixel_accuracy,
)

PRED = torch.tensor([[0, 0, 1], [1, 2, 2]])
GT = torch.tensor([[0, 1, 1], [1, 2, 255]])


def test_confusion_matrix_counts_true_rows_predicted_columns_and_skips_ignored():
    confmat = confusion_matrix(PRED, GT, num_classes=4, ignore_index=255)
    expected = torch.zeros(4, 4, dtype=torch.long)
    expected[0, 0] = 1
    expected[1, 0] = 1
    expected[1, 1] = 2
    expected[2, 2] = 1
    torch.testing.assert_close(confmat, expected)


def test_iou_per_class_and_mean_exclude_classes_absent_from_both():
    confmat = confusion_matrix(PRED, GT, num_classes=4, ignore_index=255)
    iou = per_class_iou(confmat)
    # class 0: tp 1, gt row 1, pred column 2 -> 1 / 2; class 1: 2 / (3 + 2 - 2); class 2: 1 / 1
    assert iou[:3].tolist() == pytest.approx([0.5, 2 / 3, 1.0])
    assert math.isnan(float(iou[3]))
    assert mean_iou(confmat) == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert pixel_accuracy(confmat) == pytest.approx(4 / 5)


def test_class_predicted_but_absent_from_gt_counts_as_zero_iou():
    confmat = confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 0]), num_classes=3)
    assert mean_iou(confmat) == pytest.approx((0.5 + 0.0) / 2)


def test_dataset_level_score_sums_confusion_matrices():
    a = confusion_matrix(torch.tensor([0, 0]), torch.tensor([0, 0]), num_classes=2)
    b = confusion_matrix(torch.tensor([1, 0]), torch.tensor([1, 1]), num_classes=2)
    # summed: C[0,0] = 2, C[1,0] = 1, C[1,1] = 1 -> IoU0 = 2 / 3, IoU1 = 1 / 2
    assert mean_iou(a + b) == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        confusion_matrix(torch.tensor([3]), torch.tensor([0]), num_classes=3)
    with pytest.raises(ValueError, match="gt holds"):
        confusion_matrix(torch.tensor([0]), torch.tensor([255]), num_classes=3)
    with pytest.raises(TypeError, match="integer"):
        confusion_matrix(torch.tensor([0.0]), torch.tensor([0]), num_classes=3)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(torch.tensor([0]), torch.tensor([0]), num_classes=0)
    with pytest.raises(ValueError, match="empty"):
        mean_iou(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        pixel_accuracy(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="square"):
        per_class_iou(torch.zeros(2, 3))
