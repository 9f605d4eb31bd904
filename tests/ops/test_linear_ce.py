"""linear_cross_entropy against a float64 materialised reference, on both backends.

Tolerances (max abs error, relative to the largest reference magnitude, floor 1):
fp64 1e-10 (both backends: the kernel computes in fp64 for fp64 logits), fp32 1e-5, fp16 5e-3,
bf16 3e-2 (the logits themselves are rounded to bf16 by the matmul).
The reference always sees the same (already rounded) inputs upcast to fp64.

The tests run on CPU (Triton in its interpreter) unless ``COOPER_TEST_DEVICE=cuda`` is set, as
``benchmarks/gpu_check.sh`` does on a GPU machine (with ``TRITON_INTERPRET=0``: the real kernels).
"""

import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import OP_BACKENDS
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode

from cooper_lib.ops import linear_ce as linear_ce_module
from cooper_lib.ops import linear_cross_entropy, linear_cross_entropy_reference

DEVICE = torch.device(os.environ.get("COOPER_TEST_DEVICE", "cpu"))

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
    hidden = torch.randn(n, h, dtype=dtype, device=DEVICE).requires_grad_()
    weight = (torch.randn(v, h, device=DEVICE) / h**0.5).to(dtype).requires_grad_()
    labels = torch.randint(0, v, (n,), device=DEVICE)
    if ignore_every:
        labels[::ignore_every] = -100
    b = torch.randn(v, dtype=dtype, device=DEVICE).requires_grad_() if bias else None
    tw = torch.rand(n, device=DEVICE) if weights else None
    return hidden, weight, labels, b, tw


def _check(hidden, weight, labels, bias, tw, *, backend, tol, **kw):
    inputs = [t for t in (hidden, weight, bias) if t is not None]
    out = linear_cross_entropy(hidden, weight, labels, bias=bias, token_weights=tw, backend=backend, **kw)
    ref_inputs = [t.detach().double().requires_grad_() for t in inputs]
    ref_bias = ref_inputs[2] if bias is not None else None
    ref_tw = None if tw is None else tw.double()
    for key in ("chunk_size", "sweep", "block_size"):
        kw.pop(key, None)
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
    tol = TOL[dtype]
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
    base = torch.randn(6, 3, 10, device=DEVICE, requires_grad=True)
    hidden = base.transpose(0, 1)  # [3, 6, 10], not contiguous
    weight_base = torch.randn(10, 13, device=DEVICE, requires_grad=True)
    weight = weight_base.T  # [13, 10], not contiguous
    labels = torch.randint(0, 13, (3, 6), device=DEVICE)
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
    emb = torch.nn.Embedding(23, 8, device=DEVICE)
    ids = torch.randint(0, 23, (2, 5), device=DEVICE)
    labels = torch.randint(0, 23, (2, 5), device=DEVICE)
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
        ({"block_size": 0}, ValueError, "block_size"),
        ({"sweep": "columns"}, ValueError, "sweep"),
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
    with pytest.raises(ValueError, match="labels must be in"):  # on CUDA only an explicit check raises
        linear_cross_entropy(torch.randn(3, 2), torch.randn(5, 2), torch.tensor([0, 5, 1]), check_labels=True)
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


# --------------------------------------------------------------------------------------------------
# the peers' features, each against the float64 reference


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
@pytest.mark.parametrize("sweep", ["rows", "vocab"])
def test_class_weights_with_label_smoothing(backend, reduction, smoothing, sweep):
    hidden, weight, labels, bias, tw = _inputs(
        23, 6, 13, torch.float32, ignore_every=4, bias=True, weights=True
    )
    class_weights = torch.rand(13, device=DEVICE) + 0.1
    kw = {
        "reduction": reduction,
        "label_smoothing": smoothing,
        "class_weights": class_weights,
        "z_loss": 1e-2,
    }
    _check(hidden, weight, labels, bias, tw, backend=backend, tol=TOL[torch.float32], chunk_size=5,
           sweep=sweep, block_size=4, **kw)  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_weights_match_torch_cross_entropy(backend):
    hidden, weight, labels, _, _ = _inputs(31, 8, 17, torch.float64, ignore_every=3)
    class_weights = torch.rand(17, device=DEVICE, dtype=torch.float64) + 0.1
    ours = linear_cross_entropy(
        hidden,
        weight,
        labels,
        class_weights=class_weights,
        label_smoothing=0.2,
        chunk_size=8,
        backend=backend,
    )
    theirs = F.cross_entropy(hidden @ weight.T, labels, weight=class_weights, label_smoothing=0.2)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    grads = torch.autograd.grad(ours, (hidden, weight))
    their_grads = torch.autograd.grad(theirs, (hidden, weight))
    for a, b in zip(grads, their_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("shift", [1, 3])
def test_shift_matches_sliced_reference_without_copying_hidden(backend, reduction, shift, monkeypatch):
    hidden = torch.randn(3, 9, 8, device=DEVICE, dtype=torch.float64).requires_grad_()
    weight = torch.randn(11, 8, device=DEVICE, dtype=torch.float64).requires_grad_()
    labels = torch.randint(0, 11, (3, 9), device=DEVICE)
    labels[1, 4] = -100
    seen = []
    original = linear_ce_module.LinearCrossEntropyFunction.apply
    monkeypatch.setattr(
        linear_ce_module.LinearCrossEntropyFunction,
        "apply",
        lambda h, *rest: seen.append(h.data_ptr()) or original(h, *rest),
    )
    _check(hidden, weight, labels, None, None, backend=backend, tol=TOL[torch.float64], chunk_size=4,
           reduction=reduction, shift=shift)  # fmt: skip
    assert seen == [hidden.data_ptr()]  # the op read the caller's hidden states, not a sliced copy


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("sweep", ["rows", "vocab"])
def test_returned_z_loss_lse_and_accuracy(backend, reduction, sweep):
    hidden, weight, labels, bias, tw = _inputs(
        29, 8, 19, torch.float64, ignore_every=3, bias=True, weights=True
    )
    hidden = (hidden * 3).detach().requires_grad_()  # confident rows: some argmaxes hit their label
    labels[1::3] = (hidden @ weight.T + bias).argmax(dim=-1)[1::3]
    kw = {"reduction": reduction, "z_loss": 1e-2, "softcap": 4.0, "label_smoothing": 0.1}
    flags = {"return_z_loss": True, "return_lse": True, "return_accuracy": True}
    kw.update(sweep=sweep, block_size=5)  # the vocab sweep: four blocks, the last one short
    out = linear_cross_entropy(hidden, weight, labels, bias=bias, token_weights=tw, chunk_size=7, backend=backend,
                               **kw, **flags)  # fmt: skip
    ref = linear_cross_entropy_reference(
        hidden.detach().double(), weight.detach().double(), labels, bias=bias.detach().double(),
        token_weights=tw.double(), **{k: kw[k] for k in ("reduction", "z_loss", "softcap", "label_smoothing")},
        **flags,
    )  # fmt: skip
    for name in ("loss", "z_loss", "lse", "accuracy"):
        got, want = getattr(out, name), getattr(ref, name)
        assert got.shape == want.shape, name
        _close(got, want, TOL[torch.float64])
    assert 0.0 < ref.accuracy.mean().item() < 1.0  # the accuracy check is not vacuous
    assert out.z_loss.grad_fn is None and out.lse.grad_fn is None and out.accuracy.grad_fn is None
    upstream = torch.randn_like(out.loss)
    grads = torch.autograd.grad(out.loss, (hidden, weight), upstream)
    plain = linear_cross_entropy(
        hidden, weight, labels, bias=bias, token_weights=tw, chunk_size=7, backend=backend, **kw
    )
    for g, pg in zip(grads, torch.autograd.grad(plain, (hidden, weight), upstream), strict=True):
        torch.testing.assert_close(g, pg)


# --------------------------------------------------------------------------------------------------
# memory, gradient-free calls, autocast, the CUDA gates


class _LogitBuffers(TorchDispatchMode):
    """Records how many distinct ``[rows, V]`` tensors (by storage) are alive whenever a new one appears."""

    def __init__(self, n_vocab: int, *inputs: torch.Tensor) -> None:
        super().__init__()
        self.n_vocab, self.refs, self.max_alive = n_vocab, [], 0
        self.keys = {StorageWeakRef(t.untyped_storage()).cdata for t in inputs}  # views of inputs don't count
        self.inputs = len(self.keys)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.dim() == 2 and t.shape[-1] == self.n_vocab:
                ref = StorageWeakRef(t.untyped_storage())
                if ref.cdata not in self.keys:
                    self.keys.add(ref.cdata)
                    self.refs.append(ref)
                    self.max_alive = max(self.max_alive, sum(not r.expired() for r in self.refs))
        return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_one_logit_chunk_alive(backend, reduction):
    hidden, weight, labels, bias, _ = _inputs(50, 8, 97, torch.float32, ignore_every=5, bias=True)
    kw = {"bias": bias, "reduction": reduction, "chunk_size": 8, "backend": backend}
    linear_cross_entropy(hidden, weight, labels, **kw).sum().backward()  # on a GPU: autotuning, which copies
    with _LogitBuffers(97, weight) as tracker:
        linear_cross_entropy(hidden, weight, labels, **kw).sum().backward()
    passes = 1 if reduction == "mean" else 2  # "none" recomputes the chunks in backward
    assert len(tracker.keys) - tracker.inputs == passes  # one [8, V] buffer per pass, reused by all 7 chunks
    # Triton's interpreter keeps the storage of its last launch's arguments, so on CPU the forward's
    # buffer outlives the forward there; with the real kernels and on the torch path it does not.
    interpreted = backend == "triton" and DEVICE.type == "cpu"
    assert tracker.max_alive == (passes if interpreted else 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "no_requires_grad"])
def test_no_gradient_work_when_gradients_are_off(backend, reduction, mode, monkeypatch):
    hidden, weight, labels, bias, _ = _inputs(20, 6, 11, torch.float32, ignore_every=3, bias=True)
    weight = torch.nn.Parameter(weight.detach())
    if mode == "no_requires_grad":
        hidden, weight, bias = hidden.detach(), weight.detach(), bias.detach()
    passes = []
    real_pass = linear_ce_module._chunked_pass
    monkeypatch.setattr(linear_ce_module, "_chunked_pass", lambda *a: passes.append(a[5:7]) or real_pass(*a))
    monkeypatch.setattr(linear_ce_module, "_accumulate_weight_grad", _fail)
    monkeypatch.setattr(linear_ce_module.LinearCrossEntropyFunction, "apply", _fail)
    context = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}.get(mode, torch.enable_grad)
    with context():
        out = linear_cross_entropy(
            hidden, weight, labels, bias=bias, reduction=reduction, chunk_size=8, backend=backend
        )
    assert out.grad_fn is None
    assert len(passes) == 1 and passes[0][0] is None and passes[0][1] == (False, False, False)
    ref = linear_cross_entropy_reference(
        hidden.detach(), weight.detach(), labels, bias=bias.detach(), reduction=reduction
    )
    _close(out, ref.double(), TOL[torch.float32])


def _fail(*args, **kwargs):
    raise AssertionError("gradient work done while gradients are off")


@pytest.mark.parametrize("backend", BACKENDS)
def test_autocast_runs_every_matmul_in_the_autocast_dtype(backend, monkeypatch):
    hidden, weight, labels, _, _ = _inputs(24, 16, 37, torch.float32, ignore_every=5)
    dtypes = []
    real_acc = linear_ce_module._accumulate_weight_grad
    monkeypatch.setattr(
        linear_ce_module,
        "_accumulate_weight_grad",
        lambda acc, g, h: dtypes.append(h.dtype) or real_acc(acc, g, h),
    )
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        out = linear_cross_entropy(hidden, weight, labels, chunk_size=8, backend=backend)
        grads = torch.autograd.grad(out, (hidden, weight))
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert [g.dtype for g in grads] == [torch.float32, torch.float32]
    # Against the fp64 reference on the bf16-rounded inputs: what the autocast matmuls saw.
    ref_inputs = [t.detach().bfloat16().double().requires_grad_() for t in (hidden, weight)]
    ref = linear_cross_entropy_reference(*ref_inputs, labels)
    _close(out, ref, TOL[torch.bfloat16])
    for g, rg in zip(grads, torch.autograd.grad(ref, ref_inputs), strict=True):
        _grad_close(g, rg, TOL[torch.bfloat16])


@pytest.mark.parametrize("out_dtype_available", [True, False])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_weight_grad_accumulation_with_and_without_addmm_out_dtype(out_dtype_available, dtype, monkeypatch):
    monkeypatch.setattr(linear_ce_module, "_HAS_ADDMM_OUT_DTYPE", out_dtype_available)
    grad_logits = torch.randn(9, 13, device=DEVICE).to(dtype)
    h_chunk = torch.randn(9, 5, device=DEVICE).to(dtype)
    acc = torch.randn(13, 5, device=DEVICE)
    expected = acc.double() + grad_logits.double().T @ h_chunk.double()
    linear_ce_module._accumulate_weight_grad(acc, grad_logits, h_chunk)
    assert acc.dtype == torch.float32
    _close(acc, expected, 1e-5)


# --------------------------------------------------------------------------------------------------
# the vocabulary sweep: each block's weight gradient one matmul, written in the weight's dtype


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    ("dtype", "block"),
    [(torch.float32, 1), (torch.float32, 8), (torch.float64, 5), (torch.bfloat16, 16), (torch.float16, 7)],
)
def test_vocab_sweep_matches_reference(backend, reduction, dtype, block):
    hidden, weight, labels, bias, tw = _inputs(23, 12, 41, dtype, ignore_every=4, bias=True, weights=True)
    options = {"label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 6.0}
    _check(hidden, weight, labels, bias, tw, backend=backend, tol=TOL[dtype], reduction=reduction,
           sweep="vocab", block_size=block, **options)  # fmt: skip


@pytest.mark.parametrize(("label", "hit"), [(1, 1.0), (6, 0.0)])
def test_vocab_sweep_counts_the_first_maximum_across_blocks(label, hit):
    weight = torch.randn(8, 4, dtype=torch.float64, device=DEVICE)
    weight[1] = weight[6] = torch.tensor([3.0, 0.0, 0.0, 0.0])  # the same logit in blocks 0 and 1
    weight.requires_grad_()  # gradients made with the loss: the vocab sweep gives the accuracy
    hidden = weight[1:2].detach().repeat(2, 1) * 10
    labels = torch.full((2,), label, device=DEVICE)
    out = linear_cross_entropy(hidden, weight, labels, sweep="vocab", block_size=4, return_accuracy=True)
    ref = linear_cross_entropy_reference(hidden, weight.detach(), labels, return_accuracy=True)
    assert out.accuracy.item() == ref.accuracy.item() == hit


class _Outputs(TorchDispatchMode):
    """Records the shape and dtype of every tensor an op makes."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[tuple[tuple[int, ...], torch.dtype]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.made.append((tuple(t.shape), t.dtype))
        return out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_vocab_sweep_makes_no_fp32_weight_gradient_and_no_vocabulary_wide_logits(dtype, reduction):
    n, h, v, block = 40, 16, 300, 64
    hidden, weight, labels, _, _ = _inputs(n, h, v, dtype, ignore_every=3)
    made = {}
    for sweep in ("rows", "vocab"):
        with _Outputs() as record:
            linear_cross_entropy(
                hidden, weight, labels, reduction=reduction, sweep=sweep, chunk_size=8, block_size=block
            ).sum().backward()
        made[sweep] = record.made
    rows_wide = {d for shape, d in made["rows"] if shape == (v, h)}
    assert torch.float32 in rows_wide  # the control: the rows sweep accumulates in fp32
    assert {d for shape, d in made["vocab"] if shape == (v, h)} == {dtype}
    assert not [shape for shape, _ in made["vocab"] if len(shape) == 2 and shape[-1] == v]
    assert (
        max(math.prod(shape) for shape, _ in made["vocab"] if len(shape) == 2 and shape != (v, h))
        == n * block
    )


@pytest.mark.parametrize(
    ("n_rows", "n_vocab", "columns"),
    [
        (8192, 151936, 2048),
        (32768, 151936, 512),
        (1 << 20, 151936, 128),
        (100, 151936, 131072),
        (100, 300, 512),
    ],
)
def test_default_block_size(n_rows, n_vocab, columns):
    # at most 2**24 logits a block, at least 128 columns, no wider than the vocabulary's power of two
    assert linear_ce_module.default_block_size(n_rows, n_vocab) == columns


@pytest.mark.parametrize(
    ("dtype", "weight_grad", "expected"),
    [
        (torch.bfloat16, True, "_vocab_pass"),
        (torch.float16, True, "_vocab_pass"),
        (torch.float32, True, "_chunked_pass"),
        (torch.bfloat16, False, "_chunked_pass"),  # a frozen head (LoRA): no weight gradient to hold
    ],
)
def test_auto_sweep(dtype, weight_grad, expected, monkeypatch):
    used = []
    for name in ("_vocab_pass", "_chunked_pass"):
        real = getattr(linear_ce_module, name)
        monkeypatch.setattr(
            linear_ce_module, name, lambda *a, _real=real, _name=name: used.append(_name) or _real(*a)
        )
    hidden, weight, labels, _, _ = _inputs(12, 8, 21, dtype)
    weight.requires_grad_(weight_grad)
    linear_cross_entropy(hidden, weight, labels).backward()
    assert used == [expected]


def test_label_check_modes():
    hidden, weight = torch.randn(3, 2, device=DEVICE), torch.randn(5, 2, device=DEVICE)
    bad = torch.tensor([0, 5, 1], device=DEVICE)
    with pytest.raises(ValueError, match="labels must be in"):
        linear_cross_entropy(hidden, weight, bad, check_labels=True, backend="torch")
    if DEVICE.type == "cpu":
        with pytest.raises(ValueError, match="labels must be in"):
            linear_cross_entropy(hidden, weight, bad, backend="torch")
    linear_cross_entropy(hidden, weight, bad, check_labels=False, backend="torch")  # no check, no error


@pytest.mark.skipif(DEVICE.type != "cuda", reason="host syncs exist only on CUDA")
@pytest.mark.parametrize("backend", BACKENDS)
def test_no_host_sync_on_the_hot_path(backend):
    hidden, weight, labels, _, _ = _inputs(64, 32, 1000, torch.bfloat16, ignore_every=5)
    linear_cross_entropy(
        hidden, weight, labels, chunk_size=16, backend=backend
    ).backward()  # warm-up (autotune)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = linear_cross_entropy(hidden, weight, labels, chunk_size=16, backend=backend)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()


@pytest.mark.skipif(not linear_ce_module.HAS_TRITON, reason="triton is not installed")
def test_autotune_configs_are_clamped_to_the_row(monkeypatch):
    configs = linear_ce_module._ROW_CONFIGS
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    wide = linear_ce_module._prune_configs(configs, {"n_cols": 151936})
    assert [(c.kwargs["BLOCK_V"], c.num_warps) for c in wide] == [
        (c.kwargs["BLOCK_V"], c.num_warps) for c in configs
    ]
    narrow = linear_ce_module._prune_configs(configs, {"n_cols": 300})
    assert [c.kwargs["BLOCK_V"] for c in narrow] == [512]  # a short row: one config, no tuning
    mid = linear_ce_module._prune_configs(configs, {"n_cols": 3000})
    assert [(c.kwargs["BLOCK_V"], c.num_warps) for c in mid] == [(1024, 4), (2048, 8), (4096, 16)]
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert len(linear_ce_module._prune_configs(configs, {"n_cols": 300})) == 1


_COMPILE_CHECK = """
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from cooper_lib.ops import linear_ce

for dtype, acc, flag in (("bf16", "fp32", True), ("fp32", "fp32", False), ("fp64", "fp64", True)):
    pointers = dict.fromkeys(("class_w_ptr", "scale_ptr", "loss_ptr", "lse_ptr"), "*" + acc)
    signature = {"logits_ptr": "*" + dtype, "stride_row": "i64", "labels_ptr": "*i64", **pointers,
                 "hit_ptr": "*i1", "n_cols": "i32", "ignore_index": "i32"}
    constants = {"SMOOTHING": 0.1, "Z_LOSS": 1e-4, "CAP": 30.0, "HAS_SOFTCAP": flag, "HAS_CLASS_WEIGHTS": flag,
                 "COMPUTE_GRAD": flag, "ACC": tl.float64 if acc == "fp64" else tl.float32, "BLOCK_V": 4096}
    signature.update(dict.fromkeys(constants, "constexpr"))
    source = ASTSource(fn=linear_ce._ce_rows_kernel.fn, signature=signature, constexprs=constants)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 16})
    assert compiled.asm["cubin"], dtype
"""


@pytest.mark.slow
@pytest.mark.skipif(not linear_ce_module.HAS_TRITON, reason="triton is not installed")
def test_kernel_compiles_for_hopper():
    """Compiles the row kernel (bf16, fp32 and fp64 logits; all options on and off) to a cubin for
    sm_90, no GPU needed, in a fresh process without the interpreter: the interpreter is laxer than
    the compiler about types, so this catches a kernel that only ever ran interpreted."""
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    proc = subprocess.run([sys.executable, "-c", _COMPILE_CHECK], env=env, capture_output=True, text=True)
    if "ModuleNotFoundError: No module named 'triton.backends" in proc.stderr:
        pytest.skip("this triton has no offline compiler API")
    assert proc.returncode == 0, proc.stderr[-2000:]
