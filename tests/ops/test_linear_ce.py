"""linear_cross_entropy against a float64 materialised reference, on both backends.

Tolerances (max abs error, relative to the largest reference magnitude, floor 1):
fp64 1e-10 (torch backend; the Triton kernel computes in fp32 whatever the input, so 1e-5 there),
fp32 1e-5, fp16 5e-3, bf16 3e-2 (the logits themselves are rounded to bf16 by the matmul).
The reference always sees the same (already rounded) inputs upcast to fp64.
"""

import pytest
import torch
import torch.nn.functional as F
from helpers import OP_BACKENDS

from cooper_lib.ops import linear_ce as linear_ce_module
from cooper_lib.ops import linear_cross_entropy, linear_cross_entropy_reference

TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}
BACKENDS = OP_BACKENDS


def _close(actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    err = (actual.double() - expected).abs().max().item() if expected.numel() else 0.0
    assert err <= tol * scale, f"max abs error {err:.3e} > {tol:.1e} * {scale:.3g}"


def _grad_close(actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    # Gradients are ~1/N: compare relative to their own largest magnitude.
    scale = expected.abs().max().item()
    err = (actual.double() - expected).abs().max().item()
    assert err <= tol * max(scale, 1e-12), f"max abs error {err:.3e} > {tol:.1e} * {scale:.3g}"


def _inputs(n, h, v, dtype, ignore_every=0, bias=False, weights=False):
    hidden = torch.randn(n, h, dtype=dtype).requires_grad_()
    weight = (torch.randn(v, h) / h**0.5).to(dtype).requires_grad_()
    labels = torch.randint(0, v, (n,))
    if ignore_every:
        labels[::ignore_every] = -100
    b = torch.randn(v, dtype=dtype).requires_grad_() if bias else None
    tw = torch.rand(n) if weights else None
    return hidden, weight, labels, b, tw


def _check(hidden, weight, labels, bias, tw, *, backend, tol, **kw):
    inputs = [t for t in (hidden, weight, bias) if t is not None]
    out = linear_cross_entropy(hidden, weight, labels, bias=bias, token_weights=tw, backend=backend, **kw)
    ref_inputs = [t.detach().double().requires_grad_() for t in inputs]
    ref_bias = ref_inputs[2] if bias is not None else None
    ref_tw = None if tw is None else tw.double()
    kw.pop("chunk_size", None)
    ref = linear_cross_entropy_reference(
        ref_inputs[0], ref_inputs[1], labels, bias=ref_bias, token_weights=ref_tw, **kw
    )
    assert out.shape == ref.shape
    _close(out, ref, tol)
    upstream = torch.randn_like(ref)
    grads = torch.autograd.grad(out, inputs, upstream.to(out.dtype))
    ref_grads = torch.autograd.grad(ref, ref_inputs, upstream)
    for g, rg, t in zip(grads, ref_grads, inputs, strict=True):
        assert g.dtype == t.dtype and g.shape == t.shape
        _grad_close(g, rg, tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("n", "h", "v", "chunk"),
    [(1, 4, 1, None), (7, 5, 3, 2), (37, 16, 29, 8), (50, 8, 300, 16)],
)
def test_matches_reference_fp32(backend, n, h, v, chunk, monkeypatch):
    monkeypatch.setattr(linear_ce_module, "_MAX_BLOCK_V", 64)  # several vocabulary blocks per row
    hidden, weight, labels, _, _ = _inputs(n, h, v, torch.float32, ignore_every=3)
    _check(hidden, weight, labels, None, None, backend=backend, tol=TOL[torch.float32], chunk_size=chunk)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "options",
    [
        {"label_smoothing": 0.1},
        {"z_loss": 1e-2},
        {"softcap": 2.0},
        {"label_smoothing": 0.2, "z_loss": 1e-3, "softcap": 5.0},
    ],
)
def test_options_and_reductions(backend, reduction, options):
    hidden, weight, labels, bias, tw = _inputs(
        19, 6, 11, torch.float32, ignore_every=4, bias=True, weights=True
    )
    _check(
        hidden,
        weight,
        labels,
        bias,
        tw,
        backend=backend,
        tol=TOL[torch.float32],
        reduction=reduction,
        chunk_size=4,
        **options,
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes(backend, dtype):
    tol = 1e-5 if (backend == "triton" and dtype == torch.float64) else TOL[dtype]
    hidden, weight, labels, bias, _ = _inputs(21, 16, 37, dtype, ignore_every=5, bias=True)
    _check(hidden, weight, labels, bias, None, backend=backend, tol=tol, chunk_size=8, label_smoothing=0.1)


def test_matches_torch_cross_entropy():
    hidden, weight, labels, _, _ = _inputs(33, 12, 17, torch.float32, ignore_every=3)
    ours = linear_cross_entropy(hidden, weight, labels, label_smoothing=0.1, chunk_size=5, backend="torch")
    theirs = F.cross_entropy(hidden @ weight.T, labels, label_smoothing=0.1)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_ignored_gives_zero_loss_and_zero_grads(backend, reduction):
    hidden, weight, labels, bias, _ = _inputs(9, 4, 6, torch.float32, bias=True)
    labels.fill_(-100)
    out = linear_cross_entropy(
        hidden, weight, labels, bias=bias, reduction=reduction, chunk_size=4, backend=backend
    )
    assert torch.all(out == 0)
    out.sum().backward()
    for t in (hidden, weight, bias):
        assert torch.all(t.grad == 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_batched_input(backend):
    base = torch.randn(6, 3, 10, requires_grad=True)
    hidden = base.transpose(0, 1)  # [3, 6, 10], not contiguous
    weight_base = torch.randn(10, 13, requires_grad=True)
    weight = weight_base.T  # [13, 10], not contiguous
    labels = torch.randint(0, 13, (3, 6))
    labels[0, :2] = -100
    out = linear_cross_entropy(hidden, weight, labels, reduction="none", chunk_size=4, backend=backend)
    ref = linear_cross_entropy_reference(hidden, weight, labels, reduction="none")
    assert out.shape == (3, 6)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(out.sum(), (base, weight_base))
    ref_grads = torch.autograd.grad(ref.sum(), (base, weight_base))
    for g, rg in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, rg, rtol=1e-5, atol=1e-5)


def test_tied_embedding_accumulates_both_uses():
    emb = torch.nn.Embedding(23, 8)
    ids = torch.randint(0, 23, (2, 5))
    labels = torch.randint(0, 23, (2, 5))
    hidden = torch.tanh(emb(ids))
    linear_cross_entropy(hidden, emb.weight, labels, chunk_size=3, backend="torch").backward()
    ours = emb.weight.grad.clone()
    emb.weight.grad = None
    hidden = torch.tanh(emb(ids))
    F.cross_entropy((hidden @ emb.weight.T).reshape(-1, 23), labels.reshape(-1)).backward()
    torch.testing.assert_close(ours, emb.weight.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_torch_backend(reduction):
    hidden, weight, labels, bias, tw = _inputs(
        6, 3, 5, torch.float64, ignore_every=4, bias=True, weights=True
    )
    tw = tw.double()

    def fn(h, w, b):
        out = linear_cross_entropy(
            h,
            w,
            labels,
            bias=b,
            token_weights=tw,
            reduction=reduction,
            label_smoothing=0.1,
            z_loss=0.01,
            softcap=3.0,
            chunk_size=4,
            backend="torch",
        )
        return out

    assert torch.autograd.gradcheck(fn, (hidden, weight, bias))


def test_second_backward_recomputes_same_grads():
    hidden, weight, labels, _, _ = _inputs(10, 4, 7, torch.float64, ignore_every=3)
    out = linear_cross_entropy(hidden, weight, labels, chunk_size=3, backend="torch")
    first = torch.autograd.grad(out, (hidden, weight), retain_graph=True)
    second = torch.autograd.grad(out * 2.0, (hidden, weight))
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(2.0 * a, b)


def test_no_grad_forward_matches():
    hidden, weight, labels, _, _ = _inputs(10, 4, 7, torch.float32)
    with torch.no_grad():
        out = linear_cross_entropy(hidden, weight, labels, backend="torch")
    torch.testing.assert_close(out, linear_cross_entropy_reference(hidden, weight, labels).detach())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"reduction": "avg"}, ValueError, "reduction"),
        ({"label_smoothing": 1.0}, ValueError, "label_smoothing"),
        ({"z_loss": -1.0}, ValueError, "z_loss"),
        ({"softcap": 0.0}, ValueError, "softcap"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"backend": "cuda"}, ValueError, "backend"),
        ({"token_weights": torch.ones(3, requires_grad=True)}, ValueError, "token_weights"),
        ({"token_weights": torch.ones(4)}, ValueError, "token_weights"),
        ({"bias": torch.zeros(4)}, ValueError, "bias"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        linear_cross_entropy(torch.randn(3, 2), torch.randn(5, 2), torch.tensor([0, 1, 2]), **kwargs)


def test_bad_tensors():
    with pytest.raises(ValueError, match="labels must be in"):
        linear_cross_entropy(torch.randn(3, 2), torch.randn(5, 2), torch.tensor([0, 5, 1]))
    with pytest.raises(ValueError, match="labels must have shape"):
        linear_cross_entropy(torch.randn(3, 2), torch.randn(5, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="weight must be"):
        linear_cross_entropy(torch.randn(3, 2), torch.randn(5, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="weight dtype"):
        linear_cross_entropy(torch.randn(3, 2), torch.randn(5, 2).double(), torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="labels must be"):
        linear_cross_entropy(torch.randn(3, 2), torch.randn(5, 2), torch.tensor([0.0, 1.0, 2.0]))


def test_liger_anchor():
    liger = pytest.importorskip("liger_kernel.transformers", reason="liger-kernel is not installed")
    hidden, weight, labels, _, _ = _inputs(37, 16, 29, torch.float32, ignore_every=4)
    theirs = liger.LigerFusedLinearCrossEntropyLoss(label_smoothing=0.1)(weight, hidden, labels)
    their_grads = torch.autograd.grad(theirs, (hidden, weight))
    ours = linear_cross_entropy(hidden, weight, labels, label_smoothing=0.1, chunk_size=8, backend="triton")
    our_grads = torch.autograd.grad(ours, (hidden, weight))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    for a, b in zip(our_grads, their_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_cut_cross_entropy_anchor():
    cce = pytest.importorskip("cut_cross_entropy", reason="cut-cross-entropy is not installed")
    hidden, weight, labels, _, _ = _inputs(37, 16, 29, torch.float32, ignore_every=4)
    theirs = cce.linear_cross_entropy(hidden, weight, labels, impl="torch_compile")
    their_grads = torch.autograd.grad(theirs, (hidden, weight))
    ours = linear_cross_entropy(hidden, weight, labels, chunk_size=8, backend="torch")
    our_grads = torch.autograd.grad(ours, (hidden, weight))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    for a, b in zip(our_grads, their_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
