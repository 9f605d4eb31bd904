"""Depth losses with per-image reductions: scale-invariant log (SILog) and scale-and-shift-invariant.

Inputs: ``pred``, ``target`` ``[B, H, W]`` or ``[B, 1, H, W]`` depths and a boolean ``mask`` of the
same shape (True = valid pixel). Statistics are taken per image over its valid pixels, the per-image
losses are averaged over the images that have at least one valid pixel; an image without valid
pixels contributes nothing, and a batch without any gives 0 with zero gradients (never NaN).

SILog (Eigen et al. 2014), with ``d = log(max(pred, 1e-6)) - log(max(target, 1e-6))`` over the
``n`` valid pixels of an image:

    silog = sqrt(max(mean(d**2) - lambd * mean(d)**2, 0) + 1e-8)

The ``1e-8`` keeps the gradient of the square root finite when the inner term is 0 (a perfect
prediction); it adds at most 1e-4 to the loss. No factor 10 is applied.

Scale-and-shift-invariant (MiDaS-style): per image, ``s, t = argmin sum (s * pred + t - target)**2``
over the valid pixels (closed form ``s = cov(pred, target) / var(pred)``, ``t = mean(target) -
s * mean(pred)``), then ``ssi = mean(|s * pred + t - target|)`` over the valid pixels. Gradients
flow through ``s`` and ``t``. When ``var(pred) <= 1e-6 * mean(pred**2)`` (a constant prediction,
or a single valid pixel) the fit is degenerate: ``s = 0``, ``t = mean(target)``, so that image's
loss does not depend on ``pred`` and its gradient is 0.

The Triton path runs three kinds of launches over a ``(B, blocks)`` grid, each program reading one
block of one image: partial sums, a torch reduction of the partials to per-image scalars, then an
elementwise gradient. PyTorch's own reductions are used on every other device.
"""

from __future__ import annotations

import torch

from cooper_lib.ops.dispatch import HAS_TRITON, Backend, resolve_backend, tl, triton

__all__ = [
    "SILogFunction",
    "SSIDepthFunction",
    "silog_loss",
    "silog_loss_reference",
    "ssi_depth_loss",
    "ssi_depth_loss_reference",
]

DEPTH_EPS = 1e-6
SQRT_EPS = 1e-8
DEGENERATE_REL_VAR = 1e-6
_BLOCK = 1024


if HAS_TRITON:

    @triton.jit
    def _load_block(pred_ptr, target_ptr, mask_ptr, n_pixels, BLOCK: tl.constexpr):
        """Flat offsets, in-image flags, validity, pred and target (fp32) of block ``program_id(1)``
        of image ``program_id(0)``."""
        image = tl.program_id(0).to(tl.int64)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        in_image = offs < n_pixels
        base = image * n_pixels
        valid = (tl.load(mask_ptr + base + offs, mask=in_image, other=0) != 0) & in_image
        p = tl.load(pred_ptr + base + offs, mask=valid, other=1.0).to(tl.float32)
        t = tl.load(target_ptr + base + offs, mask=valid, other=1.0).to(tl.float32)
        return base + offs, in_image, valid, p, t

    @triton.jit
    def _silog_partials_kernel(pred_ptr, target_ptr, mask_ptr, out_ptr, n_pixels, BLOCK: tl.constexpr):
        """Per block: (valid count, sum d, sum d**2) with d the log ratio."""
        _, _, valid, p, t = _load_block(pred_ptr, target_ptr, mask_ptr, n_pixels, BLOCK)
        d = tl.where(valid, tl.log(tl.maximum(p, 1e-6)) - tl.log(tl.maximum(t, 1e-6)), 0.0)
        slot = out_ptr + (tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)) * 3
        tl.store(slot, tl.sum(valid.to(tl.float32), axis=0))
        tl.store(slot + 1, tl.sum(d, axis=0))
        tl.store(slot + 2, tl.sum(d * d, axis=0))

    @triton.jit
    def _silog_grad_kernel(pred_ptr, target_ptr, mask_ptr, coef_ptr, grad_ptr, n_pixels, BLOCK: tl.constexpr):
        """grad = (a * d - c) / pred on valid pixels above the clamp, with (a, c) per image."""
        offs, in_image, valid, p, t = _load_block(pred_ptr, target_ptr, mask_ptr, n_pixels, BLOCK)
        a = tl.load(coef_ptr + tl.program_id(0) * 2)
        c = tl.load(coef_ptr + tl.program_id(0) * 2 + 1)
        d = tl.log(tl.maximum(p, 1e-6)) - tl.log(tl.maximum(t, 1e-6))
        grad = tl.where(valid & (p >= 1e-6), (a * d - c) / p, 0.0)
        tl.store(grad_ptr + offs, grad, mask=in_image)

    @triton.jit
    def _ssi_moments_kernel(pred_ptr, target_ptr, mask_ptr, out_ptr, n_pixels, BLOCK: tl.constexpr):
        """Per block: count, means of pred and target, centred sum of squares and co-moment."""
        _, _, valid, p, t = _load_block(pred_ptr, target_ptr, mask_ptr, n_pixels, BLOCK)
        n = tl.sum(valid.to(tl.float32), axis=0)
        n_safe = tl.maximum(n, 1.0)
        p_mean = tl.sum(tl.where(valid, p, 0.0), axis=0) / n_safe
        t_mean = tl.sum(tl.where(valid, t, 0.0), axis=0) / n_safe
        pc = tl.where(valid, p - p_mean, 0.0)
        tc = tl.where(valid, t - t_mean, 0.0)
        slot = out_ptr + (tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)) * 5
        tl.store(slot, n)
        tl.store(slot + 1, p_mean)
        tl.store(slot + 2, t_mean)
        tl.store(slot + 3, tl.sum(pc * pc, axis=0))
        tl.store(slot + 4, tl.sum(pc * tc, axis=0))

    @triton.jit
    def _ssi_residual_kernel(pred_ptr, target_ptr, mask_ptr, fit_ptr, out_ptr, n_pixels, BLOCK: tl.constexpr):
        """Per block: sum |r|, sum sign(r) * pred, sum sign(r) with r = s * pred + t - target."""
        _, _, valid, p, t = _load_block(pred_ptr, target_ptr, mask_ptr, n_pixels, BLOCK)
        s = tl.load(fit_ptr + tl.program_id(0) * 2)
        shift = tl.load(fit_ptr + tl.program_id(0) * 2 + 1)
        r = s * p + shift - t
        sign = tl.where(valid, tl.where(r > 0, 1.0, tl.where(r < 0, -1.0, 0.0)), 0.0)
        slot = out_ptr + (tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)) * 3
        tl.store(slot, tl.sum(tl.where(valid, tl.abs(r), 0.0), axis=0))
        tl.store(slot + 1, tl.sum(sign * p, axis=0))
        tl.store(slot + 2, tl.sum(sign, axis=0))

    @triton.jit
    def _ssi_grad_kernel(pred_ptr, target_ptr, mask_ptr, coef_ptr, grad_ptr, n_pixels, BLOCK: tl.constexpr):
        """grad = k * (sign(r) * s - u * (r + s * pred) - v * s) on valid pixels, per-image (s, t, u, v, k)."""
        offs, in_image, valid, p, t = _load_block(pred_ptr, target_ptr, mask_ptr, n_pixels, BLOCK)
        row = coef_ptr + tl.program_id(0) * 5
        s = tl.load(row)
        shift = tl.load(row + 1)
        u = tl.load(row + 2)
        v = tl.load(row + 3)
        k = tl.load(row + 4)
        r = s * p + shift - t
        sign = tl.where(r > 0, 1.0, tl.where(r < 0, -1.0, 0.0))
        grad = tl.where(valid, k * (sign * s - u * (r + s * p) - v * s), 0.0)
        tl.store(grad_ptr + offs, grad, mask=in_image)


def _flatten(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check shapes and dtypes, return ``[B, P]`` views (copies only when the layout needs it)."""
    if not pred.is_floating_point() or not target.is_floating_point():
        raise TypeError(f"pred and target must be floating tensors, got {pred.dtype} and {target.dtype}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = valid pixel), got {mask.dtype}")
    if pred.dim() not in (3, 4) or (pred.dim() == 4 and pred.shape[1] != 1):
        raise ValueError(f"pred must be [B, H, W] or [B, 1, H, W], got {tuple(pred.shape)}")
    if target.shape != pred.shape or mask.shape != pred.shape:
        raise ValueError(
            f"target and mask must have the shape of pred {tuple(pred.shape)}, "
            f"got {tuple(target.shape)} and {tuple(mask.shape)}"
        )
    batch = pred.shape[0]
    return pred.reshape(batch, -1), target.reshape(batch, -1), mask.reshape(batch, -1)


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _mean_over_valid_images(per_image: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    has = count > 0
    n_images = has.sum()
    return torch.where(has, per_image, 0.0).sum() / n_images.clamp_min(1)


def silog_loss_reference(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, lambd: float = 0.85
) -> torch.Tensor:
    """SILog in plain PyTorch (autograd); the torch backend of :func:`silog_loss`."""
    p, t, m = _flatten(pred, target, mask)
    dtype = _compute_dtype(p)
    log_ratio = torch.log(p.to(dtype).clamp_min(DEPTH_EPS)) - torch.log(t.to(dtype).clamp_min(DEPTH_EPS))
    d = torch.where(m, log_ratio, 0.0)
    count = m.sum(dim=1)
    n = count.clamp_min(1).to(dtype)
    mean_d = d.sum(dim=1) / n
    mean_d2 = d.square().sum(dim=1) / n
    inner = (mean_d2 - lambd * mean_d.square()).clamp_min(0.0)
    return _mean_over_valid_images(torch.sqrt(inner + SQRT_EPS), count)


def ssi_depth_loss_reference(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scale-and-shift-invariant depth loss in plain PyTorch; the torch backend of :func:`ssi_depth_loss`."""
    p, t, m = _flatten(pred, target, mask)
    dtype = _compute_dtype(p)
    p, t, mf = p.to(dtype), t.to(dtype), m.to(dtype)
    count = m.sum(dim=1)
    n = count.clamp_min(1).to(dtype)
    p_mean = (mf * p).sum(dim=1) / n
    t_mean = (mf * t).sum(dim=1) / n
    p_centred = (p - p_mean.unsqueeze(1)) * mf
    var = p_centred.square().sum(dim=1)
    cov = (p_centred * (t - t_mean.unsqueeze(1))).sum(dim=1)
    degenerate = var <= DEGENERATE_REL_VAR * (mf * p.square()).sum(dim=1)
    scale = torch.where(degenerate, 0.0, cov / torch.where(degenerate, 1.0, var))
    shift = t_mean - scale * p_mean
    residual = scale.unsqueeze(1) * p + shift.unsqueeze(1) - t
    per_image = (residual.abs() * mf).sum(dim=1) / n
    return _mean_over_valid_images(per_image, count)


def _partials(kernel, flat: tuple[torch.Tensor, ...], n_out: int, *extra: torch.Tensor) -> torch.Tensor:
    """Launch a per-block reduction kernel; returns its ``[B, blocks, n_out]`` partials in fp64."""
    pred = flat[0]
    batch, n_pixels = pred.shape
    n_blocks = triton.cdiv(n_pixels, _BLOCK)
    out = torch.empty(batch, n_blocks, n_out, dtype=torch.float32, device=pred.device)
    kernel[(batch, n_blocks)](*flat, *extra, out, n_pixels, BLOCK=_BLOCK)
    return out.double()


def _elementwise_grad(kernel, flat: tuple[torch.Tensor, ...], coef: torch.Tensor) -> torch.Tensor:
    pred = flat[0]
    batch, n_pixels = pred.shape
    grad = torch.empty_like(pred)
    kernel[(batch, triton.cdiv(n_pixels, _BLOCK))](
        *flat, coef.float().contiguous(), grad, n_pixels, BLOCK=_BLOCK
    )
    return grad


class SILogFunction(torch.autograd.Function):
    """SILog over flat contiguous ``pred``, ``target`` ``[B, P]`` and a uint8 ``mask``; Triton only."""

    @staticmethod
    def forward(
        ctx, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, lambd: float
    ) -> torch.Tensor:
        flat = (pred, target, mask)
        count, sum_d, sum_d2 = _partials(_silog_partials_kernel, flat, 3).sum(dim=1).unbind(dim=1)
        n = count.clamp_min(1.0)
        mean_d = sum_d / n
        inner = sum_d2 / n - lambd * mean_d.square()
        root = torch.sqrt(inner.clamp_min(0.0) + SQRT_EPS)
        has = count > 0
        n_images = has.sum().clamp_min(1)
        # d root / d d_i = (d_i - lambd * mean_d) / (n * root); grad_pred_i = that / pred_i.
        a = torch.where(has & (inner >= 0), 1.0 / (n_images * n * root), 0.0)
        ctx.save_for_backward(pred, target, mask, torch.stack([a, a * lambd * mean_d], dim=1))
        return (torch.where(has, root, 0.0).sum() / n_images).float()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        pred, target, mask, coef = ctx.saved_tensors
        grad = _elementwise_grad(_silog_grad_kernel, (pred, target, mask), coef * grad_out.double())
        return grad, None, None, None


class SSIDepthFunction(torch.autograd.Function):
    """Scale-and-shift-invariant loss over flat ``[B, P]`` inputs and a uint8 ``mask``; Triton only."""

    @staticmethod
    def forward(ctx, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        flat = (pred, target, mask)
        n_k, p_k, t_k, pp_k, pt_k = _partials(_ssi_moments_kernel, flat, 5).unbind(dim=2)
        count = n_k.sum(dim=1)
        n = count.clamp_min(1.0)
        p_mean = (n_k * p_k).sum(dim=1) / n
        t_mean = (n_k * t_k).sum(dim=1) / n
        # Chan et al.'s pairwise combination of the per-block centred moments.
        dp = p_k - p_mean.unsqueeze(1)
        var = (pp_k + n_k * dp.square()).sum(dim=1)
        cov = (pt_k + n_k * dp * (t_k - t_mean.unsqueeze(1))).sum(dim=1)
        degenerate = var <= DEGENERATE_REL_VAR * (var + n * p_mean.square())
        safe_var = torch.where(degenerate, 1.0, var)
        scale = torch.where(degenerate, 0.0, cov / safe_var)
        shift = t_mean - scale * p_mean
        fit = torch.stack([scale, shift], dim=1).float().contiguous()
        abs_sum, sign_p, sign_sum = _partials(_ssi_residual_kernel, flat, 3, fit).sum(dim=1).unbind(dim=1)
        has = count > 0
        n_images = has.sum().clamp_min(1)
        # [u, v] = M^-1 [sum sign(r) p, sum sign(r)] with M the normal matrix of the fit.
        u = torch.where(degenerate, 0.0, (sign_p - p_mean * sign_sum) / safe_var)
        v = sign_sum / n - p_mean * u
        k = torch.where(has & ~degenerate, 1.0 / (n_images * n), 0.0)
        ctx.save_for_backward(pred, target, mask, torch.stack([scale, shift, u, v, k], dim=1))
        return (torch.where(has, abs_sum / n, 0.0).sum() / n_images).float()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        pred, target, mask, coef = ctx.saved_tensors
        coef = coef.clone()
        coef[:, 4] *= grad_out.double()
        return _elementwise_grad(_ssi_grad_kernel, (pred, target, mask), coef), None, None


def _triton_inputs(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if target.requires_grad:
        raise ValueError("target must not require grad on the triton backend (it differentiates pred only)")
    p, t, m = _flatten(pred, target, mask)
    return p.contiguous(), t.contiguous(), m.contiguous().view(torch.uint8)


def silog_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    lambd: float = 0.85,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Scale-invariant log loss, mean over images with valid pixels (formula in the module docstring).

    Args:
        pred: ``[B, H, W]`` or ``[B, 1, H, W]`` predicted depths (positive; clamped at 1e-6).
        target: ground-truth depths, same shape.
        mask: bool, same shape, True where the pixel counts.
        lambd: variance weight in ``[0, 1]``; 0 gives the RMS log error, 1 the pure scale-invariant term.
        backend: ``"auto"``, ``"triton"`` or ``"torch"``.

    Returns:
        Scalar loss (fp32; fp64 for fp64 inputs on the torch backend).
    """
    if not 0.0 <= lambd <= 1.0:
        raise ValueError(f"lambd must be in [0, 1], got {lambd}")
    _flatten(pred, target, mask)
    if resolve_backend(backend, pred, target, mask) == "torch":
        return silog_loss_reference(pred, target, mask, lambd)
    return SILogFunction.apply(*_triton_inputs(pred, target, mask), float(lambd))


def ssi_depth_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, backend: Backend = "auto"
) -> torch.Tensor:
    """Mean absolute error after per-image least-squares scale and shift of ``pred`` onto ``target``.

    Args:
        pred: ``[B, H, W]`` or ``[B, 1, H, W]`` predictions (depth, or disparity: any affine-ambiguous map).
        target: ground truth in the same space, same shape.
        mask: bool, same shape, True where the pixel counts.
        backend: ``"auto"``, ``"triton"`` or ``"torch"``.

    Returns:
        Scalar loss (fp32; fp64 for fp64 inputs on the torch backend).
    """
    _flatten(pred, target, mask)
    if resolve_backend(backend, pred, target, mask) == "torch":
        return ssi_depth_loss_reference(pred, target, mask)
    return SSIDepthFunction.apply(*_triton_inputs(pred, target, mask))
