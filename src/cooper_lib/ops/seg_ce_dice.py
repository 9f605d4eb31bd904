"""Segmentation loss: pixel cross-entropy plus soft Dice, both from one softmax.

Inputs: ``logits [B, C, *spatial]`` (usually ``[B, C, H, W]``) and integer ``target [B, *spatial]``
with values in ``[0, C)`` or ``ignore_index``. With ``p = softmax(logits)`` over the class dim, the
valid pixels ``Ω`` (target != ignore_index) and ``y`` the one-hot target:

    ce   = mean over Ω of -log p[y]
    I_c  = sum over Ω of p_c * y_c,   P_c = sum over Ω of p_c,   G_c = sum over Ω of y_c
    dice = 1 - mean over the classes present in the target (G_c > 0) of 2 I_c / (P_c + G_c)
    loss = ce + dice_weight * dice

The Dice sums run over the whole batch (one set of per-class sums, not one per image), and only
classes present in the target are averaged, so no smoothing constant is needed: their denominators
are at least 1. Classes absent from the target are pushed down by the cross-entropy alone. With no
valid pixel both terms are 0 and the gradients are 0.

The Triton path makes two passes over the logits: one computing the softmax and the per-class sums
(each program walks a contiguous run of pixels and writes one partial, so the result is
deterministic), one recomputing the softmax and writing the gradient. Neither the probabilities
nor the one-hot target are ever stored.
"""

from __future__ import annotations

import torch

from cooper_lib.ops.dispatch import HAS_TRITON, Backend, resolve_backend, tl, triton

__all__ = ["SegCEDiceFunction", "seg_ce_dice_loss", "seg_ce_dice_loss_reference"]

MAX_TRITON_CLASSES = 4096
_PROGRAMS_TARGET = 1024  # programs per stats launch, spread over the batch


if HAS_TRITON:

    @triton.jit
    def _softmax_tile(
        logits_ptr, target_ptr, image, offs, n_pixels, n_classes, ignore_index, BLOCK_C: tl.constexpr
    ):
        """Softmax over classes of a ``[BLOCK_C, BLOCK_P]`` tile, its flat indices, one-hot mask,
        validity and per-pixel NLL."""
        cls = tl.arange(0, BLOCK_C)
        cls_ok = cls < n_classes
        in_image = offs < n_pixels
        y = tl.load(target_ptr + image * n_pixels + offs, mask=in_image, other=ignore_index)
        valid = in_image & (y != ignore_index)
        idx = image * n_classes * n_pixels + cls[:, None] * n_pixels + offs[None, :]
        z = tl.load(logits_ptr + idx, mask=cls_ok[:, None] & in_image[None, :], other=0.0).to(tl.float32)
        z = tl.where(cls_ok[:, None], z, -float("inf"))
        z_max = tl.max(z, axis=0)
        e = tl.exp(z - z_max[None, :])
        total = tl.sum(e, axis=0)
        p = e / total[None, :]
        is_y = (cls[:, None] == y[None, :]) & valid[None, :]
        nll = tl.log(total) + z_max - tl.sum(tl.where(is_y, z, 0.0), axis=0)
        return idx, cls, cls_ok, in_image, valid, p, is_y, nll

    @triton.jit
    def _seg_stats_kernel(
        logits_ptr,
        target_ptr,
        stats_ptr,
        ce_ptr,
        n_pixels,
        n_classes,
        ignore_index,
        blocks_per_program,
        BLOCK_C: tl.constexpr,
        BLOCK_P: tl.constexpr,
    ):
        """Per program: summed NLL and per-class (P_c, I_c, G_c) over its run of pixel blocks."""
        image = tl.program_id(0).to(tl.int64)
        slot = image * tl.num_programs(1) + tl.program_id(1)
        acc_p = tl.zeros((BLOCK_C,), dtype=tl.float32)
        acc_i = tl.zeros((BLOCK_C,), dtype=tl.float32)
        acc_g = tl.zeros((BLOCK_C,), dtype=tl.float32)
        ce = 0.0
        for it in range(0, blocks_per_program):
            start = (tl.program_id(1) * blocks_per_program + it) * BLOCK_P
            offs = start + tl.arange(0, BLOCK_P)
            _, cls, _, _, valid, p, is_y, nll = _softmax_tile(
                logits_ptr, target_ptr, image, offs, n_pixels, n_classes, ignore_index, BLOCK_C
            )
            ce += tl.sum(tl.where(valid, nll, 0.0), axis=0)
            acc_p += tl.sum(tl.where(valid[None, :], p, 0.0), axis=1)
            acc_i += tl.sum(tl.where(is_y, p, 0.0), axis=1)
            acc_g += tl.sum(is_y.to(tl.float32), axis=1)
        cls = tl.arange(0, BLOCK_C)
        row = stats_ptr + slot * 3 * BLOCK_C
        tl.store(row + cls, acc_p)
        tl.store(row + BLOCK_C + cls, acc_i)
        tl.store(row + 2 * BLOCK_C + cls, acc_g)
        tl.store(ce_ptr + slot, ce)

    @triton.jit
    def _seg_grad_kernel(
        logits_ptr,
        target_ptr,
        coef_ptr,
        grad_ptr,
        n_pixels,
        n_classes,
        ignore_index,
        BLOCK_C: tl.constexpr,
        BLOCK_P: tl.constexpr,
    ):
        """dL/dz = ce_scale * (p - y) + p * (a - sum_c p_c a_c), a_c = alpha_c + beta_c * y_c."""
        image = tl.program_id(0).to(tl.int64)
        offs = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
        idx, cls, cls_ok, in_image, valid, p, is_y, _ = _softmax_tile(
            logits_ptr, target_ptr, image, offs, n_pixels, n_classes, ignore_index, BLOCK_C
        )
        alpha = tl.load(coef_ptr + cls, mask=cls_ok, other=0.0)
        beta = tl.load(coef_ptr + n_classes + cls, mask=cls_ok, other=0.0)
        ce_scale = tl.load(coef_ptr + 2 * n_classes)
        onehot = is_y.to(tl.float32)
        a = alpha[:, None] + beta[:, None] * onehot
        pa = tl.sum(p * a, axis=0)
        grad = ce_scale * (p - onehot) + p * (a - pa[None, :])
        grad = tl.where(valid[None, :], grad, 0.0)
        tl.store(grad_ptr + idx, grad, mask=cls_ok[:, None] & in_image[None, :])


def _check_inputs(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> None:
    if not logits.is_floating_point() or logits.dim() < 2:
        raise TypeError(
            f"logits must be a floating tensor [B, C, ...], got {logits.dtype} {tuple(logits.shape)}"
        )
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"target must be an integer tensor of class ids, got {target.dtype}")
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target must have shape {expected} (logits without the class dim), got {tuple(target.shape)}"
        )
    n_classes = logits.shape[1]
    bad = (target != ignore_index) & ((target < 0) | (target >= n_classes))
    if bool(bad.any()):
        raise ValueError(
            f"target values must be in [0, {n_classes}) or ignore_index={ignore_index}, got {target[bad][0].item()}"
        )


def _dice_from_sums(
    inter: torch.Tensor, prob_sum: torch.Tensor, gt_sum: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dice term and the present-class mask from the per-class sums."""
    present = gt_sum > 0
    dice = 2.0 * inter / torch.where(present, prob_sum + gt_sum, 1.0)
    n_present = present.sum()
    mean_dice = torch.where(present, dice, 0.0).sum() / n_present.clamp_min(1)
    return torch.where(n_present > 0, 1.0 - mean_dice, 0.0), present


def seg_ce_dice_loss_reference(
    logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = 255, dice_weight: float = 1.0
) -> torch.Tensor:
    """The loss in plain PyTorch (autograd); the torch backend of :func:`seg_ce_dice_loss`.

    Computes in fp32 (fp64 for fp64 logits); keeps ``log_softmax`` and ``softmax`` of the logits.
    """
    batch, n_classes = logits.shape[:2]
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    log_probs = torch.log_softmax(logits.reshape(batch, n_classes, -1).to(dtype), dim=1)
    flat = target.reshape(batch, -1)
    valid = flat != ignore_index
    safe = torch.where(valid, flat, 0).long()
    count = valid.sum()
    nll = -log_probs.gather(1, safe.unsqueeze(1)).squeeze(1)
    ce = torch.where(valid, nll, 0.0).sum() / count.clamp_min(1)
    probs = log_probs.exp()
    prob_sum = torch.where(valid.unsqueeze(1), probs, 0.0).sum(dim=(0, 2))
    p_true = probs.gather(1, safe.unsqueeze(1)).squeeze(1)
    inter = torch.zeros(n_classes, dtype=dtype, device=logits.device).index_add(0, safe[valid], p_true[valid])
    gt_sum = torch.bincount(safe[valid], minlength=n_classes).to(dtype)
    dice, _ = _dice_from_sums(inter, prob_sum, gt_sum)
    return ce + dice_weight * dice


def _tiles(n_classes: int) -> tuple[int, int]:
    block_c = triton.next_power_of_2(n_classes)
    block_p = max(16, min(128, 8192 // block_c))
    return block_c, block_p


class SegCEDiceFunction(torch.autograd.Function):
    """CE + Dice over contiguous ``logits [B, C, P]`` and int64 ``target [B, P]``; Triton only."""

    @staticmethod
    def forward(
        ctx, logits: torch.Tensor, target: torch.Tensor, ignore_index: int, dice_weight: float
    ) -> torch.Tensor:
        batch, n_classes, n_pixels = logits.shape
        block_c, block_p = _tiles(n_classes)
        n_blocks = triton.cdiv(n_pixels, block_p)
        programs = max(1, min(n_blocks, triton.cdiv(_PROGRAMS_TARGET, batch)))
        blocks_per_program = triton.cdiv(n_blocks, programs)
        programs = triton.cdiv(n_blocks, blocks_per_program)
        stats = torch.empty(batch, programs, 3, block_c, dtype=torch.float32, device=logits.device)
        ce_parts = torch.empty(batch, programs, dtype=torch.float32, device=logits.device)
        _seg_stats_kernel[(batch, programs)](
            logits,
            target,
            stats,
            ce_parts,
            n_pixels,
            n_classes,
            ignore_index,
            blocks_per_program,
            BLOCK_C=block_c,
            BLOCK_P=block_p,
        )
        prob_sum, inter, gt_sum = stats.double().sum(dim=(0, 1))[:, :n_classes].unbind(dim=0)
        count = gt_sum.sum()
        ce = ce_parts.double().sum() / count.clamp_min(1)
        dice, present = _dice_from_sums(inter, prob_sum, gt_sum)
        # d dice / d p_c at a valid pixel = alpha_c + beta_c * y_c over the present classes.
        denom = torch.where(present, prob_sum + gt_sum, 1.0)
        weight = torch.where(present, dice_weight / present.sum().clamp_min(1), 0.0)
        alpha = weight * 2.0 * inter / denom.square()
        beta = -weight * 2.0 / denom
        ce_scale = torch.where(count > 0, 1.0 / count.clamp_min(1), 0.0)
        ctx.save_for_backward(logits, target, torch.cat([alpha, beta, ce_scale.reshape(1)]))
        ctx.ignore_index, ctx.tiles = ignore_index, (block_c, block_p)
        return (ce + dice_weight * dice).float()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, target, coef = ctx.saved_tensors
        batch, n_classes, n_pixels = logits.shape
        block_c, block_p = ctx.tiles
        grad = torch.empty_like(logits)
        _seg_grad_kernel[(batch, triton.cdiv(n_pixels, block_p))](
            logits,
            target,
            (coef * grad_out.double()).float().contiguous(),
            grad,
            n_pixels,
            n_classes,
            ctx.ignore_index,
            BLOCK_C=block_c,
            BLOCK_P=block_p,
        )
        return grad, None, None, None


def seg_ce_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = 255,
    dice_weight: float = 1.0,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Pixel cross-entropy plus ``dice_weight`` times soft Dice (formulas in the module docstring).

    Args:
        logits: ``[B, C, H, W]`` (or ``[B, C, *spatial]``) class scores.
        target: integer ``[B, H, W]`` class ids in ``[0, C)``, or ``ignore_index``.
        ignore_index: target value of pixels that count in neither term.
        dice_weight: weight of the Dice term, ``>= 0``.
        backend: ``"auto"``, ``"triton"`` or ``"torch"``.

    Returns:
        Scalar loss (fp32; fp64 for fp64 logits on the torch backend).
    """
    if dice_weight < 0:
        raise ValueError(f"dice_weight must be >= 0, got {dice_weight}")
    _check_inputs(logits, target, ignore_index)
    if resolve_backend(backend, logits, target) == "torch":
        return seg_ce_dice_loss_reference(logits, target, ignore_index=ignore_index, dice_weight=dice_weight)
    if logits.shape[1] > MAX_TRITON_CLASSES:
        raise ValueError(
            f"the triton backend supports at most {MAX_TRITON_CLASSES} classes, got {logits.shape[1]}"
        )
    batch, n_classes = logits.shape[:2]
    flat_logits = logits.reshape(batch, n_classes, -1).contiguous()
    flat_target = target.reshape(batch, -1).long().contiguous()
    return SegCEDiceFunction.apply(flat_logits, flat_target, int(ignore_index), float(dice_weight))
