"""BAGEL's release layout written out from the rules in COOPER.md, independently of the model code.

`official_shapes` lists every key and shape of the main file, `flux_ae_shapes` those of
`ae.safetensors`; `write_release` writes a folder as a release would look (bf16, sharded main
file with an index, `vit_config.json` counting one layer more than stored, `llm_config.json`
without the fields loaders force).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from cooper_lib.models.cooper import CooperConfig
from cooper_lib.models.cooper.embeddings import sincos_2d


def official_shapes(cfg: CooperConfig) -> dict[str, tuple[int, ...]]:
    llm, vit = cfg.llm, cfg.vit
    H, inter, V = llm.hidden_size, llm.intermediate_size, llm.vocab_size
    d = H // llm.num_attention_heads
    q, kv = llm.num_attention_heads * d, llm.num_key_value_heads * d
    out: dict[str, tuple[int, ...]] = {
        "language_model.model.embed_tokens.weight": (V, H),
        "language_model.model.norm.weight": (H,),
        "language_model.model.norm_moe_gen.weight": (H,),
        "language_model.lm_head.weight": (V, H),
    }
    for layer in range(llm.num_hidden_layers):
        p = f"language_model.model.layers.{layer}."
        for s in ("", "_moe_gen"):
            out.update(
                {
                    f"{p}self_attn.q_proj{s}.weight": (q, H),
                    f"{p}self_attn.q_proj{s}.bias": (q,),
                    f"{p}self_attn.k_proj{s}.weight": (kv, H),
                    f"{p}self_attn.k_proj{s}.bias": (kv,),
                    f"{p}self_attn.v_proj{s}.weight": (kv, H),
                    f"{p}self_attn.v_proj{s}.bias": (kv,),
                    f"{p}self_attn.o_proj{s}.weight": (H, q),
                    f"{p}self_attn.q_norm{s}.weight": (d,),
                    f"{p}self_attn.k_norm{s}.weight": (d,),
                    f"{p}mlp{s}.gate_proj.weight": (inter, H),
                    f"{p}mlp{s}.up_proj.weight": (inter, H),
                    f"{p}mlp{s}.down_proj.weight": (H, inter),
                    f"{p}input_layernorm{s}.weight": (H,),
                    f"{p}post_attention_layernorm{s}.weight": (H,),
                }
            )
    h, iv, side = vit.hidden_size, vit.intermediate_size, cfg.vit_max_num_patch_per_side
    v = "vit_model.vision_model."
    out.update(
        {
            f"{v}embeddings.patch_embedding.weight": (h, 3 * vit.patch_size**2),
            f"{v}embeddings.patch_embedding.bias": (h,),
            f"{v}embeddings.position_embedding.weight": (side * side, h),
            f"{v}post_layernorm.weight": (h,),
            f"{v}post_layernorm.bias": (h,),
        }
    )
    for layer in range(vit.num_hidden_layers):
        p = f"{v}encoder.layers.{layer}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out.update({f"{p}self_attn.{proj}.weight": (h, h), f"{p}self_attn.{proj}.bias": (h,)})
        for norm in ("layer_norm1", "layer_norm2"):
            out.update({f"{p}{norm}.weight": (h,), f"{p}{norm}.bias": (h,)})
        out.update(
            {
                f"{p}mlp.fc1.weight": (iv, h),
                f"{p}mlp.fc1.bias": (iv,),
                f"{p}mlp.fc2.weight": (h, iv),
                f"{p}mlp.fc2.bias": (h,),
            }
        )
    D = cfg.latent_dim
    out.update(
        {
            "connector.fc1.weight": (H, h),
            "connector.fc1.bias": (H,),
            "connector.fc2.weight": (H, H),
            "connector.fc2.bias": (H,),
            "time_embedder.mlp.0.weight": (H, 256),
            "time_embedder.mlp.0.bias": (H,),
            "time_embedder.mlp.2.weight": (H, H),
            "time_embedder.mlp.2.bias": (H,),
            "vae2llm.weight": (H, D),
            "vae2llm.bias": (H,),
            "llm2vae.weight": (D, H),
            "llm2vae.bias": (D,),
            "vit_pos_embed.pos_embed": (side * side, H),
            "latent_pos_embed.pos_embed": (cfg.max_latent_size**2, H),
        }
    )
    return out


def flux_ae_shapes(cfg: CooperConfig) -> dict[str, tuple[int, ...]]:
    a = cfg.vae
    widths = [a.base_channels * m for m in a.channel_multipliers]
    out: dict[str, tuple[int, ...]] = {}

    def conv(key, c_out, c_in, k):
        out.update({f"{key}.weight": (c_out, c_in, k, k), f"{key}.bias": (c_out,)})

    def norm(key, c):
        out.update({f"{key}.weight": (c,), f"{key}.bias": (c,)})

    def resnet(key, c_in, c_out):
        norm(f"{key}.norm1", c_in)
        conv(f"{key}.conv1", c_out, c_in, 3)
        norm(f"{key}.norm2", c_out)
        conv(f"{key}.conv2", c_out, c_out, 3)
        if c_in != c_out:
            conv(f"{key}.nin_shortcut", c_out, c_in, 1)

    def middle(key, c):
        resnet(f"{key}.block_1", c, c)
        norm(f"{key}.attn_1.norm", c)
        for name in ("q", "k", "v", "proj_out"):
            conv(f"{key}.attn_1.{name}", c, c, 1)
        resnet(f"{key}.block_2", c, c)

    conv("encoder.conv_in", a.base_channels, a.in_channels, 3)
    c = a.base_channels
    for i, w in enumerate(widths):
        for j in range(a.num_res_blocks):
            resnet(f"encoder.down.{i}.block.{j}", c, w)
            c = w
        if i != len(widths) - 1:
            conv(f"encoder.down.{i}.downsample.conv", c, c, 3)
    middle("encoder.mid", c)
    norm("encoder.norm_out", c)
    conv("encoder.conv_out", 2 * a.z_channels, c, 3)
    c = widths[-1]
    conv("decoder.conv_in", c, a.z_channels, 3)
    middle("decoder.mid", c)
    for i in reversed(range(len(widths))):
        for j in range(a.num_res_blocks + 1):
            resnet(f"decoder.up.{i}.block.{j}", c, widths[i])
            c = widths[i]
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", c, c, 3)
    norm("decoder.norm_out", c)
    conv("decoder.conv_out", a.out_channels, c, 3)
    return out


def random_tensors(
    shapes: dict[str, tuple[int, ...]], cfg: CooperConfig, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Small random bf16 weights (norm weights near 1); the sin-cos tables as the release stores them."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        if key == "vit_pos_embed.pos_embed":
            t = sincos_2d(cfg.llm.hidden_size, cfg.vit_max_num_patch_per_side)
        elif key == "latent_pos_embed.pos_embed":
            t = sincos_2d(cfg.llm.hidden_size, cfg.max_latent_size)
        elif "norm" in key and key.endswith("weight") and len(shape) == 1:
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            t = 0.05 * torch.randn(shape, generator=g)
        out[key] = t.to(torch.bfloat16)
    return out


def write_release(
    folder: Path,
    cfg: CooperConfig,
    *,
    shards: int = 3,
    main_name: str = "ema",
    main: dict[str, torch.Tensor] | None = None,
    ae: dict[str, torch.Tensor] | None = None,
) -> None:
    """A release-shaped folder (no cooper_model_config.json, no tokenizer files)."""
    folder.mkdir(parents=True, exist_ok=True)
    llm = cfg.llm
    (folder / "llm_config.json").write_text(
        json.dumps(
            {
                "vocab_size": llm.vocab_size,
                "hidden_size": llm.hidden_size,
                "intermediate_size": llm.intermediate_size,
                "num_hidden_layers": llm.num_hidden_layers,
                "num_attention_heads": llm.num_attention_heads,
                "num_key_value_heads": llm.num_key_value_heads,
                "rms_norm_eps": llm.rms_norm_eps,
                "rope_theta": llm.rope_theta,
                "max_position_embeddings": llm.max_position_embeddings,
                "hidden_act": "silu",
                "model_type": "qwen2",
                "architectures": ["Qwen2ForCausalLM"],
            }
        )
    )
    vit = cfg.vit
    (folder / "vit_config.json").write_text(
        json.dumps(
            {
                "hidden_size": vit.hidden_size,
                "intermediate_size": vit.intermediate_size,
                "num_hidden_layers": vit.num_hidden_layers + 1,
                "num_attention_heads": vit.num_attention_heads,
                "patch_size": vit.patch_size,
                "image_size": 384,
                "num_channels": 3,
                "layer_norm_eps": 1e-6,
                "hidden_act": "gelu_pytorch_tanh",
                "model_type": "siglip_vision_model",
            }
        )
    )
    main = main if main is not None else random_tensors(official_shapes(cfg), cfg)
    keys = list(main)
    weight_map = {}
    for i in range(shards):
        name = f"{main_name}-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: main[k].contiguous() for k in keys[i::shards]}
        save_file(part, folder / name)
        weight_map.update({k: name for k in part})
    (folder / f"{main_name}.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    ae = ae if ae is not None else random_tensors(flux_ae_shapes(cfg), cfg, seed=1)
    save_file({k: v.float().contiguous() for k, v in ae.items()}, folder / "ae.safetensors")
