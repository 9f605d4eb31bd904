"""Rectified-flow velocity loss: MSE between predicted and target velocity, COOPER's normalisation.

Inputs ``pred``, ``noise``, ``clean`` ``[..., D]`` (latent tokens of ``D`` dims), optional boolean
``mask [...]`` (True = token counts) and non-negative ``token_weights [...]``. With ``w_t`` the mask
times the weight (1 when neither is given):

    loss = sum_t w_t * mean_d (pred - (noise - clean))**2 / sum_t w_t

and 0 with zero gradients when ``sum_t w_t == 0``. The target velocity ``noise - clean`` is never
stored. ``token_weights`` are not differentiated.

The Triton kernel reads the three inputs once and, when a gradient will be needed, writes the
gradient of ``pred`` in the same pass (it is elementwise: ``2 w_t (pred - noise + clean) / (D sum w)``
does not depend on the reduction), so forward + backward move the minimum: three reads, one write,
then one in-place rescale by the upstream gradient.
"""

from __future__ import annotations

import torch

from cooper_lib.ops.dispatch import HAS_TRITON, Backend, resolve_backend, tl, triton

__all__ = ["FlowMatchingFunction", "flow_matching_loss", "flow_matching_loss_reference"]

_BLOCK_T = 16
_BLOCK_D = 128


if HAS_TRITON:

    @triton.jit
    def _flow_kernel(
        pred_ptr,
        noise_ptr,
        clean_ptr,
        scale_ptr,
        loss_ptr,
        grad_ptr,
        n_tokens,
        dim,
        COMPUTE_GRAD: tl.constexpr,
        BLOCK_T: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        """Per token: mean squared velocity error; optionally grad = 2 * scale_t * diff / D."""
        tok = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
        tok_ok = tok < n_tokens
        acc = tl.zeros((BLOCK_T,), dtype=tl.float32)
        if COMPUTE_GRAD:
            coef = tl.load(scale_ptr + tok, mask=tok_ok, other=0.0) * (2.0 / dim)
        for start in range(0, dim, BLOCK_D):
            cols = start + tl.arange(0, BLOCK_D)
            ok = tok_ok[:, None] & (cols < dim)[None, :]
            idx = tok[:, None].to(tl.int64) * dim + cols[None, :]
            p = tl.load(pred_ptr + idx, mask=ok, other=0.0).to(tl.float32)
            n = tl.load(noise_ptr + idx, mask=ok, other=0.0).to(tl.float32)
            c = tl.load(clean_ptr + idx, mask=ok, other=0.0).to(tl.float32)
            diff = p - n + c
            acc += tl.sum(diff * diff, axis=1)
            if COMPUTE_GRAD:
                tl.store(grad_ptr + idx, diff * coef[:, None], mask=ok)
        tl.store(loss_ptr + tok, acc / dim, mask=tok_ok)


def _token_weights(
    shape: torch.Size,
    mask: torch.Tensor | None,
    token_weights: torch.Tensor | None,
    dtype: torch.dtype,
    device,
) -> torch.Tensor:
    """``w_t`` flattened to ``[T]``."""
    weight = torch.ones(shape, dtype=dtype, device=device)
    if mask is not None:
        weight = weight * mask
    if token_weights is not None:
        weight = weight * token_weights.to(dtype)
    return weight.reshape(-1)


def flow_matching_loss_reference(
    pred: torch.Tensor,
    noise: torch.Tensor,
    clean: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    token_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss in plain PyTorch (autograd); the torch backend of :func:`flow_matching_loss`."""
    dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
    per_token = (pred.to(dtype) - (noise.to(dtype) - clean.to(dtype))).square().mean(dim=-1).reshape(-1)
    weight = _token_weights(pred.shape[:-1], mask, token_weights, dtype, pred.device)
    total = weight.sum()
    return (per_token * weight).sum() / torch.where(total > 0, total, 1.0)


def _run_kernel(
    flat: tuple[torch.Tensor, torch.Tensor, torch.Tensor], scale: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    pred = flat[0]
    n_tokens, dim = pred.shape
    losses = torch.empty(n_tokens, dtype=torch.float32, device=pred.device)
    grad = torch.empty_like(pred) if scale is not None else None
    _flow_kernel[(triton.cdiv(n_tokens, _BLOCK_T),)](
        *flat,
        losses if scale is None else scale,
        losses,
        pred if grad is None else grad,
        n_tokens,
        dim,
        COMPUTE_GRAD=scale is not None,
        BLOCK_T=_BLOCK_T,
        BLOCK_D=_BLOCK_D,
    )
    return losses, grad


class FlowMatchingFunction(torch.autograd.Function):
    """Flow-matching MSE over contiguous ``[T, D]`` inputs and ``weight [T]``; Triton only.

    The gradient of ``pred`` is written during forward and handed over (rescaled in place) by the
    first backward; a later backward through the same graph recomputes it.
    """

    @staticmethod
    def forward(
        ctx, pred: torch.Tensor, noise: torch.Tensor, clean: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        total = weight.sum()
        scale = weight / torch.where(total > 0, total, 1.0)
        eager = any(ctx.needs_input_grad[:3])
        losses, grad = _run_kernel((pred, noise, clean), scale if eager else None)
        ctx.save_for_backward(pred, noise, clean, scale)
        ctx.grad = grad
        return (losses * scale).sum()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        if ctx.grad is not None:
            grad = ctx.grad.mul_(grad_out)
            ctx.grad = None
        else:
            pred, noise, clean, scale = ctx.saved_tensors
            _, grad = _run_kernel((pred, noise, clean), (scale * grad_out).contiguous())
        need_pred, need_noise, need_clean = ctx.needs_input_grad[:3]
        grad_clean = None
        if need_clean:  # d/d clean = d/d pred; a copy when pred also receives it, so .grad never aliases
            grad_clean = grad.clone() if need_pred else grad
        return grad if need_pred else None, -grad if need_noise else None, grad_clean, None


def _check_inputs(
    pred: torch.Tensor,
    noise: torch.Tensor,
    clean: torch.Tensor,
    mask: torch.Tensor | None,
    token_weights: torch.Tensor | None,
) -> None:
    if not (pred.is_floating_point() and noise.is_floating_point() and clean.is_floating_point()):
        raise TypeError(
            f"pred, noise and clean must be floating tensors, got {pred.dtype}, {noise.dtype}, {clean.dtype}"
        )
    if pred.dim() < 1 or noise.shape != pred.shape or clean.shape != pred.shape:
        raise ValueError(
            f"pred, noise and clean must share one shape [..., D], got {tuple(pred.shape)}, "
            f"{tuple(noise.shape)}, {tuple(clean.shape)}"
        )
    tokens = tuple(pred.shape[:-1])
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = token counts), got {mask.dtype}")
        if tuple(mask.shape) != tokens:
            raise ValueError(f"mask must have shape {tokens}, got {tuple(mask.shape)}")
    if token_weights is not None:
        if tuple(token_weights.shape) != tokens:
            raise ValueError(f"token_weights must have shape {tokens}, got {tuple(token_weights.shape)}")
        if token_weights.requires_grad:
            raise ValueError("token_weights must not require grad: the loss does not differentiate them")


def flow_matching_loss(
    pred: torch.Tensor,
    noise: torch.Tensor,
    clean: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    token_weights: torch.Tensor | None = None,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Velocity MSE, mean over latent dims then weighted mean over valid tokens.

    Args:
        pred: ``[..., D]`` predicted velocity.
        noise: ``[..., D]`` the noise ``eps`` of ``x_t = (1 - t) x0 + t eps``.
        clean: ``[..., D]`` the clean latents ``x0``.
        mask: optional bool ``[...]``, True where the token counts.
        token_weights: optional non-negative ``[...]`` weights (not differentiated).
        backend: ``"auto"``, ``"triton"`` or ``"torch"``.

    Returns:
        Scalar loss (fp32; fp64 for fp64 inputs on the torch backend).
    """
    _check_inputs(pred, noise, clean, mask, token_weights)
    if resolve_backend(backend, pred, noise, clean, mask, token_weights) == "torch":
        return flow_matching_loss_reference(pred, noise, clean, mask=mask, token_weights=token_weights)
    dim = pred.shape[-1]
    weight = _token_weights(pred.shape[:-1], mask, token_weights, torch.float32, pred.device)
    flat = [t.reshape(-1, dim).contiguous() for t in (pred, noise, clean)]
    return FlowMatchingFunction.apply(*flat, weight.contiguous())
