"""seg_ce_dice_loss against a float64 one-hot reference written here.

Tolerances (max abs error relative to the largest reference magnitude): fp32 1e-5; fp16 2e-3 and
bf16 1e-2 (math in fp32, the gradient returned in the input dtype) against a reference fed the same
rounded values.
"""

import pytest
import torch
import torch.nn.functional as F
from helpers import OP_BACKENDS

from cooper_lib.ops import seg_ce_dice_loss

BACKENDS = OP_BACKENDS


def one_hot_reference(logits, target, ignore_index, dice_weight):
    """Materialises softmax and one-hot; dice over classes present in the target, summed over the batch."""
    n_classes = logits.shape[1]
    valid = target != ignore_index
    ce = F.cross_entropy(logits, torch.where(valid, target, ignore_index), ignore_index=ignore_index)
    if not valid.any():
        ce = logits.sum() * 0
    probs = logits.softmax(dim=1) * valid.unsqueeze(1)
    one_hot = F.one_hot(torch.where(valid, target, 0), n_classes).movedim(-1, 1) * valid.unsqueeze(1)
    dims = [0, *range(2, logits.dim())]
    inter = (probs * one_hot).sum(dim=dims)
    gt = one_hot.sum(dim=dims)
    present = gt > 0
    if not present.any():
        return ce
    dice = 2 * inter[present] / (probs.sum(dim=dims)[present] + gt[present])
    return ce + dice_weight * (1 - dice.mean())


def _data(batch, n_classes, spatial, dtype=torch.float32, ignore_frac=0.3):
    logits = (torch.randn(batch, n_classes, *spatial) * 2).to(dtype).requires_grad_()
    target = torch.randint(0, n_classes, (batch, *spatial))
    target[torch.rand(target.shape) < ignore_frac] = 255
    return logits, target


def _compare(logits, target, backend, tol, dice_weight=1.0):
    out = seg_ce_dice_loss(logits, target, dice_weight=dice_weight, backend=backend)
    ref_logits = logits.detach().double().requires_grad_()
    ref = one_hot_reference(ref_logits, target, 255, dice_weight)
    assert abs(out.item() - ref.item()) <= tol * max(1.0, abs(ref.item()))
    (grad,) = torch.autograd.grad(out * 0.6, logits)
    (ref_grad,) = torch.autograd.grad(ref * 0.6, ref_logits)
    assert grad.dtype == logits.dtype and grad.shape == logits.shape
    err = (grad.double() - ref_grad).abs().max().item()
    assert err <= tol * max(ref_grad.abs().max().item(), 1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("batch", "n_classes", "spatial"),
    [(1, 1, (1, 1)), (2, 3, (5, 7)), (3, 6, (17, 9)), (2, 5, (40, 33)), (1, 150, (6, 5)), (2, 4, (3, 4, 5))],
)
def test_matches_one_hot_reference(backend, batch, n_classes, spatial):
    _compare(*_data(batch, n_classes, spatial), backend, 1e-5, dice_weight=0.7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
def test_half_logits(backend, dtype, tol):
    _compare(*_data(2, 5, (9, 11), dtype), backend, tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_valid_pixel_gives_zero(backend):
    logits, target = _data(2, 4, (5, 5))
    target.fill_(255)
    out = seg_ce_dice_loss(logits, target, backend=backend)
    assert out.item() == 0.0
    assert torch.all(torch.autograd.grad(out, logits)[0] == 0)


def test_dice_weight_zero_is_cross_entropy():
    logits, target = _data(2, 4, (6, 6))
    out = seg_ce_dice_loss(logits, target, dice_weight=0.0, backend="torch")
    torch.testing.assert_close(out, F.cross_entropy(logits, target, ignore_index=255))


def test_gradcheck_torch_backend():
    logits, target = _data(2, 3, (3, 4), torch.float64)
    assert torch.autograd.gradcheck(
        lambda z: seg_ce_dice_loss(z, target, dice_weight=0.5, backend="torch"), (logits,)
    )


def test_bad_inputs():
    logits, target = _data(2, 3, (4, 4))
    with pytest.raises(ValueError, match="target values"):
        seg_ce_dice_loss(logits, torch.full((2, 4, 4), 3))
    with pytest.raises(ValueError, match="target must have shape"):
        seg_ce_dice_loss(logits, target[:, :2])
    with pytest.raises(TypeError, match="target must be an integer"):
        seg_ce_dice_loss(logits, target.float())
    with pytest.raises(ValueError, match="dice_weight"):
        seg_ce_dice_loss(logits, target, dice_weight=-1.0)
