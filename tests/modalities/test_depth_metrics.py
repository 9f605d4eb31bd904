import math

import pytest
import torch

from cooper_lib.modalities.depth_metrics import (
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

PRED = torch.tensor([1.0, 2.0, 4.0])
GT = torch.tensor([2.0, 2.0, 2.0])
LN2 = math.log(2.0)


def test_each_metric_matches_its_formula_on_a_hand_case():
    # errors p - g = (-1, 0, 2); ratios p/g = (0.5, 1, 2)
    assert abs_rel(PRED, GT) == pytest.approx((0.5 + 0 + 1) / 3)
    assert sq_rel(PRED, GT) == pytest.approx((1 / 2 + 0 + 4 / 2) / 3)
    assert rmse(PRED, GT) == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    assert rmse_log(PRED, GT) == pytest.approx(math.sqrt(2 * LN2**2 / 3))
    assert log10_error(PRED, GT) == pytest.approx(2 * math.log10(2) / 3)
    # d = ln p - ln g = (-ln2, 0, ln2): mean 0, mean square 2 ln2^2 / 3
    assert silog(PRED, GT) == pytest.approx(100 * math.sqrt(2 * LN2**2 / 3))


def test_delta_thresholds_are_powers_of_1_25_and_strict():
    gt = torch.ones(5)
    pred = torch.tensor([1.2, 1.5, 1.9, 2.5, 1.25])  # 1.25 itself is not < 1.25
    assert delta_accuracy(pred, gt, power=1) == pytest.approx(1 / 5)
    assert delta_accuracy(pred, gt, power=2) == pytest.approx(3 / 5)  # 1.5625 > 1.5, 1.25
    assert delta_accuracy(pred, gt, power=3) == pytest.approx(4 / 5)  # 1.953125 > 1.9
    # symmetric: under-estimation by the same factor counts the same
    assert delta_accuracy(1 / pred[:4], gt[:4], power=1) == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="power"):
        delta_accuracy(pred, gt, power=4)


def test_silog_is_zero_for_a_scaled_prediction():
    gt = torch.tensor([1.0, 3.0, 7.0])
    assert silog(2.5 * gt, gt) == pytest.approx(0.0, abs=1e-6)
    assert abs_rel(2.5 * gt, gt) == pytest.approx(1.5)


def test_mask_excludes_pixels_and_validates():
    pred = torch.tensor([1.0, 2.0, 100.0])
    gt = torch.tensor([2.0, 2.0, -1.0])
    mask = torch.tensor([True, True, False])
    assert abs_rel(pred, gt, mask) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="gt must be > 0"):
        abs_rel(pred, gt)
    with pytest.raises(ValueError, match="no pixels"):
        abs_rel(pred, gt, torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool tensor"):
        abs_rel(pred, gt, torch.ones(3))


def test_bad_inputs_raise_with_names():
    with pytest.raises(ValueError, match="same shape"):
        rmse(torch.ones(3), torch.ones(4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        rmse([1.0], torch.ones(1))
    with pytest.raises(ValueError, match="pred must be > 0"):
        rmse_log(torch.tensor([0.0, 1.0]), torch.ones(2))


def test_depth_metrics_collects_all_names():
    out = depth_metrics(PRED, GT)
    assert set(out) == {
        "abs_rel",
        "sq_rel",
        "rmse",
        "rmse_log",
        "log10",
        "delta1",
        "delta2",
        "delta3",
        "silog",
    }
    assert out["delta1"] == pytest.approx(1 / 3)


def test_fit_scale_and_scale_shift_closed_forms():
    s, t = fit_scale_shift(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 5.0]), shift=False)
    assert (s, t) == (pytest.approx(12 / 5), 0.0)  # sum(xy) / sum(x^2) = (2 + 10) / 5
    x = torch.tensor([1.0, 2.0, 3.0, 5.0])
    s, t = fit_scale_shift(x, 2 * x + 1, shift=True)
    assert (s, t) == (pytest.approx(2.0), pytest.approx(1.0))
    with pytest.raises(ValueError, match="constant"):
        fit_scale_shift(torch.ones(4), x, shift=True)
    with pytest.raises(ValueError, match="zero"):
        fit_scale_shift(torch.zeros(2), x[:2], shift=False)


def test_align_depth_uses_only_masked_pixels():
    gt = torch.tensor([1.0, 2.0, 4.0, 50.0])
    mask = torch.tensor([True, True, True, False])
    pred = torch.tensor([0.0, 0.5, 1.5, -30.0])  # = (gt - 1) / 2 on the mask, garbage elsewhere
    aligned = align_depth(pred, gt, mask, mode="scale_shift")
    torch.testing.assert_close(aligned[:3], gt[:3])
    scaled = align_depth(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 5.0]), mode="scale")
    torch.testing.assert_close(scaled, torch.tensor([2.4, 4.8]))
    assert align_depth(pred, gt, mask, mode="none") is not None
    torch.testing.assert_close(align_depth(pred, gt, mode="none"), pred)


def test_align_in_disparity_space_fits_inverse_depth():
    gt = torch.tensor([1.0, 2.0, 4.0])
    disparity = 1 / gt
    torch.testing.assert_close(align_depth(2 * disparity, gt, mode="scale", space="disparity"), gt)
    torch.testing.assert_close(align_depth(2 * disparity + 1, gt, mode="scale_shift", space="disparity"), gt)
    torch.testing.assert_close(align_depth(disparity, gt, mode="none", space="disparity"), gt)
    with pytest.raises(ValueError, match="space"):
        align_depth(gt, gt, space="log")
    with pytest.raises(ValueError, match="mode"):
        align_depth(gt, gt, mode="affine")


def test_eigen_crop_is_rows_45_471_cols_41_601_on_480_by_640():
    mask = eigen_crop_mask()
    assert mask.shape == (480, 640)
    assert int(mask.sum()) == (471 - 45) * (601 - 41)
    assert mask[45, 41] and mask[470, 600]
    assert not mask[44, 41] and not mask[471, 600] and not mask[45, 40] and not mask[45, 601]


def test_nyu_valid_mask_is_strict_range_inside_crop():
    gt = torch.full((480, 640), 5.0)
    gt[100, 100] = 0.001  # not > 0.001
    gt[100, 101] = 10.0  # not < 10
    gt[100, 102] = 0.0011
    valid = nyu_valid_mask(gt)
    assert not valid[100, 100] and not valid[100, 101] and valid[100, 102]
    assert int(valid.sum()) == (471 - 45) * (601 - 41) - 2
    with pytest.raises(ValueError, match="480 x 640"):
        nyu_valid_mask(torch.ones(240, 320))


def test_nyu_protocol_ignores_pixels_outside_the_crop():
    gt = torch.full((480, 640), 5.0)
    gt[eigen_crop_mask()] = 2.0
    out = nyu_depth_metrics(torch.full((480, 640), 2.0), gt)
    assert out["abs_rel"] == 0.0 and out["delta1"] == 1.0


def test_nyu_protocol_resizes_the_prediction_bilinearly_to_the_gt_grid():
    # a step at half resolution: columns < 160 hold 1, the rest 3; bilinear (align_corners=False)
    # upsampling blends only output columns 319 (1.5) and 320 (2.5).
    pred = torch.ones(240, 320)
    pred[:, 160:] = 3.0
    gt = torch.ones(480, 640)
    gt[:, 320:] = 3.0
    resized = resize_to_grid(pred, (480, 640))
    assert resized[0, 319] == pytest.approx(1.5) and resized[0, 320] == pytest.approx(2.5)
    out = nyu_depth_metrics(pred, gt)
    rows, cols = 471 - 45, 601 - 41
    assert out["abs_rel"] == pytest.approx(rows * (0.5 + 0.5 / 3) / (rows * cols))
    with pytest.raises(ValueError, match="480 x 640"):
        nyu_depth_metrics(gt, resize_to_grid(gt, (240, 320)))  # never resize the ground truth


def test_nyu_protocol_clamps_to_10_m_and_aligns_relative_predictions():
    gt = torch.full((480, 640), 9.0)
    assert nyu_depth_metrics(torch.full((480, 640), 20.0), gt)["abs_rel"] == pytest.approx(1 / 9)
    gt = torch.linspace(0.5, 8.0, 480 * 640).reshape(480, 640)
    relative = 0.5 * gt - 0.2
    assert nyu_depth_metrics(relative, gt, mode="scale_shift")["abs_rel"] == pytest.approx(0.0, abs=1e-9)
    assert nyu_depth_metrics(relative, gt)["abs_rel"] > 0.4
