"""silog_loss and ssi_depth_loss against float64 references written independently here.

Tolerances (max abs error relative to the largest reference magnitude, floor 1e-12):
fp32 (both backends) 1e-4; fp16 2e-3 and bf16 1e-2 (math in fp32, but the gradient is returned in
the input dtype, so it carries that dtype's rounding) against a reference fed the same rounded values.
"""

import math

import pytest
import torch
from helpers import OP_BACKENDS

from cooper_lib.ops import silog_loss, ssi_depth_loss

BACKENDS = OP_BACKENDS
SHAPES = [(1, 1, 1), (3, 7, 9), (2, 1, 33, 40), (2, 31, 37)]


def silog_loop(pred, target, mask, lambd):
    """Per-image loop, straight from the formula."""
    losses = []
    for p, t, m in zip(*(x.reshape(len(pred), -1) for x in (pred, target, mask)), strict=True):
        if not m.any():
            continue
        d = torch.log(p[m].clamp_min(1e-6)) - torch.log(t[m].clamp_min(1e-6))
        inner = (d.square().mean() - lambd * d.mean().square()).clamp_min(0)
        losses.append(torch.sqrt(inner + 1e-8))
    return torch.stack(losses).mean() if losses else pred.sum() * 0


def ssi_loop(pred, target, mask):
    """Per-image loop using torch.linalg.lstsq for the scale and shift."""
    losses = []
    for p, t, m in zip(*(x.reshape(len(pred), -1) for x in (pred, target, mask)), strict=True):
        if not m.any():
            continue
        pv, tv = p[m], t[m]
        if pv.var(unbiased=False) <= 1e-6 * pv.square().mean():
            fitted = tv.mean().expand_as(tv)
        else:
            design = torch.stack([pv, torch.ones_like(pv)], dim=1)
            coef = torch.linalg.lstsq(design, tv.unsqueeze(1)).solution.squeeze(1)
            fitted = design @ coef
        losses.append((fitted - tv).abs().mean())
    return torch.stack(losses).mean() if losses else pred.sum() * 0


def _data(shape, dtype=torch.float32, empty_image=True):
    pred = (torch.rand(shape) * 4 + 0.2).to(dtype).requires_grad_()
    target = (torch.rand(shape) * 4 + 0.2).to(dtype)
    mask = torch.rand(shape) > 0.3
    if empty_image and shape[0] > 1:
        mask[1] = False
    return pred, target, mask


def _compare(fn, ref_fn, pred, target, mask, backend, tol, **kw):
    out = fn(pred, target, mask, backend=backend, **kw)
    ref_pred = pred.detach().double().requires_grad_()
    ref = ref_fn(ref_pred, target.double(), mask, *kw.values())
    assert torch.isfinite(out)
    assert abs(out.item() - ref.item()) <= tol * max(1.0, abs(ref.item()))
    (grad,) = torch.autograd.grad(out * 1.7, pred)
    (ref_grad,) = torch.autograd.grad(ref * 1.7, ref_pred)
    assert grad.dtype == pred.dtype and grad.shape == pred.shape
    err = (grad.double() - ref_grad).abs().max().item()
    assert err <= tol * max(ref_grad.abs().max().item(), 1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("lambd", [0.0, 0.85, 1.0])
def test_silog_matches_loop(backend, shape, lambd):
    _compare(silog_loss, silog_loop, *_data(shape), backend, 1e-4, lambd=lambd)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_ssi_matches_lstsq(backend, shape):
    _compare(ssi_depth_loss, ssi_loop, *_data(shape), backend, 1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
def test_half_inputs(backend, dtype, tol):
    pred, target, mask = _data((2, 9, 11), dtype)
    _compare(silog_loss, silog_loop, pred, target, mask, backend, tol, lambd=0.85)
    _compare(ssi_depth_loss, ssi_loop, pred, target, mask, backend, tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", [silog_loss, ssi_depth_loss])
def test_no_valid_pixel_gives_zero(backend, fn):
    pred, target, mask = _data((3, 5, 6))
    mask[:] = False
    out = fn(pred, target, mask, backend=backend)
    assert out.item() == 0.0
    (grad,) = torch.autograd.grad(out, pred)
    assert torch.all(grad == 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ssi_is_invariant_to_scale_and_shift(backend):
    pred, target, mask = _data((2, 8, 8), empty_image=False)
    base = ssi_depth_loss(pred, target, mask, backend=backend)
    moved = ssi_depth_loss(pred * 3.0 + 5.0, target, mask, backend=backend)
    assert math.isclose(base.item(), moved.item(), rel_tol=1e-4)
    exact = ssi_depth_loss(target * 0.5 - 1.0, target, mask, backend=backend)
    assert exact.item() < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_degenerate_prediction_has_zero_grad(backend):
    target = torch.rand(2, 4, 4) + 1
    pred = torch.full((2, 4, 4), 2.0, requires_grad=True)
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    out = ssi_depth_loss(pred, target, mask, backend=backend)
    expected = (target - target.mean(dim=(1, 2), keepdim=True)).abs().mean()
    assert math.isclose(out.item(), expected.item(), rel_tol=1e-5)
    assert torch.all(torch.autograd.grad(out, pred)[0] == 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_silog_perfect_prediction_is_finite(backend):
    target = torch.rand(2, 5, 5) + 0.5
    pred = target.clone().requires_grad_()
    mask = torch.ones(2, 5, 5, dtype=torch.bool)
    out = silog_loss(pred, target, mask, lambd=1.0, backend=backend)
    assert out.item() == pytest.approx(1e-4, rel=1e-2)
    assert torch.isfinite(torch.autograd.grad(out, pred)[0]).all()


def test_silog_scale_invariant_when_lambda_is_one():
    pred, target, mask = _data((2, 6, 6), empty_image=False)
    a = silog_loss(pred, target, mask, lambd=1.0, backend="torch")
    b = silog_loss(pred * 7.0, target, mask, lambd=1.0, backend="torch")
    assert math.isclose(a.item(), b.item(), rel_tol=1e-4)


def test_gradcheck_torch_backend():
    pred, target, mask = _data((3, 4, 5), torch.float64)
    target = target.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda p, t: silog_loss(p, t, mask, 0.85, backend="torch"), (pred, target)
    )
    assert torch.autograd.gradcheck(lambda p, t: ssi_depth_loss(p, t, mask, backend="torch"), (pred, target))


def test_bad_inputs():
    pred, target, mask = _data((2, 4, 4))
    with pytest.raises(TypeError, match="mask"):
        silog_loss(pred, target, mask.float())
    with pytest.raises(ValueError, match="target and mask"):
        silog_loss(pred, target[:, :3], mask)
    with pytest.raises(ValueError, match="pred must be"):
        ssi_depth_loss(pred[0], target[0], mask[0])
    with pytest.raises(ValueError, match="pred must be"):
        ssi_depth_loss(pred.reshape(2, 2, 2, 4), target.reshape(2, 2, 2, 4), mask.reshape(2, 2, 2, 4))
    with pytest.raises(ValueError, match="lambd"):
        silog_loss(pred, target, mask, lambd=1.5)
    with pytest.raises(ValueError, match="target must not require grad"):
        silog_loss(pred, target.requires_grad_(), mask, backend="triton")
