"""Linear layer + cross-entropy without keeping the ``[N, V]`` logits.

The language-model loss over a 150k vocabulary is dominated by the logits: at N = 8k tokens they
take 5 GB in fp32, and autograd keeps them (and their gradient) alive. Here the rows are processed
in chunks: each chunk's logits are computed by a matmul, turned *in place* into the gradient of the
loss with respect to the logits (a row-wise softmax step: the Triton kernel below on CUDA, the same
arithmetic in PyTorch elsewhere), and immediately contracted into the gradients of ``hidden``,
``weight`` and ``bias``. Only one chunk of logits exists at a time.

When the loss is reduced to a scalar the gradients are computed during the forward (the scalar
upstream gradient just rescales them, in place), so forward+backward costs the same three matmuls
as the naive composition. With ``reduction="none"`` the per-row upstream gradients are unknown in
forward, so the backward recomputes the chunks (one extra matmul). The matmuls stay in torch (cuBLAS / oneDNN):
hand-writing them would not beat those libraries; the fused part is the softmax/loss/gradient step,
which in PyTorch would need several passes over the chunk.

Per valid row ``i`` with label ``y`` (``z`` = logits, optionally soft-capped
``z <- c * tanh(z / c)``, ``lse = logsumexp(z)``, ``eps`` = label smoothing, ``V`` = vocabulary):

    loss_i = (1 - eps) * (lse - z_y) + eps * (lse - mean_j z_j) + z_loss * lse**2

times ``token_weights[i]`` when given. Ignored rows (``labels == ignore_index``) have loss 0.
``"sum"`` adds the rows, ``"mean"`` divides that sum by the summed weight of the valid rows
(the number of valid rows without ``token_weights``); when nothing is valid both return 0 with
zero gradients. ``"none"`` returns the weighted per-row losses in the shape of ``labels``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from cooper_lib.ops.dispatch import HAS_TRITON, Backend, resolve_backend, tl, triton

__all__ = ["LinearCrossEntropyFunction", "linear_cross_entropy", "linear_cross_entropy_reference"]

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS = ("mean", "sum", "none")
# Default chunk: at most 2**27 logits (512 MiB in fp32) alive at once, rounded down to a power of two:
# 512 rows of a 152k vocabulary. Fewer, taller chunks matter because each one re-reads and re-writes
# the whole fp32 weight-gradient accumulator.
_CHUNK_ELEMENTS = 1 << 27
# Vocabulary tile of the Triton row kernel (a power of two; rows longer than this loop over tiles).
_MAX_BLOCK_V = 4096


if HAS_TRITON:

    @triton.jit
    def _softcap(z, cap):
        # cap * tanh(z / cap), with tanh written through the sigmoid (tl has no tanh on all targets).
        return cap * (2.0 * tl.sigmoid(2.0 * z / cap) - 1.0)

    @triton.jit
    def _ce_rows_kernel(
        logits_ptr,
        stride_row,
        labels_ptr,
        scale_ptr,
        loss_ptr,
        n_cols,
        ignore_index,
        smoothing,
        z_loss,
        cap,
        HAS_SOFTCAP: tl.constexpr,
        COMPUTE_GRAD: tl.constexpr,
        BLOCK_V: tl.constexpr,
    ):
        """One program per row: online logsumexp, the loss, then (optionally) the logit gradient
        written over the logits, already multiplied by the row's scale."""
        row = tl.program_id(0).to(tl.int64)
        row_ptr = logits_ptr + row * stride_row
        label = tl.load(labels_ptr + row)
        valid = label != ignore_index

        running_max = -float("inf")
        running_sum = 0.0
        logit_sum = 0.0
        for start in range(0, n_cols, BLOCK_V):
            offs = start + tl.arange(0, BLOCK_V)
            in_row = offs < n_cols
            z = tl.load(row_ptr + offs, mask=in_row, other=0.0).to(tl.float32)
            if HAS_SOFTCAP:
                z = _softcap(z, cap)
            logit_sum += tl.sum(tl.where(in_row, z, 0.0), axis=0)
            z = tl.where(in_row, z, -float("inf"))
            new_max = tl.maximum(running_max, tl.max(z, axis=0))
            running_sum = running_sum * tl.exp(running_max - new_max) + tl.sum(tl.exp(z - new_max), axis=0)
            running_max = new_max
        lse = running_max + tl.log(running_sum)

        safe_label = tl.where(valid, label, 0)
        z_label = tl.load(row_ptr + safe_label).to(tl.float32)
        if HAS_SOFTCAP:
            z_label = _softcap(z_label, cap)
        loss = (1.0 - smoothing) * (lse - z_label) + smoothing * (lse - logit_sum / n_cols)
        loss += z_loss * lse * lse
        tl.store(loss_ptr + row, tl.where(valid, loss, 0.0))

        if COMPUTE_GRAD:
            scale = tl.load(scale_ptr + row)
            for start in range(0, n_cols, BLOCK_V):
                offs = start + tl.arange(0, BLOCK_V)
                in_row = offs < n_cols
                z = tl.load(row_ptr + offs, mask=in_row, other=0.0).to(tl.float32)
                if HAS_SOFTCAP:
                    z = _softcap(z, cap)
                p = tl.exp(z - lse)
                grad = p * (1.0 + 2.0 * z_loss * lse) - smoothing / n_cols
                grad -= tl.where((offs == label) & valid, 1.0 - smoothing, 0.0)
                if HAS_SOFTCAP:
                    t = z / cap
                    grad *= 1.0 - t * t
                tl.store(row_ptr + offs, grad * scale, mask=in_row)


@dataclass(frozen=True)
class _CEOptions:
    ignore_index: int
    label_smoothing: float
    z_loss: float
    softcap: float | None
    chunk_size: int
    backend: str


def _rows_step_torch(
    logits: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor | None, opts: _CEOptions
) -> torch.Tensor:
    """PyTorch twin of ``_ce_rows_kernel`` on a ``[c, V]`` fp32 (fp64) chunk; returns the row losses.

    Works in place: ``logits`` becomes ``exp(z - max)`` and then the scaled gradient, so no second
    ``[c, V]`` buffer is allocated (except the tanh values when soft-capping).
    """
    eps, zl, cap = opts.label_smoothing, opts.z_loss, opts.softcap
    valid = labels != opts.ignore_index
    safe = torch.where(valid, labels, 0).unsqueeze(1)
    tanh_z = None
    if cap is not None:
        tanh_z = torch.tanh(logits / cap)
        torch.mul(tanh_z, cap, out=logits)
    z_label = logits.gather(1, safe).squeeze(1)
    z_mean = logits.mean(dim=-1) if eps else None
    row_max = logits.amax(dim=-1)
    exp = logits.sub_(row_max.unsqueeze(1)).exp_()
    total = exp.sum(dim=-1)
    lse = row_max + torch.log(total)
    loss = (1.0 - eps) * (lse - z_label)
    if eps:
        loss = loss + eps * (lse - z_mean)
    if zl:
        loss = loss + zl * lse.square()
    loss = torch.where(valid, loss, 0.0)
    if scale is None:
        return loss
    factor = scale / total
    if zl:
        factor = factor * (1.0 + 2.0 * zl * lse)
    grad = exp.mul_(factor.unsqueeze(1))  # p * scale * (1 + 2 z_loss lse)
    if eps:
        grad.sub_((eps / grad.shape[1] * scale).unsqueeze(1))
    grad.scatter_add_(1, safe, (valid.to(grad.dtype) * scale * -(1.0 - eps)).unsqueeze(1))
    if tanh_z is not None:
        grad.mul_(tanh_z.square_().neg_().add_(1.0))
    return loss


def _rows_step_triton(
    logits: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor | None, opts: _CEOptions
) -> torch.Tensor:
    rows, n_cols = logits.shape
    loss = torch.empty(rows, dtype=torch.float32, device=logits.device)
    _ce_rows_kernel[(rows,)](
        logits,
        logits.stride(0),
        labels,
        loss if scale is None else scale,
        loss,
        n_cols,
        opts.ignore_index,
        opts.label_smoothing,
        opts.z_loss,
        opts.softcap or 1.0,
        HAS_SOFTCAP=opts.softcap is not None,
        COMPUTE_GRAD=scale is not None,
        BLOCK_V=min(triton.next_power_of_2(n_cols), _MAX_BLOCK_V),
        num_warps=16,  # one program streams a whole 150k-wide row: give it many warps
    )
    return loss


def _accumulate_weight_grad(acc: torch.Tensor, grad_logits: torch.Tensor, h_chunk: torch.Tensor) -> None:
    """``acc += grad_logits.T @ h_chunk`` into an fp32 (fp64 for fp64 inputs) accumulator."""
    if h_chunk.dtype == acc.dtype:
        acc.addmm_(grad_logits.T, h_chunk)
    elif acc.is_cuda:
        torch.addmm(acc, grad_logits.T.to(h_chunk.dtype), h_chunk, out_dtype=torch.float32, out=acc)
    else:  # CPU has no mixed-dtype matmul: the chunk (not the weight) is upcast.
        acc.addmm_(grad_logits.T, h_chunk.to(acc.dtype))


def _chunked_pass(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    row_scale: torch.Tensor | None,
    needs: tuple[bool, bool, bool],
    opts: _CEOptions,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Row losses, and with ``row_scale`` the gradients of ``sum_i row_scale[i] * loss_i``."""
    step = _rows_step_triton if opts.backend == "triton" else _rows_step_torch
    n_rows, n_vocab = hidden.shape[0], weight.shape[0]
    want_h, want_w, want_b = (need and row_scale is not None for need in needs)
    compute_dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    losses = torch.empty(n_rows, dtype=compute_dtype, device=hidden.device)
    grad_h = torch.empty_like(hidden) if want_h else None
    grad_w = torch.zeros(weight.shape, dtype=compute_dtype, device=weight.device) if want_w else None
    grad_b = torch.zeros(n_vocab, dtype=compute_dtype, device=weight.device) if want_b else None
    for start in range(0, n_rows, opts.chunk_size):
        end = min(start + opts.chunk_size, n_rows)
        h_chunk = hidden[start:end]
        logits = h_chunk @ weight.T if bias is None else torch.addmm(bias, h_chunk, weight.T)
        logits = logits.to(compute_dtype)
        scale = None if row_scale is None else row_scale[start:end]
        losses[start:end] = step(logits, labels[start:end], scale, opts)
        if scale is None:
            continue
        if grad_h is not None:
            torch.mm(logits.to(hidden.dtype), weight, out=grad_h[start:end])
        if grad_w is not None:
            _accumulate_weight_grad(grad_w, logits, h_chunk)
        if grad_b is not None:
            grad_b += logits.sum(dim=0)
    return losses, grad_h, grad_w, grad_b


class LinearCrossEntropyFunction(torch.autograd.Function):
    """Autograd Function over flat ``hidden [N, H]``, ``weight [V, H]``, ``labels [N]``.

    ``row_weight [N]`` is the validity mask times the token weights (no gradient). With a scalar
    reduction the gradients are made in forward and handed over (not copied) by the first
    backward; a later backward through the same graph (``retain_graph=True``) recomputes them.
    """

    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        labels: torch.Tensor,
        row_weight: torch.Tensor,
        reduction: str,
        opts: _CEOptions,
    ) -> torch.Tensor:
        needs = tuple(ctx.needs_input_grad[:3])
        ctx.opts, ctx.weight_dtype, ctx.grads = opts, weight.dtype, None
        if reduction == "none":
            losses, *_ = _chunked_pass(hidden, weight, bias, labels, None, needs, opts)
            ctx.save_for_backward(hidden, weight, bias, labels, row_weight)
            return losses * row_weight
        total = row_weight.sum()
        row_scale = row_weight / torch.where(total > 0, total, 1.0) if reduction == "mean" else row_weight
        eager = any(needs)
        losses, *grads = _chunked_pass(
            hidden, weight, bias, labels, row_scale if eager else None, needs, opts
        )
        ctx.save_for_backward(hidden, weight, bias, labels, row_scale)
        ctx.grads = grads if eager else None
        return (losses * row_scale).sum()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        if ctx.grads is not None:
            grads = [None if g is None else g.mul_(grad_out) for g in ctx.grads]
            ctx.grads = None  # drop our reference so autograd can take the tensors without a copy
        else:
            hidden, weight, bias, labels, row_scale = ctx.saved_tensors
            row_scale = grad_out.to(row_scale.dtype) * row_scale
            _, *grads = _chunked_pass(
                hidden, weight, bias, labels, row_scale, ctx.needs_input_grad[:3], ctx.opts
            )
        grad_h, grad_w, grad_b = grads
        return (
            grad_h,
            None if grad_w is None else grad_w.to(ctx.weight_dtype),
            None if grad_b is None else grad_b.to(ctx.weight_dtype),
            None,
            None,
            None,
            None,
        )


def _default_chunk_size(n_rows: int, n_vocab: int) -> int:
    rows = max(1, _CHUNK_ELEMENTS // max(n_vocab, 1))
    rows = 1 << (rows.bit_length() - 1)
    return min(rows, 1 << max(n_rows - 1, 0).bit_length())


def _check_inputs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    bias: torch.Tensor | None,
    token_weights: torch.Tensor | None,
    ignore_index: int,
) -> None:
    if not hidden.is_floating_point() or hidden.dim() < 1:
        raise TypeError(
            f"hidden must be a floating tensor [..., H], got {hidden.dtype} {tuple(hidden.shape)}"
        )
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"weight must be [V, {hidden.shape[-1]}] to match hidden, got {tuple(weight.shape)}")
    if weight.dtype != hidden.dtype:
        raise TypeError(f"weight dtype must equal hidden dtype {hidden.dtype}, got {weight.dtype}")
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels must be an int64 or int32 tensor, got {labels.dtype}")
    if labels.shape != hidden.shape[:-1]:
        raise ValueError(f"labels must have shape {tuple(hidden.shape[:-1])}, got {tuple(labels.shape)}")
    if bias is not None and (bias.shape != weight.shape[:1] or bias.dtype != weight.dtype):
        raise ValueError(
            f"bias must be [{weight.shape[0]}] of dtype {weight.dtype}, got {tuple(bias.shape)} {bias.dtype}"
        )
    if token_weights is not None:
        if token_weights.shape != labels.shape:
            raise ValueError(
                f"token_weights must have the shape of labels {tuple(labels.shape)}, got {tuple(token_weights.shape)}"
            )
        if token_weights.requires_grad:
            raise ValueError("token_weights must not require grad: the loss does not differentiate them")
    out_of_range = (labels != ignore_index) & ((labels < 0) | (labels >= weight.shape[0]))
    if bool(out_of_range.any()):
        bad = labels[out_of_range][0].item()
        raise ValueError(
            f"labels must be in [0, {weight.shape[0]}) or ignore_index={ignore_index}, got {bad}"
        )


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    token_weights: torch.Tensor | None = None,
    chunk_size: int | None = None,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Cross-entropy of ``hidden @ weight.T (+ bias)`` against ``labels``, chunk by chunk.

    Args:
        hidden: ``[..., H]`` final hidden states (any layout; fp32, fp16 or bf16).
        weight: ``[V, H]`` output projection (an ``lm_head`` or a tied embedding), same dtype.
        labels: ``[...]`` (the shape of ``hidden`` without its last dim) target ids.
        bias: optional ``[V]`` output bias.
        ignore_index: label value whose rows are skipped.
        reduction: ``"mean"`` (weighted mean over valid rows, 0 when none), ``"sum"`` or ``"none"``.
        label_smoothing: ``eps`` in ``[0, 1)``, as in ``torch.nn.functional.cross_entropy``.
        z_loss: coefficient of the ``logsumexp**2`` penalty (PaLM), ``>= 0``.
        softcap: when set, logits become ``softcap * tanh(logits / softcap)`` (Gemma 2).
        token_weights: optional ``[...]`` non-negative per-row weights (not differentiated).
        chunk_size: rows per chunk; default keeps at most 2**27 logits alive.
        backend: ``"auto"``, ``"triton"`` or ``"torch"`` (see ``cooper_lib.ops.dispatch``).

    Returns:
        A scalar fp32 loss, or fp32 losses shaped like ``labels`` for ``reduction="none"``.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if z_loss < 0.0:
        raise ValueError(f"z_loss must be >= 0, got {z_loss}")
    if softcap is not None and softcap <= 0.0:
        raise ValueError(f"softcap must be > 0 or None, got {softcap}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    _check_inputs(hidden, weight, labels, bias, token_weights, ignore_index)
    chosen = resolve_backend(backend, hidden, weight, labels, bias, token_weights)

    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    flat_labels = labels.reshape(-1).long().contiguous()
    compute_dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    row_weight = (flat_labels != ignore_index).to(compute_dtype)
    if token_weights is not None:
        row_weight = row_weight * token_weights.reshape(-1).to(compute_dtype)
    opts = _CEOptions(
        ignore_index=ignore_index,
        label_smoothing=float(label_smoothing),
        z_loss=float(z_loss),
        softcap=None if softcap is None else float(softcap),
        chunk_size=chunk_size or _default_chunk_size(flat_hidden.shape[0], weight.shape[0]),
        backend=chosen,
    )
    loss = LinearCrossEntropyFunction.apply(
        flat_hidden, weight, bias, flat_labels, row_weight, reduction, opts
    )
    return loss.reshape(labels.shape) if reduction == "none" else loss


def linear_cross_entropy_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    token_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The same loss with the full logits materialised (plain autograd); for tests and benchmarks.

    Computes in fp32, or in fp64 when the inputs are fp64.
    """
    dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    logits = F.linear(hidden.reshape(-1, hidden.shape[-1]), weight, bias).to(dtype)
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    flat = labels.reshape(-1)
    valid = flat != ignore_index
    log_probs = torch.log_softmax(logits, dim=-1)
    nll = -log_probs.gather(1, torch.where(valid, flat, 0).unsqueeze(1)).squeeze(1)
    loss = (1.0 - label_smoothing) * nll - label_smoothing * log_probs.mean(dim=-1)
    loss = loss + z_loss * torch.logsumexp(logits, dim=-1).square()
    row_weight = valid.to(dtype)
    if token_weights is not None:
        row_weight = row_weight * token_weights.reshape(-1).to(dtype)
    loss = torch.where(valid, loss, 0.0) * row_weight
    if reduction == "none":
        return loss.reshape(labels.shape)
    total = loss.sum()
    if reduction == "sum":
        return total
    denom = row_weight.sum()
    return total / torch.where(denom > 0, denom, 1.0)
