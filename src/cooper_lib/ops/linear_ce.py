"""Linear layer + cross-entropy without keeping the ``[N, V]`` logits.

The language-model loss over a 150k vocabulary is dominated by the logits: at N = 8k tokens they
take 5 GB in fp32, and autograd keeps them (and their gradient) alive. Here the rows are processed
in chunks: each chunk's logits are computed by a matmul into one reused ``[chunk, V]`` buffer,
turned *in place* into the gradient of the loss with respect to the logits (a row-wise softmax
step: the Triton kernel below on CUDA, the same arithmetic in PyTorch elsewhere), and immediately
contracted into the gradients of ``hidden``, ``weight`` and ``bias``. Only one chunk of logits
exists at a time, so the memory above the inputs is the weight gradient (the floor every method
pays) plus one chunk. The kernel keeps the logits in the matmul dtype (bf16 on a GPU) and does its
arithmetic in fp32; the PyTorch step works on an fp32 copy.

When the loss is reduced to a scalar the gradients are computed during the forward (the scalar
upstream gradient just rescales them, in place), so forward+backward costs the same three matmuls
as the naive composition. With ``reduction="none"`` the per-row upstream gradients are unknown in
forward, so the backward recomputes the chunks (one extra matmul). When no gradient is wanted
(``torch.no_grad``, no input requiring grad) only the forward matmul and the loss step run. The
matmuls stay in torch (cuBLAS / oneDNN), in the autocast dtype under autocast: hand-writing them
would not beat those libraries; the fused part is the softmax/loss/gradient step, which in PyTorch
would need several passes over the chunk.

That is the rows sweep. For a 16-bit weight its fp32 weight-gradient accumulator is twice the
gradient autograd receives, so there the default is the vocabulary sweep (`_vocab_pass`): blocks
of the vocabulary over all rows, each block's weight gradient one fp32-accumulated matmul written
once in the weight's dtype, for one more matmul (the logits are made twice).

Per valid row ``i`` with label ``y`` (``z`` = logits, optionally soft-capped
``z <- c * tanh(z / c)``, ``lse = logsumexp(z)``, ``eps`` = label smoothing, ``V`` = vocabulary,
``w`` = class weights, all 1 without them):

    loss_i = (1 - eps) * w_y * (lse - z_y) + eps / V * sum_j w_j * (lse - z_j) + z_loss * lse**2

times ``token_weights[i]`` when given. Ignored rows (``labels == ignore_index``) have loss 0.
``"sum"`` adds the rows, ``"mean"`` divides that sum by ``sum_i token_weights[i] * w_{y_i}`` over
the valid rows (the number of valid rows without weights; with class weights and smoothing this
is ``torch.nn.functional.cross_entropy``'s convention); when nothing is valid both return 0 with
zero gradients. ``"none"`` returns the weighted per-row losses in the shape of ``labels``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from cooper_lib.ops.dispatch import HAS_TRITON, Backend, interpreter_on, resolve_backend, tl, triton

__all__ = [
    "LinearCrossEntropyFunction",
    "LinearCrossEntropyOutput",
    "default_block_size",
    "default_chunk_size",
    "linear_cross_entropy",
    "linear_cross_entropy_reference",
]

Reduction = Literal["mean", "sum", "none"]
Sweep = Literal["auto", "rows", "vocab"]
_REDUCTIONS = ("mean", "sum", "none")
# Default chunk: at most this many logits alive at once, rounded down to a power of two rows.
# CPU: 2**27 fp32 logits (512 MiB; 512 rows of a 152k vocabulary). CUDA: 2**29 logits in the 16-bit
# matmul dtype (2048 rows of a 152k vocabulary, 0.58 GiB in bf16): every chunk re-reads and re-writes
# the fp32 weight-gradient accumulator (8 * V * H bytes), which at 512 rows would cost about a
# quarter of the chunk's matmul time on an H100/H200; at 2048 rows about a fifteenth. This CUDA value
# is the estimate that benchmarks/gpu_check.sh measures (it sweeps the chunk size and prints the best).
_CHUNK_ELEMENTS = {"cpu": 1 << 27, "cuda": 1 << 29}
# Default block of the vocabulary sweep: at most 2**24 logits (32 MiB in bf16, 2048 columns at 8k rows),
# small beside a weight gradient of any real vocabulary, and never under 128 columns (narrower blocks
# would starve the matmuls).
_BLOCK_ELEMENTS = 1 << 24
_MIN_BLOCK_COLUMNS = 128
_SWEEPS = ("auto", "rows", "vocab")
# Largest vocabulary tile the Triton row kernel may use (rows longer than the tile loop over tiles).
_MAX_BLOCK_V = 8192
# A 16-bit product accumulated into an fp32 output (torch.addmm(..., out_dtype=)) exists on CUDA only,
# from torch 2.8; before that the chunk's gradient is upcast for the weight-gradient matmul.
_HAS_ADDMM_OUT_DTYPE = torch.torch_version.TorchVersion(torch.__version__) >= (2, 8)


if HAS_TRITON:

    def _prune_configs(configs: list, named_args: dict, **_: object) -> list:
        """Clamp each config's vocabulary tile to the row and to ``_MAX_BLOCK_V``, dropping duplicates.

        A clamped tile keeps only its first config (a short row needs no tuning), and so does every
        tile in the interpreter (warps mean nothing there).
        """
        cap = min(triton.next_power_of_2(int(named_args["n_cols"])), _MAX_BLOCK_V)
        kept = []
        for config in configs:
            block = min(config.kwargs["BLOCK_V"], cap)
            same_tile = [k for k in kept if k.kwargs["BLOCK_V"] == block]
            if same_tile and (interpreter_on() or block < config.kwargs["BLOCK_V"]):
                continue
            kept.append(triton.Config({"BLOCK_V": block}, num_warps=config.num_warps))
        return kept

    _ROW_CONFIGS = [
        triton.Config({"BLOCK_V": block}, num_warps=warps)
        for block, warps in ((1024, 4), (2048, 8), (4096, 16), (8192, 32))
    ]
    # Autotuning runs the kernel several times on the same chunk, and the kernel overwrites the logits
    # with their gradient: restore_value (triton >= 3.0) puts them back between runs. Without it one
    # fixed configuration is used.
    _CAN_TUNE = "restore_value" in inspect.signature(triton.autotune).parameters
    _AUTOTUNE = triton.autotune(
        configs=_ROW_CONFIGS if _CAN_TUNE else _ROW_CONFIGS[2:3],
        key=["n_cols", "HAS_SOFTCAP", "HAS_CLASS_WEIGHTS", "COMPUTE_GRAD"],
        prune_configs_by={"early_config_prune": _prune_configs},
        **({"restore_value": ["logits_ptr"]} if _CAN_TUNE else {}),
    )

    @triton.jit
    def _softcap(z, cap):
        # cap * tanh(z / cap), with tanh written through the sigmoid (tl has no tanh on all targets).
        return cap * (2.0 * tl.sigmoid(2.0 * z / cap) - 1.0)

    @_AUTOTUNE
    @triton.jit
    def _ce_rows_kernel(
        logits_ptr,
        stride_row,
        labels_ptr,
        class_w_ptr,
        scale_ptr,
        loss_ptr,
        lse_ptr,
        hit_ptr,
        n_cols,
        ignore_index,
        SMOOTHING: tl.constexpr,
        Z_LOSS: tl.constexpr,
        CAP: tl.constexpr,
        HAS_SOFTCAP: tl.constexpr,
        HAS_CLASS_WEIGHTS: tl.constexpr,
        COMPUTE_GRAD: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK_V: tl.constexpr,
    ):
        """One program per row, arithmetic in ``ACC`` (fp32, or fp64 for fp64 logits): an online
        logsumexp and argmax, the loss, then (optionally) the logit gradient written over the
        logits in their own dtype, already multiplied by the row's scale. The loss options are
        compile-time constants (exact in fp64; one compilation per distinct setting)."""
        row = tl.program_id(0).to(tl.int64)
        row_ptr = logits_ptr + row * stride_row
        label = tl.load(labels_ptr + row)
        valid = label != ignore_index
        safe_label = tl.where(valid & (label >= 0) & (label < n_cols), label, 0)

        running_max = tl.full((), float("-inf"), ACC)
        running_sum = tl.zeros((), ACC)
        weighted_sum = tl.zeros((), ACC)  # sum_j w_j z_j
        weight_total = tl.zeros((), ACC)  # sum_j w_j
        best = tl.zeros((), tl.int32)
        n_float = tl.zeros((), ACC) + n_cols
        for start in range(0, n_cols, BLOCK_V):
            offs = start + tl.arange(0, BLOCK_V)
            in_row = offs < n_cols
            z = tl.load(row_ptr + offs, mask=in_row, other=0.0).to(ACC)
            if HAS_SOFTCAP:
                z = _softcap(z, CAP)
            if HAS_CLASS_WEIGHTS:
                w = tl.load(class_w_ptr + offs, mask=in_row, other=0.0).to(ACC)
                weighted_sum += tl.sum(w * z, axis=0)
                weight_total += tl.sum(w, axis=0)
            else:
                weighted_sum += tl.sum(tl.where(in_row, z, 0.0), axis=0)
            z = tl.where(in_row, z, float("-inf"))
            block_max = tl.max(z, axis=0)
            block_arg = tl.argmax(z, axis=0).to(tl.int32) + start
            best = tl.where(block_max > running_max, block_arg, best)
            new_max = tl.maximum(running_max, block_max)
            running_sum = running_sum * tl.exp(running_max - new_max) + tl.sum(tl.exp(z - new_max), axis=0)
            running_max = new_max
        lse = running_max + tl.log(running_sum)
        if not HAS_CLASS_WEIGHTS:
            weight_total += n_float

        z_label = tl.load(row_ptr + safe_label).to(ACC)
        if HAS_SOFTCAP:
            z_label = _softcap(z_label, CAP)
        if HAS_CLASS_WEIGHTS:
            w_label = tl.load(class_w_ptr + safe_label).to(ACC)
        else:
            w_label = tl.full((), 1.0, ACC)
        loss = (1.0 - SMOOTHING) * w_label * (lse - z_label)
        loss += SMOOTHING / n_float * (weight_total * lse - weighted_sum)
        loss += Z_LOSS * lse * lse
        tl.store(loss_ptr + row, tl.where(valid, loss, 0.0))
        tl.store(lse_ptr + row, lse)
        tl.store(hit_ptr + row, valid & (best == label))

        if COMPUTE_GRAD:
            scale = tl.load(scale_ptr + row).to(ACC)
            coef = (1.0 - SMOOTHING) * w_label + SMOOTHING / n_float * weight_total + 2.0 * Z_LOSS * lse
            for start in range(0, n_cols, BLOCK_V):
                offs = start + tl.arange(0, BLOCK_V)
                in_row = offs < n_cols
                z = tl.load(row_ptr + offs, mask=in_row, other=0.0).to(ACC)
                if HAS_SOFTCAP:
                    z = _softcap(z, CAP)
                grad = tl.exp(z - lse) * coef
                if HAS_CLASS_WEIGHTS:
                    w = tl.load(class_w_ptr + offs, mask=in_row, other=0.0).to(ACC)
                    grad -= SMOOTHING / n_float * w
                else:
                    grad -= SMOOTHING / n_float
                grad -= tl.where(offs == safe_label, (1.0 - SMOOTHING) * w_label, 0.0)
                if HAS_SOFTCAP:
                    t = z / CAP
                    grad *= 1.0 - t * t
                tl.store(row_ptr + offs, (grad * scale).to(logits_ptr.dtype.element_ty), mask=in_row)


class LinearCrossEntropyOutput(NamedTuple):
    """What `linear_cross_entropy` returns when any ``return_*`` flag is set (unrequested fields are None).

    ``loss`` is differentiable; the others are detached values for logging.
    """

    loss: torch.Tensor
    z_loss: torch.Tensor | None
    lse: torch.Tensor | None
    accuracy: torch.Tensor | None


@dataclass(frozen=True)
class _CEOptions:
    ignore_index: int
    label_smoothing: float
    z_loss: float
    softcap: float | None
    chunk_size: int
    backend: str
    matmul_dtype: torch.dtype
    sweep: str = "rows"
    block_size: int = 1
    weight_grad_dtype: torch.dtype = torch.float32


_RowStats = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # row losses, log-sum-exps, argmax hits


def _row_losses(
    lse: torch.Tensor,
    z_label: torch.Tensor,
    w_label: torch.Tensor | float,
    weighted_sum: torch.Tensor | None,
    weight_total: torch.Tensor | float | None,
    valid: torch.Tensor,
    n_vocab: int,
    opts: _CEOptions,
) -> torch.Tensor:
    """Each row's loss from its statistics (the formula in the module docstring); 0 on ignored rows.
    ``weighted_sum`` (``sum_j w_j z_j``) and ``weight_total`` (``sum_j w_j``) are read only with
    label smoothing."""
    eps = opts.label_smoothing
    loss = (1.0 - eps) * w_label * (lse - z_label)
    if eps:
        loss = loss + eps / n_vocab * (weight_total * lse - weighted_sum)
    if opts.z_loss:
        loss = loss + opts.z_loss * lse.square()
    return torch.where(valid, loss, 0.0)


def _softmax_coef(
    lse: torch.Tensor,
    w_label: torch.Tensor | float,
    weight_total: torch.Tensor | float | None,
    n_vocab: int,
    opts: _CEOptions,
) -> torch.Tensor:
    """Per row, the factor of ``softmax(z)`` in the loss's gradient with respect to the logits."""
    eps = opts.label_smoothing
    coef = (1.0 - eps) * w_label + 2.0 * opts.z_loss * lse
    if eps:
        coef = coef + eps / n_vocab * weight_total
    return coef


def _rows_step_torch(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None,
    scale: torch.Tensor | None,
    opts: _CEOptions,
) -> _RowStats:
    """PyTorch twin of ``_ce_rows_kernel`` on a ``[c, V]`` fp32 (fp64) chunk.

    Works in place: ``logits`` becomes ``exp(z - max)`` and then the scaled gradient, so no second
    ``[c, V]`` buffer is allocated (except the tanh values when soft-capping).
    """
    eps, cap = opts.label_smoothing, opts.softcap
    n_cols = logits.shape[1]
    valid = labels != opts.ignore_index
    safe = torch.where(
        valid & (labels >= 0) & (labels < n_cols), labels, 0
    )  # as the kernel: never out of range
    tanh_z = None
    if cap is not None:
        tanh_z = torch.tanh(logits / cap)
        torch.mul(tanh_z, cap, out=logits)
    z_label = logits.gather(1, safe.unsqueeze(1)).squeeze(1)
    hit = valid & (logits.argmax(dim=-1) == labels)
    w_label = 1.0 if class_weights is None else class_weights[safe]
    weighted_sum = weight_total = None
    if eps:
        weighted_sum = logits.sum(dim=-1) if class_weights is None else logits @ class_weights
        weight_total = n_cols if class_weights is None else class_weights.sum()
    row_max = logits.amax(dim=-1)
    exp = logits.sub_(row_max.unsqueeze(1)).exp_()
    total = exp.sum(dim=-1)
    lse = row_max + torch.log(total)
    loss = _row_losses(lse, z_label, w_label, weighted_sum, weight_total, valid, n_cols, opts)
    if scale is None:
        return loss, lse, hit
    coef = _softmax_coef(lse, w_label, weight_total, n_cols, opts)
    grad = exp.mul_((scale * coef / total).unsqueeze(1))  # p * scale * coef
    if eps and class_weights is None:
        grad.sub_((eps / n_cols * scale).unsqueeze(1))
    elif eps:
        grad.addr_(scale, class_weights, alpha=-eps / n_cols)  # in place: no [c, V] temporary
    grad.scatter_add_(1, safe.unsqueeze(1), (valid * scale * -(1.0 - eps) * w_label).unsqueeze(1))
    if tanh_z is not None:
        grad.mul_(tanh_z.square_().neg_().add_(1.0))
    return loss, lse, hit


def _rows_step_triton(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None,
    scale: torch.Tensor | None,
    opts: _CEOptions,
) -> _RowStats:
    rows, n_cols = logits.shape
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    loss = torch.empty(rows, dtype=acc, device=logits.device)
    lse = torch.empty(rows, dtype=acc, device=logits.device)
    hit = torch.empty(rows, dtype=torch.bool, device=logits.device)
    _ce_rows_kernel[(rows,)](
        logits,
        logits.stride(0),
        labels,
        loss if class_weights is None else class_weights,
        loss if scale is None else scale,
        loss,
        lse,
        hit,
        n_cols,
        opts.ignore_index,
        SMOOTHING=opts.label_smoothing,
        Z_LOSS=opts.z_loss,
        CAP=opts.softcap or 1.0,
        HAS_SOFTCAP=opts.softcap is not None,
        HAS_CLASS_WEIGHTS=class_weights is not None,
        COMPUTE_GRAD=scale is not None,
        ACC=tl.float64 if acc == torch.float64 else tl.float32,
    )
    return loss, lse, hit


def _accumulate_weight_grad(acc: torch.Tensor, grad_logits: torch.Tensor, h_chunk: torch.Tensor) -> None:
    """``acc += grad_logits.T @ h_chunk`` into ``acc`` (the fp32 / fp64 accumulator of the rows
    sweep, or a block of the vocabulary sweep's gradients, in any float dtype).

    Operands of ``acc``'s dtype: one matmul in place. 16-bit operands into an fp32 ``acc`` on CUDA
    with torch >= 2.8: one mixed-dtype matmul (fp32 accumulate and output). Otherwise (CPU, older
    torch) the operands are cast to ``acc``'s dtype first, one chunk at a time.
    """
    if grad_logits.dtype == acc.dtype and h_chunk.dtype == acc.dtype:
        acc.addmm_(grad_logits.T, h_chunk)
    elif (
        acc.is_cuda
        and _HAS_ADDMM_OUT_DTYPE
        and acc.dtype == torch.float32
        and grad_logits.dtype == h_chunk.dtype
    ):
        torch.addmm(acc, grad_logits.T, h_chunk, out_dtype=acc.dtype, out=acc)
    else:
        acc.addmm_(grad_logits.T.to(acc.dtype), h_chunk.to(acc.dtype))


def _chunked_pass(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None,
    row_scale: torch.Tensor | None,
    needs: tuple[bool, bool, bool],
    opts: _CEOptions,
) -> tuple[torch.Tensor, ...]:
    """Row losses, log-sum-exps and argmax hits, and with ``row_scale`` the gradients of
    ``sum_i row_scale[i] * loss_i`` (``None`` where not needed), in that order.

    ``hidden``, ``weight`` and ``bias`` come already in the matmul dtype. One ``[chunk, V]`` buffer
    (two on the torch path with 16-bit matmuls: the product, and its fp32 copy the step works on)
    is allocated once and reused by every chunk, so the memory above the gradients is one chunk.
    """
    triton_step = opts.backend == "triton"
    step = _rows_step_triton if triton_step else _rows_step_torch
    n_rows, n_vocab = hidden.shape[0], weight.shape[0]
    want_h, want_w, want_b = (need and row_scale is not None for need in needs)
    acc_dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    device = hidden.device
    losses = torch.empty(n_rows, dtype=acc_dtype, device=device)
    lse = torch.empty(n_rows, dtype=acc_dtype, device=device)
    hits = torch.empty(n_rows, dtype=torch.bool, device=device)
    grad_h = torch.empty_like(hidden) if want_h else None
    grad_w = torch.zeros(weight.shape, dtype=acc_dtype, device=device) if want_w else None
    grad_b = torch.zeros(n_vocab, dtype=acc_dtype, device=device) if want_b else None
    rows = max(1, min(opts.chunk_size, n_rows))
    product_buf = torch.empty(rows, n_vocab, dtype=hidden.dtype, device=device)
    # The kernel reads and writes the matmul dtype (fp32 arithmetic inside); the torch step needs fp32.
    same = triton_step or hidden.dtype == acc_dtype
    step_buf = product_buf if same else torch.empty(rows, n_vocab, dtype=acc_dtype, device=device)
    for start in range(0, n_rows, rows):
        end = min(start + rows, n_rows)
        h_chunk = hidden[start:end]
        product = product_buf[: end - start]
        if bias is None:
            torch.mm(h_chunk, weight.T, out=product)
        else:
            torch.addmm(bias, h_chunk, weight.T, out=product)
        logits = step_buf[: end - start]
        if not same:
            logits.copy_(product)
        scale = None if row_scale is None else row_scale[start:end]
        losses[start:end], lse[start:end], hits[start:end] = step(
            logits, labels[start:end], class_weights, scale, opts
        )
        if scale is None:
            continue
        if grad_w is not None:
            _accumulate_weight_grad(grad_w, logits, h_chunk)
        if grad_b is not None:
            grad_b += logits.sum(dim=0, dtype=acc_dtype)
        if grad_h is not None:
            if not same:
                product.copy_(logits)
            torch.mm(product, weight, out=grad_h[start:end])
    return losses, lse, hits, grad_h, grad_w, grad_b


def _block_logits(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    out: torch.Tensor,
    step_buf: torch.Tensor,
) -> torch.Tensor:
    """The block's logits ``hidden @ weight.T (+ bias)`` written into ``out`` (the matmul dtype),
    then copied into ``step_buf`` (fp32 / fp64) unless they are the same buffer; returns the latter."""
    if bias is None:
        torch.mm(hidden, weight.T, out=out)
    else:
        torch.addmm(bias, hidden, weight.T, out=out)
    if step_buf is not out:
        step_buf.copy_(out)
    return step_buf


def _vocab_pass(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None,
    row_scale: torch.Tensor | None,
    needs: tuple[bool, bool, bool],
    opts: _CEOptions,
) -> tuple[torch.Tensor, ...]:
    """`_chunked_pass`'s outputs, made over blocks of the vocabulary (``sweep="vocab"``).

    The first sweep over ``[N, block]`` logit blocks gathers every row's log-sum-exp (online, as flash
    attention does), label logit, first argmax and smoothing sum; with ``row_scale`` (gradients
    wanted) the second recomputes each block, turns it into its gradient and contracts it. A
    block's weight gradient is one matmul over all the rows (fp32 accumulation inside the matmul),
    written once in ``opts.weight_grad_dtype``: no fp32
    ``[V, H]`` accumulator exists, so in 16-bit the memory above the inputs is the weight gradient in
    its own dtype, one block and an fp32 ``[N, H]`` hidden-state gradient, at the cost of one more
    matmul than the rows sweep. The block step is PyTorch on every backend.
    """
    n_rows, n_vocab = hidden.shape[0], weight.shape[0]
    eps, cap = opts.label_smoothing, opts.softcap
    acc_dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    device = hidden.device
    cols = max(1, min(opts.block_size, n_vocab))
    product_buf = torch.empty(n_rows, cols, dtype=hidden.dtype, device=device)
    step_buf = product_buf if hidden.dtype == acc_dtype else torch.empty_like(product_buf, dtype=acc_dtype)
    valid = labels != opts.ignore_index
    safe = torch.where(valid & (labels >= 0) & (labels < n_vocab), labels, 0)
    run_max = torch.full((n_rows,), float("-inf"), dtype=acc_dtype, device=device)
    run_sum = torch.zeros(n_rows, dtype=acc_dtype, device=device)
    z_label = torch.zeros(n_rows, dtype=acc_dtype, device=device)
    arg = torch.zeros(n_rows, dtype=torch.long, device=device)
    weighted_sum = torch.zeros(n_rows, dtype=acc_dtype, device=device)
    blocks = [(start, min(start + cols, n_vocab)) for start in range(0, n_vocab, cols)]
    for start, end in blocks:
        z = _block_logits(
            hidden,
            weight[start:end],
            None if bias is None else bias[start:end],
            product_buf[:, : end - start],
            step_buf[:, : end - start],
        )
        if cap is not None:
            z.div_(cap).tanh_().mul_(cap)
        block_max, block_arg = z.max(dim=1)
        arg = torch.where(block_max > run_max, block_arg + start, arg)  # strict: the first maximum wins
        new_max = torch.maximum(run_max, block_max)
        run_sum = run_sum * torch.exp(run_max - new_max) + torch.exp(z - new_max.unsqueeze(1)).sum(dim=1)
        run_max = new_max
        inside = (safe >= start) & (safe < end)
        picked = z.gather(1, (safe - start).clamp(0, end - start - 1).unsqueeze(1)).squeeze(1)
        z_label = torch.where(inside, picked, z_label)
        if eps:
            weighted_sum += z.sum(dim=1) if class_weights is None else z @ class_weights[start:end]
    lse = run_max + torch.log(run_sum)
    hits = valid & (arg == labels)
    w_label = 1.0 if class_weights is None else class_weights[safe]
    weight_total = n_vocab if class_weights is None else class_weights.sum()
    losses = _row_losses(lse, z_label, w_label, weighted_sum, weight_total, valid, n_vocab, opts)
    if row_scale is None:
        return losses, lse, hits, None, None, None

    want_h, want_w, want_b = needs
    grad_h = torch.zeros(hidden.shape, dtype=acc_dtype, device=device) if want_h else None
    grad_w = torch.zeros(weight.shape, dtype=opts.weight_grad_dtype, device=device) if want_w else None
    grad_b = torch.zeros(n_vocab, dtype=opts.weight_grad_dtype, device=device) if want_b else None
    row_coef = (row_scale * _softmax_coef(lse, w_label, weight_total, n_vocab, opts)).unsqueeze(1)
    label_grad = valid * row_scale * -(1.0 - eps) * w_label
    for start, end in blocks:
        product = product_buf[:, : end - start]
        z = _block_logits(
            hidden,
            weight[start:end],
            None if bias is None else bias[start:end],
            product,
            step_buf[:, : end - start],
        )
        tanh_z = None
        if cap is not None:
            tanh_z = torch.tanh(z / cap)
            torch.mul(tanh_z, cap, out=z)
        grad = z.sub_(lse.unsqueeze(1)).exp_().mul_(row_coef)  # p * scale * coef
        if eps and class_weights is None:
            grad.sub_((eps / n_vocab * row_scale).unsqueeze(1))
        elif eps:
            grad.addr_(row_scale, class_weights[start:end], alpha=-eps / n_vocab)
        inside = (safe >= start) & (safe < end)
        grad.scatter_add_(
            1,
            (safe - start).clamp(0, end - start - 1).unsqueeze(1),
            torch.where(inside, label_grad, 0.0).unsqueeze(1),
        )
        if tanh_z is not None:
            grad.mul_(tanh_z.square_().neg_().add_(1.0))
        if grad_b is not None:
            grad_b[start:end] = grad.sum(dim=0)
        if grad is not product:
            product.copy_(grad)
        if grad_w is not None:
            _accumulate_weight_grad(grad_w[start:end], product, hidden)
        if grad_h is not None:  # the 16-bit product where a mixed-dtype matmul takes it, else fp32
            mixed = product.is_cuda and _HAS_ADDMM_OUT_DTYPE
            _accumulate_weight_grad(grad_h, (product if mixed else grad).T, weight[start:end])
    return losses, lse, hits, grad_h, grad_w, grad_b


def _pass_for(opts: _CEOptions):
    """The function of the call's sweep: `_vocab_pass` or `_chunked_pass`."""
    return _vocab_pass if opts.sweep == "vocab" else _chunked_pass


def _for_matmul(
    tensors: tuple[torch.Tensor | None, ...], dtype: torch.dtype
) -> tuple[torch.Tensor | None, ...]:
    return tuple(None if t is None else t.to(dtype) for t in tensors)


class LinearCrossEntropyFunction(torch.autograd.Function):
    """Autograd Function over flat ``hidden [N, H]``, ``weight [V, H]``, ``labels [N]``.

    ``row_scale [N]`` multiplies each row's loss (validity mask, token weights and, for ``"mean"``,
    the normaliser; no gradient). Returns the scalar sum of the scaled rows (``scalar=True``) or the
    scaled rows, then the per-row log-sum-exps and argmax hits (not differentiable). With a scalar
    the gradients are made in forward and handed over (not copied) by the first backward; a later
    backward through the same graph (``retain_graph=True``) recomputes them. All matmuls run in
    ``opts.matmul_dtype`` (the autocast dtype under autocast); gradients come back in the inputs' dtypes.
    """

    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        labels: torch.Tensor,
        row_scale: torch.Tensor,
        class_weights: torch.Tensor | None,
        scalar: bool,
        opts: _CEOptions,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        needs = tuple(ctx.needs_input_grad[:3])
        ctx.opts, ctx.dtypes, ctx.grads = opts, (hidden.dtype, weight.dtype), None
        eager = scalar and any(needs)
        with torch.autocast(hidden.device.type, enabled=False):
            losses, lse, hits, *grads = _pass_for(opts)(
                *_for_matmul((hidden, weight, bias), opts.matmul_dtype),
                labels,
                class_weights,
                row_scale if eager else None,
                needs,
                opts,
            )
        ctx.save_for_backward(hidden, weight, bias, labels, row_scale, class_weights)
        ctx.mark_non_differentiable(lse, hits)
        ctx.grads = grads if eager else None
        scaled = losses * row_scale
        return (scaled.sum() if scalar else scaled), lse, hits

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor, *_: torch.Tensor):
        if ctx.grads is not None:
            grads = [None if g is None else g.mul_(grad_out) for g in ctx.grads]
            ctx.grads = None  # drop our reference so autograd can take the tensors without a copy
        else:
            hidden, weight, bias, labels, row_scale, class_weights = ctx.saved_tensors
            with torch.autocast(hidden.device.type, enabled=False):
                _, _, _, *grads = _pass_for(ctx.opts)(
                    *_for_matmul((hidden, weight, bias), ctx.opts.matmul_dtype),
                    labels,
                    class_weights,
                    grad_out.to(row_scale.dtype) * row_scale,
                    tuple(ctx.needs_input_grad[:3]),
                    ctx.opts,
                )
        grad_h, grad_w, grad_b = grads
        hidden_dtype, weight_dtype = ctx.dtypes
        return (
            None if grad_h is None else grad_h.to(hidden_dtype),
            None if grad_w is None else grad_w.to(weight_dtype),
            None if grad_b is None else grad_b.to(weight_dtype),
            None,
            None,
            None,
            None,
            None,
        )


def default_chunk_size(n_rows: int, n_vocab: int, device: torch.device | str = "cpu") -> int:
    """Rows per chunk when ``chunk_size=None``: the largest power of two keeping at most
    2**27 (CPU) or 2**29 (CUDA) logits alive, and no more than ``n_rows`` rounded up to a power of two."""
    budget = _CHUNK_ELEMENTS["cuda" if torch.device(device).type == "cuda" else "cpu"]
    rows = max(1, budget // max(n_vocab, 1))
    rows = 1 << (rows.bit_length() - 1)
    return min(rows, 1 << max(n_rows - 1, 0).bit_length())


def default_block_size(n_rows: int, n_vocab: int) -> int:
    """Vocabulary columns per block of the vocab sweep when ``block_size=None``: the largest power of
    two keeping at most 2**24 logits alive (at least 128 columns), and no more than ``n_vocab``
    rounded up to a power of two."""
    cols = max(_MIN_BLOCK_COLUMNS, _BLOCK_ELEMENTS // max(n_rows, 1))
    cols = 1 << (cols.bit_length() - 1)
    return min(cols, 1 << max(n_vocab - 1, 0).bit_length())


def _resolve_sweep(sweep: str, weight: torch.Tensor) -> str:
    """``"auto"``: the vocab sweep for a 16-bit weight that needs its gradient, else the rows sweep."""
    if sweep != "auto":
        return sweep
    wants_grad = weight.requires_grad and torch.is_grad_enabled()
    return "vocab" if wants_grad and weight.dtype in (torch.float16, torch.bfloat16) else "rows"


def _matmul_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype | None:
    """The autocast dtype when autocast is on for this device and both inputs are autocast-eligible
    floats (the matmuls then run in it), else None (they run in the inputs' dtype)."""
    device_type = hidden.device.type
    eligible = (torch.float32, torch.float16, torch.bfloat16)
    if torch.is_autocast_enabled(device_type) and hidden.dtype in eligible and weight.dtype in eligible:
        return torch.get_autocast_dtype(device_type)
    return None


def _check_inputs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    bias: torch.Tensor | None,
    token_weights: torch.Tensor | None,
    class_weights: torch.Tensor | None,
    autocast: bool,
) -> None:
    if not hidden.is_floating_point() or hidden.dim() < 1:
        raise TypeError(
            f"hidden must be a floating tensor [..., H], got {hidden.dtype} {tuple(hidden.shape)}"
        )
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"weight must be [V, {hidden.shape[-1]}] to match hidden, got {tuple(weight.shape)}")
    if weight.dtype != hidden.dtype and not autocast:
        raise TypeError(
            f"weight dtype must equal hidden dtype {hidden.dtype} (outside autocast), got {weight.dtype}"
        )
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels must be an int64 or int32 tensor, got {labels.dtype}")
    if labels.shape != hidden.shape[:-1]:
        raise ValueError(f"labels must have shape {tuple(hidden.shape[:-1])}, got {tuple(labels.shape)}")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"bias must be [{weight.shape[0]}], got {tuple(bias.shape)}")
    if bias is not None and bias.dtype != weight.dtype and not autocast:
        raise ValueError(f"bias must be of dtype {weight.dtype}, got {bias.dtype}")
    if token_weights is not None:
        if token_weights.shape != labels.shape:
            raise ValueError(
                f"token_weights must have the shape of labels {tuple(labels.shape)}, got {tuple(token_weights.shape)}"
            )
        if token_weights.requires_grad:
            raise ValueError("token_weights must not require grad: the loss does not differentiate them")
    if class_weights is not None:
        if class_weights.shape != weight.shape[:1] or not class_weights.is_floating_point():
            raise ValueError(
                f"class_weights must be a floating [{weight.shape[0]}] tensor, got "
                f"{class_weights.dtype} {tuple(class_weights.shape)}"
            )
        if class_weights.requires_grad:
            raise ValueError("class_weights must not require grad: the loss does not differentiate them")


def _check_label_range(labels: torch.Tensor, n_vocab: int, ignore_index: int, check: bool | None) -> None:
    """Labels outside ``[0, V)`` other than ``ignore_index``: a ValueError (``check=True``, or CPU
    labels with ``check=None``), an asynchronous device-side assert (CUDA labels with ``check=None``:
    no host sync), or nothing (``check=False``)."""
    if check is False:
        return
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= n_vocab))
    if check is None and labels.device.type != "cpu":
        torch._assert_async(
            ~bad.any(),
            f"linear_cross_entropy: labels must be in [0, {n_vocab}) or ignore_index={ignore_index}",
        )
        return
    if bool(bad.any()):
        raise ValueError(
            f"labels must be in [0, {n_vocab}) or ignore_index={ignore_index}, got {labels[bad][0].item()}"
        )


def _shift_labels(labels: torch.Tensor, shift: int, ignore_index: int) -> torch.Tensor:
    """``labels[..., t + shift]`` at position ``t``, ``ignore_index`` past the end (a copy of the labels
    only: the hidden states are read in place)."""
    if labels.dim() == 0:
        raise ValueError("shift needs labels with a sequence dimension, got a 0-d tensor")
    return F.pad(labels[..., shift:], (0, min(shift, labels.shape[-1])), value=ignore_index)


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
    class_weights: torch.Tensor | None = None,
    shift: int = 0,
    return_z_loss: bool = False,
    return_lse: bool = False,
    return_accuracy: bool = False,
    check_labels: bool | None = None,
    chunk_size: int | None = None,
    sweep: Sweep = "auto",
    block_size: int | None = None,
    backend: Backend = "auto",
) -> torch.Tensor | LinearCrossEntropyOutput:
    """Cross-entropy of ``hidden @ weight.T (+ bias)`` against ``labels``, chunk by chunk.

    Args:
        hidden: ``[..., H]`` final hidden states (any layout; fp32, fp16, bf16 or fp64).
        weight: ``[V, H]`` output projection (an ``lm_head`` or a tied embedding), same dtype
            (under autocast both are cast to the autocast dtype for the matmuls).
        labels: ``[...]`` (the shape of ``hidden`` without its last dim) target ids.
        bias: optional ``[V]`` output bias.
        ignore_index: label value whose rows are skipped.
        reduction: ``"mean"`` (weighted mean over valid rows, 0 when none), ``"sum"`` or ``"none"``.
        label_smoothing: ``eps`` in ``[0, 1)``, as in ``torch.nn.functional.cross_entropy``.
        z_loss: coefficient of the ``logsumexp**2`` penalty (PaLM), ``>= 0``.
        softcap: when set, logits become ``softcap * tanh(logits / softcap)`` (Gemma 2).
        token_weights: optional ``[...]`` non-negative per-row weights (not differentiated).
        class_weights: optional ``[V]`` non-negative per-class weights, with the meaning (also
            together with ``label_smoothing``) of ``torch.nn.functional.cross_entropy(weight=)``.
        shift: predict ``labels[..., t + shift]`` from ``hidden[..., t, :]`` (1 for a causal LM whose
            labels are its input ids); the last ``shift`` positions count as ignored. Only the labels
            are copied, never the hidden states.
        return_z_loss: also return the z-loss part of ``loss``, reduced like it (detached).
        return_lse: also return the per-row log-sum-exp of the (soft-capped) logits, shaped like
            ``labels`` (detached).
        return_accuracy: also return the token accuracy: the fraction of valid rows whose argmax
            (first maximum) is the label, or for ``"none"`` 1.0/0.0 per row (0 on ignored rows).
        check_labels: ``True``: raise ValueError for labels outside ``[0, V)`` (a host sync on CUDA);
            ``None`` (default): raise on CPU, an asynchronous device-side assert on CUDA (no sync);
            ``False``: no check (out-of-range labels then count as class 0 in the kernel).
        chunk_size: rows per chunk of the rows sweep; default `default_chunk_size` (memory vs
            speed: see docs/ops.md).
        sweep: how the gradients are made. ``"rows"``: chunks of rows, the weight gradient
            accumulated in fp32 across them (three matmuls; above the inputs: the fp32 weight
            gradient, its copy in the weight's dtype, one chunk). ``"vocab"``: blocks of the
            vocabulary, each block's weight gradient one matmul over all rows, written once in the
            weight's dtype (four matmuls; above the inputs: the weight gradient in its own dtype,
            one block, an fp32 ``[N, H]``). ``"auto"`` (default): ``"vocab"`` for a 16-bit weight
            that needs its gradient (there the fp32 accumulator would be twice the floor), else
            ``"rows"``. Both are fp32-accumulated and match the float64 reference alike. A call
            without gradients (``torch.no_grad``) goes over rows whatever the sweep.
        block_size: vocabulary columns per block of the vocab sweep; default `default_block_size`.
        backend: ``"auto"``, ``"triton"`` or ``"torch"`` (see ``cooper_lib.ops.dispatch``).

    Returns:
        A scalar fp32 (fp64 for fp64 inputs) loss, or losses shaped like ``labels`` for
        ``reduction="none"``; a `LinearCrossEntropyOutput` when any ``return_*`` flag is set. When
        gradients are off (``torch.no_grad``, ``inference_mode``, or no input requiring grad) only
        the forward runs: no gradient buffer is made.
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
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}")
    if sweep not in _SWEEPS:
        raise ValueError(f"sweep must be one of {_SWEEPS}, got {sweep!r}")
    if not isinstance(shift, int) or shift < 0:
        raise ValueError(f"shift must be an int >= 0, got {shift!r}")
    autocast_dtype = _matmul_dtype(hidden, weight)
    _check_inputs(hidden, weight, labels, bias, token_weights, class_weights, autocast_dtype is not None)
    matmul_dtype = autocast_dtype or hidden.dtype
    if shift:
        labels = _shift_labels(labels, shift, ignore_index)
    _check_label_range(labels, weight.shape[0], ignore_index, check_labels)
    chosen = resolve_backend(backend, hidden, weight, labels, bias, token_weights, class_weights)

    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    flat_labels = labels.reshape(-1).long().contiguous()
    acc_dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    valid = flat_labels != ignore_index
    row_weight = valid.to(acc_dtype)
    if token_weights is not None:
        row_weight = row_weight * token_weights.reshape(-1).to(acc_dtype)
    cw = None if class_weights is None else class_weights.to(acc_dtype).contiguous()
    if reduction == "mean":
        norm = row_weight if cw is None else row_weight * cw[torch.where(valid, flat_labels, 0)]
        total = norm.sum()
        row_scale = row_weight / torch.where(total > 0, total, 1.0)
    else:
        row_scale = row_weight
    opts = _CEOptions(
        ignore_index=ignore_index,
        label_smoothing=float(label_smoothing),
        z_loss=float(z_loss),
        softcap=None if softcap is None else float(softcap),
        chunk_size=chunk_size or default_chunk_size(flat_hidden.shape[0], weight.shape[0], hidden.device),
        backend=chosen,
        matmul_dtype=matmul_dtype,
        sweep=_resolve_sweep(sweep, weight),
        block_size=block_size or default_block_size(flat_hidden.shape[0], weight.shape[0]),
        weight_grad_dtype=weight.dtype,
    )
    scalar = reduction != "none"
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias)):
        loss, lse, hits = LinearCrossEntropyFunction.apply(
            flat_hidden, weight, bias, flat_labels, row_scale, cw, scalar, opts
        )
    else:  # forward only: no autograd node, no gradient buffers
        with torch.no_grad(), torch.autocast(hidden.device.type, enabled=False):
            losses, lse, hits, *_ = _chunked_pass(
                *_for_matmul((flat_hidden, weight, bias), matmul_dtype),
                flat_labels,
                cw,
                None,
                (False, False, False),
                opts,
            )
            loss = (losses * row_scale).sum() if scalar else losses * row_scale
    if not scalar:
        loss = loss.reshape(labels.shape)
    if not (return_z_loss or return_lse or return_accuracy):
        return loss
    with torch.no_grad():
        z_part = acc = None
        if return_z_loss:
            z_rows = z_loss * torch.where(valid, lse.square(), 0.0) * row_scale
            z_part = z_rows.sum() if scalar else z_rows.reshape(labels.shape)
        if return_accuracy:
            hits = hits.to(acc_dtype)
            acc = hits.sum() / valid.sum().clamp(min=1) if scalar else hits.reshape(labels.shape)
        return LinearCrossEntropyOutput(loss, z_part, lse.reshape(labels.shape) if return_lse else None, acc)


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
    class_weights: torch.Tensor | None = None,
    shift: int = 0,
    return_z_loss: bool = False,
    return_lse: bool = False,
    return_accuracy: bool = False,
) -> torch.Tensor | LinearCrossEntropyOutput:
    """The same loss with the full logits materialised (plain autograd); for tests and benchmarks.

    Computes in fp32, or in fp64 when the inputs are fp64. ``shift`` slices the hidden states and
    the labels (the fused op shifts the labels only).
    """
    dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    all_logits = F.linear(hidden, weight, bias).to(dtype)
    if softcap is not None:
        all_logits = softcap * torch.tanh(all_logits / softcap)
    lse_all = torch.logsumexp(all_logits, dim=-1)
    logits, targets, tw = all_logits, labels, token_weights
    if shift:
        logits, targets = all_logits[..., : labels.shape[-1] - shift, :], labels[..., shift:]
        tw = None if token_weights is None else token_weights[..., : labels.shape[-1] - shift]
    n_vocab = weight.shape[0]
    flat = targets.reshape(-1)
    logits = logits.reshape(-1, n_vocab)
    valid = flat != ignore_index
    safe = torch.where(valid, flat, 0)
    cw = (
        torch.ones(n_vocab, dtype=dtype, device=hidden.device)
        if class_weights is None
        else class_weights.to(dtype)
    )
    log_probs = torch.log_softmax(logits, dim=-1)
    nll = -log_probs.gather(1, safe.unsqueeze(1)).squeeze(1) * cw[safe]
    smooth = -(log_probs * cw).sum(dim=-1) / n_vocab
    z_rows = z_loss * torch.logsumexp(logits, dim=-1).square()
    row_weight = valid.to(dtype)
    if tw is not None:
        row_weight = row_weight * tw.reshape(-1).to(dtype)
    rows = torch.where(valid, (1.0 - label_smoothing) * nll + label_smoothing * smooth + z_rows, 0.0)
    z_rows = torch.where(valid, z_rows, 0.0)
    denom = (row_weight * cw[safe]).sum()

    def reduce(per_row: torch.Tensor) -> torch.Tensor:
        per_row = per_row * row_weight
        if reduction == "none":
            out = per_row.reshape(targets.shape)
            return F.pad(out, (0, labels.shape[-1] - out.shape[-1])) if shift else out
        if reduction == "sum":
            return per_row.sum()
        return per_row.sum() / torch.where(denom > 0, denom, 1.0)

    loss = reduce(rows)
    if not (return_z_loss or return_lse or return_accuracy):
        return loss
    hits = (valid & (logits.argmax(dim=-1) == flat)).to(dtype)
    if reduction == "none":
        accuracy = hits.reshape(targets.shape)
        accuracy = F.pad(accuracy, (0, labels.shape[-1] - accuracy.shape[-1])) if shift else accuracy
    else:
        accuracy = hits.sum() / valid.sum().clamp(min=1)
    return LinearCrossEntropyOutput(
        loss,
        reduce(z_rows).detach() if return_z_loss else None,
        lse_all.detach() if return_lse else None,
        accuracy if return_accuracy else None,
    )
