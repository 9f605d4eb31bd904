"""The Qwen2 decoder with mixture-of-transformers layers: two experts, one shared attention.

Every token belongs to one expert: text and ViT tokens to the understanding expert (the plain Qwen2
weights), VAE latent tokens to the generation expert (the same weights with the suffix `_moe_gen`).
Each expert has its own q/k/v/o projections, q/k RMS norms, MLP and both layernorms; attention
itself is one softmax over the whole packed sequence, so latents read text and vice versa.

Built from transformers' Qwen2 blocks (`Qwen2Attention` for the projections, `Qwen2MLP`,
`Qwen2RMSNorm`, `Qwen2RotaryEmbedding`, `apply_rotary_pos_emb`); only the routing and the masked
attention over a packed sequence with an optional cached prefix are written here.

Shapes: a packed row of `L` tokens, hidden `H`, `n` query heads and `m` key/value heads of `d` dims.
Masks are boolean `[L, L_k]` (True = may attend) with `L_k = L_past + L`.

Attention runs through PyTorch SDPA with that explicit mask (`MoTModel.attention = "sdpa"`, the
default, every device). `"flex"` turns the mask into a FlexAttention block mask once per forward
pass and calls `flex_attention`, compiled on CUDA (where it skips fully masked blocks) and eager
elsewhere (correct but slow, and forward only on the CPU: for checks).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
from torch.utils.checkpoint import checkpoint
from transformers.models.qwen2.modeling_qwen2 import (
    Qwen2Attention,
    Qwen2MLP,
    Qwen2RMSNorm,
    Qwen2RotaryEmbedding,
    apply_rotary_pos_emb,
)

from cooper_lib.models.cooper.config import LLMConfig

KV = tuple[torch.Tensor, torch.Tensor]  # keys, values: [m, L, d] each, normed and rotated
ATTENTION = ("sdpa", "flex")


@cache
def _compiled_flex() -> Callable:
    return torch.compile(flex_attention)


def block_mask(mask: torch.Tensor) -> BlockMask:
    """FlexAttention block mask of a boolean `[L, L_k]` mask."""
    rows, cols = mask.shape
    return create_block_mask(
        lambda b, h, q, k: mask[q, k], B=None, H=None, Q_LEN=rows, KV_LEN=cols, device=mask.device
    )


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | BlockMask) -> torch.Tensor:
    """`[1, n, L, d]` attention of `q [1, n, L, d]` over `k, v [1, m, L_k, d]` (grouped heads)."""
    if isinstance(mask, BlockMask):
        fn = _compiled_flex() if q.is_cuda else flex_attention
        return fn(q, k, v, block_mask=mask, enable_gqa=True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[None, None], enable_gqa=True)


def route(
    x: torch.Tensor,
    gen: torch.Tensor,
    und_fn: Callable[[torch.Tensor], torch.Tensor],
    gen_fn: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Apply `und_fn` to the rows of `x [L, ...]` where `gen [L]` is False and `gen_fn` where True."""
    if not bool(gen.any()):
        return und_fn(x)
    if bool(gen.all()):
        return gen_fn(x)
    und_out, gen_out = und_fn(x[~gen]), gen_fn(x[gen])
    out = und_out.new_empty((x.shape[0], *und_out.shape[1:]))
    out[~gen] = und_out
    out[gen] = gen_out
    return out


class MoTAttention(Qwen2Attention):
    """Qwen2 attention (its q/k/v/o) plus q/k norms and a generation-expert copy of all six."""

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        d, n, m, h = self.head_dim, config.num_attention_heads, config.num_key_value_heads, config.hidden_size
        self.q_norm = Qwen2RMSNorm(d, eps=config.rms_norm_eps)
        self.k_norm = Qwen2RMSNorm(d, eps=config.rms_norm_eps)
        self.q_proj_moe_gen = nn.Linear(h, n * d, bias=True)
        self.k_proj_moe_gen = nn.Linear(h, m * d, bias=True)
        self.v_proj_moe_gen = nn.Linear(h, m * d, bias=True)
        self.o_proj_moe_gen = nn.Linear(n * d, h, bias=False)
        self.q_norm_moe_gen = Qwen2RMSNorm(d, eps=config.rms_norm_eps)
        self.k_norm_moe_gen = Qwen2RMSNorm(d, eps=config.rms_norm_eps)

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,  # [L, H]
        cos_sin: tuple[torch.Tensor, torch.Tensor],  # [L, d] each
        gen: torch.Tensor,  # [L] bool
        mask: torch.Tensor | BlockMask,  # [L, L_k] bool, or its block mask
        past: KV | None = None,
    ) -> tuple[torch.Tensor, KV]:
        d = self.head_dim
        q = route(x, gen, self.q_proj, self.q_proj_moe_gen).unflatten(-1, (-1, d))  # [L, n, d]
        k = route(x, gen, self.k_proj, self.k_proj_moe_gen).unflatten(-1, (-1, d))  # [L, m, d]
        v = route(x, gen, self.v_proj, self.v_proj_moe_gen).unflatten(-1, (-1, d))  # [L, m, d]
        q = route(q, gen, self.q_norm, self.q_norm_moe_gen)
        k = route(k, gen, self.k_norm, self.k_norm_moe_gen)
        q, k = apply_rotary_pos_emb(q, k, *cos_sin, unsqueeze_dim=1)
        k, v = k.transpose(0, 1), v.transpose(0, 1)  # [m, L, d]
        if past is not None:
            k, v = torch.cat([past[0], k], dim=1), torch.cat([past[1], v], dim=1)  # [m, L_k, d]
        out = attend(q.transpose(0, 1)[None], k[None], v[None], mask)  # [1, n, L, d]
        out = out[0].transpose(0, 1).flatten(1)  # [L, n d]
        return route(out, gen, self.o_proj, self.o_proj_moe_gen), (k, v)


class MoTDecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x)), each step with per-expert weights."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.self_attn = MoTAttention(config, layer_idx)
        self.mlp = Qwen2MLP(config)
        self.mlp_moe_gen = Qwen2MLP(config)
        h, eps = config.hidden_size, config.rms_norm_eps
        self.input_layernorm = Qwen2RMSNorm(h, eps=eps)
        self.input_layernorm_moe_gen = Qwen2RMSNorm(h, eps=eps)
        self.post_attention_layernorm = Qwen2RMSNorm(h, eps=eps)
        self.post_attention_layernorm_moe_gen = Qwen2RMSNorm(h, eps=eps)

    def forward(self, x, cos_sin, gen, mask, past: KV | None = None) -> tuple[torch.Tensor, KV]:
        h = route(x, gen, self.input_layernorm, self.input_layernorm_moe_gen)
        h, kv = self.self_attn(h, cos_sin, gen, mask, past)
        x = x + h
        h = route(
            x,
            gen,
            lambda y: self.mlp(self.post_attention_layernorm(y)),
            lambda y: self.mlp_moe_gen(self.post_attention_layernorm_moe_gen(y)),
        )
        return x + h, kv


class MoTModel(nn.Module):
    """Embeddings, the layers and the two final norms (`norm`, `norm_moe_gen`)."""

    def __init__(self, cfg: LLMConfig):
        super().__init__()
        qcfg = cfg.to_qwen2()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(MoTDecoderLayer(qcfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = Qwen2RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.norm_moe_gen = Qwen2RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.rotary_emb = Qwen2RotaryEmbedding(qcfg)
        self.gradient_checkpointing = False
        self.attention = "sdpa"  # or "flex" (see the module docstring)

    def forward(
        self,
        x: torch.Tensor,  # [L, H] input embeddings
        positions: torch.Tensor,  # [L] RoPE positions
        gen: torch.Tensor,  # [L] bool: generation-expert tokens
        mask: torch.Tensor,  # [L, L_past + L] bool
        past: list[KV] | None = None,
    ) -> tuple[torch.Tensor, list[KV]]:
        """Hidden states after the final norms `[L, H]` and each layer's keys and values."""
        cos, sin = self.rotary_emb(x, positions[None])
        cos_sin = (cos[0], sin[0])  # [L, d]
        if self.attention not in ATTENTION:
            raise ValueError(f"attention: expected one of {ATTENTION}, got {self.attention!r}")
        if self.attention == "flex":
            mask = block_mask(mask)
        cache = []
        for i, layer in enumerate(self.layers):
            layer_past = past[i] if past is not None else None
            if self.gradient_checkpointing and self.training:
                x, kv = checkpoint(layer, x, cos_sin, gen, mask, layer_past, use_reentrant=False)
            else:
                x, kv = layer(x, cos_sin, gen, mask, layer_past)
            cache.append(kv)
        return route(x, gen, self.norm, self.norm_moe_gen), cache


class MoTLanguageModel(nn.Module):
    """`language_model.` in a BAGEL checkpoint: `model` (the decoder) and an untied `lm_head`."""

    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.model = MoTModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
