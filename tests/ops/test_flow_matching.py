"""flow_matching_loss against a float64 per-token loop.

Tolerances (max abs error relative to the largest reference magnitude): fp32 1e-5; fp16 2e-3 and
bf16 1e-2 (math in fp32, the gradient returned in the input dtype) against a reference fed the
same rounded values.
"""

import pytest
import torch
from helpers import OP_BACKENDS

from cooper_lib.ops import flow_matching_loss

BACKENDS = OP_BACKENDS


def loop_reference(pred, noise, clean, mask, weights):
    """COOPER's normalisation written as a loop over tokens."""
    dim = pred.shape[-1]
    pred, noise, clean = (t.reshape(-1, dim) for t in (pred, noise, clean))
    n_tokens = pred.shape[0]
    mask = torch.ones(n_tokens, dtype=torch.bool) if mask is None else mask.reshape(-1)
    weights = (
        torch.ones(n_tokens, dtype=pred.dtype) if weights is None else weights.reshape(-1).to(pred.dtype)
    )
    num, den = pred.sum() * 0, 0.0
    for i in range(n_tokens):
        if mask[i]:
            num = num + weights[i] * ((pred[i] - (noise[i] - clean[i])) ** 2).mean()
            den = den + weights[i]
    return num / den if den > 0 else num


def _data(shape, dtype=torch.float32, masked=True, weighted=True):
    pred, noise, clean = (torch.randn(shape).to(dtype).requires_grad_() for _ in range(3))
    mask = torch.rand(shape[:-1]) > 0.3 if masked else None
    weights = torch.rand(shape[:-1]) if weighted else None
    return pred, noise, clean, mask, weights


def _compare(pred, noise, clean, mask, weights, backend, tol):
    out = flow_matching_loss(pred, noise, clean, mask=mask, token_weights=weights, backend=backend)
    refs = [t.detach().double().requires_grad_() for t in (pred, noise, clean)]
    ref = loop_reference(*refs, mask, weights)
    assert abs(out.item() - ref.item()) <= tol * max(1.0, abs(ref.item()))
    grads = torch.autograd.grad(out * 1.3, (pred, noise, clean))
    ref_grads = torch.autograd.grad(ref * 1.3, refs)
    for g, rg, t in zip(grads, ref_grads, (pred, noise, clean), strict=True):
        assert g.dtype == t.dtype and g.shape == t.shape
        err = (g.double() - rg).abs().max().item()
        assert err <= tol * max(rg.abs().max().item(), 1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (2, 19, 64), (3, 5, 200)])
@pytest.mark.parametrize(("masked", "weighted"), [(False, False), (True, False), (True, True)])
def test_matches_loop(backend, shape, masked, weighted):
    _compare(*_data(shape, masked=masked, weighted=weighted), backend, 1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
def test_half_inputs(backend, dtype, tol):
    _compare(*_data((2, 9, 16), dtype), backend, tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_valid_token_gives_zero(backend):
    pred, noise, clean, mask, _ = _data((2, 4, 8))
    mask[:] = False
    out = flow_matching_loss(pred, noise, clean, mask=mask, backend=backend)
    assert out.item() == 0.0
    assert all(torch.all(g == 0) for g in torch.autograd.grad(out, (pred, noise, clean)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_pred_needs_grad(backend):
    pred = torch.randn(3, 4, 8, requires_grad=True)
    noise, clean = torch.randn(3, 4, 8), torch.randn(3, 4, 8)
    out = flow_matching_loss(pred, noise, clean, backend=backend)
    (grad,) = torch.autograd.grad(out, pred)
    torch.testing.assert_close(grad, 2 * (pred - noise + clean).detach() / pred.numel())


def test_triton_second_backward_recomputes():
    pred, noise, clean, mask, weights = _data((2, 6, 8))
    out = flow_matching_loss(pred, noise, clean, mask=mask, token_weights=weights, backend="triton")
    first = torch.autograd.grad(out, pred, retain_graph=True)[0]
    second = torch.autograd.grad(out * 3.0, pred)[0]
    torch.testing.assert_close(3.0 * first, second)


def test_gradcheck_torch_backend():
    pred, noise, clean, mask, weights = _data((2, 3, 4), torch.float64)
    assert torch.autograd.gradcheck(
        lambda p, n, c: flow_matching_loss(p, n, c, mask=mask, token_weights=weights, backend="torch"),
        (pred, noise, clean),
    )


def test_bad_inputs():
    pred, noise, clean, mask, weights = _data((2, 3, 4))
    with pytest.raises(ValueError, match="share one shape"):
        flow_matching_loss(pred, noise[:, :2], clean)
    with pytest.raises(TypeError, match="mask must be a bool"):
        flow_matching_loss(pred, noise, clean, mask=mask.float())
    with pytest.raises(ValueError, match="mask must have shape"):
        flow_matching_loss(pred, noise, clean, mask=mask[:, :2])
    with pytest.raises(ValueError, match="token_weights must not require grad"):
        flow_matching_loss(pred, noise, clean, token_weights=weights.requires_grad_())
