import math

import pytest
import torch

from cooper_lib.models.cooper import LLMConfig
from cooper_lib.models.cooper.mot import MoTModel

CFG = LLMConfig(
    vocab_size=32,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    rope_theta=10_000.0,
)


def _rms(x, w, eps):
    return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def _rope(x, pos, theta):  # x [L, heads, d], rotate-half convention
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = pos[:, None].double() * inv  # [L, d/2]
    cos, sin = torch.cat([ang.cos()] * 2, -1)[:, None], torch.cat([ang.sin()] * 2, -1)[:, None]
    half = torch.cat([-x[..., d // 2 :], x[..., : d // 2]], -1)
    return x * cos + half * sin


def _reference(model: MoTModel, x, pos, gen, mask):
    """Token by token, picking each token's expert weights by name; float64."""
    eps, theta = CFG.rms_norm_eps, CFG.rope_theta
    n, m, d = CFG.num_attention_heads, CFG.num_key_value_heads, CFG.hidden_size // CFG.num_attention_heads

    def w(module, name, i):
        return module.get_parameter(name + ("_moe_gen" if gen[i] else "") + ".weight")

    def lin(module, name, v, i, bias=True):
        key = name + ("_moe_gen" if gen[i] else "")
        out = v @ module.get_parameter(key + ".weight").T
        return out + module.get_parameter(key + ".bias") if bias else out

    L = len(x)
    for layer in model.layers:
        attn = layer.self_attn
        q, k, v = [], [], []
        for i in range(L):
            h = _rms(x[i], w(layer, "input_layernorm", i), eps)
            q.append(_rms(lin(attn, "q_proj", h, i).view(n, d), w(attn, "q_norm", i), eps))
            k.append(_rms(lin(attn, "k_proj", h, i).view(m, d), w(attn, "k_norm", i), eps))
            v.append(lin(attn, "v_proj", h, i).view(m, d))
        q, k, v = _rope(torch.stack(q), pos, theta), _rope(torch.stack(k), pos, theta), torch.stack(v)
        out = torch.zeros(L, n, d, dtype=torch.float64)
        for head in range(n):
            kv = head // (n // m)
            scores = q[:, head] @ k[:, kv].T / math.sqrt(d)
            scores = scores.masked_fill(~mask, -math.inf)
            out[:, head] = scores.softmax(-1) @ v[:, kv]
        x = torch.stack([x[i] + lin(attn, "o_proj", out[i].flatten(), i, bias=False) for i in range(L)])
        rows = []
        for i in range(L):
            h = _rms(x[i], w(layer, "post_attention_layernorm", i), eps)
            mlp = layer.mlp_moe_gen if gen[i] else layer.mlp
            a = h @ mlp.gate_proj.weight.T
            rows.append(x[i] + (a * torch.sigmoid(a) * (h @ mlp.up_proj.weight.T)) @ mlp.down_proj.weight.T)
        x = torch.stack(rows)
    return torch.stack(
        [_rms(x[i], model.norm_moe_gen.weight if gen[i] else model.norm.weight, eps) for i in range(L)]
    )


def _randomise(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(
                torch.randn(p.shape, generator=g, dtype=p.dtype) * (0.3 if p.ndim > 1 else 0.2)
                + (p.ndim == 1)
            )


def test_mot_decoder_matches_a_token_by_token_float64_reference():
    model = MoTModel(CFG).double()
    _randomise(model)
    L = 9
    x = torch.randn(L, CFG.hidden_size, dtype=torch.float64)
    pos = torch.tensor([0, 1, 2, 3, 3, 3, 3, 4, 5])
    gen = torch.tensor([False, False, False, False, True, True, False, False, False])
    mask = torch.ones(L, L, dtype=torch.bool).tril()
    mask[3:7, 3:7] = True  # a full split
    out, _ = model(x, pos, gen, mask)
    want = _reference(model, x, pos, gen, mask)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)  # transformers' RoPE angles are float32


def test_cached_prefix_gives_the_same_hidden_states():
    model = MoTModel(CFG).double()
    _randomise(model)
    x = torch.randn(10, CFG.hidden_size, dtype=torch.float64)
    pos = torch.arange(10)
    gen = torch.arange(10) >= 6
    mask = torch.ones(10, 10, dtype=torch.bool).tril()
    full, _ = model(x, pos, gen, mask)
    _, cache = model(x[:6], pos[:6], gen[:6], mask[:6, :6])
    tail, _ = model(x[6:], pos[6:], gen[6:], mask[6:], cache)
    torch.testing.assert_close(tail, full[6:], rtol=1e-12, atol=1e-12)


def test_generation_expert_weights_touch_only_generation_tokens():
    model = MoTModel(CFG).double()
    _randomise(model)
    x = torch.randn(6, CFG.hidden_size, dtype=torch.float64)
    pos, mask = torch.arange(6), torch.ones(6, 6, dtype=torch.bool).tril()
    gen = torch.tensor([False, False, False, True, True, False])
    before, _ = model(x, pos, gen, mask)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "moe_gen" in name:
                p.mul_(1.5)
    after, _ = model(x, pos, gen, mask)
    torch.testing.assert_close(after[:3], before[:3])  # causally before any generation token
    assert not torch.allclose(after[3:], before[3:])


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_attention_matches_sdpa():
    model = MoTModel(CFG)
    _randomise(model)
    x = torch.randn(12, CFG.hidden_size)
    pos = torch.arange(12)
    gen = torch.arange(12) >= 5
    mask = torch.ones(12, 12, dtype=torch.bool).tril()
    mask[5:9, 5:9] = True
    mask[9:, 5:9] = False  # a noise split read by nobody after it
    with torch.no_grad():  # FlexAttention has no backward on the CPU
        sdpa, _ = model(x, pos, gen, mask)
        model.attention = "flex"
        flex, _ = model(x, pos, gen, mask)
    torch.testing.assert_close(flex, sdpa, rtol=1e-4, atol=1e-4)
    model.attention = "flash"
    with pytest.raises(ValueError, match="attention: expected one of"):
        model(x, pos, gen, mask)
