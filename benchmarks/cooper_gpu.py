"""The reference COOPER assembly on an accelerator: tiny-preset generation and one 7B-shaped MoT layer.

Part 1 generates a depth latent with the `tiny` preset (COOPER's evaluation sampler: 50 timesteps,
three guidance branches) twice, with the branches batched into one decoder call per step and one by
one, and checks that the two agree; then decodes it with the autoencoder and times one stage-1 step.
Part 2 builds one mixture-of-transformers layer at BAGEL-7B-MoT's shapes (hidden 3584, 28 heads,
4 KV heads, MLP 18944, both experts) in bf16 (`--dtype`) and times forward and forward + backward over a packed
row of `--tokens` tokens (half text, causal; half latent tokens in one full split on the generation
expert), with the explicit boolean mask SDPA gets. Peak memory is reported on CUDA.
`--scale` divides the layer's widths (and heads) to run the same shape family on a CPU.
Part 3 times a three-turn `CooperReasoner` rollout on the `tiny` preset (COOPER's system prompt,
a 64 x 64 image, `--turn-tokens` tokens a turn, the untrained model's turns retried) with the text
context cached across turns and recomputed for every turn, and checks both write the same tokens.

Examples::

    python benchmarks/cooper_gpu.py                        # on a CUDA machine
    python benchmarks/cooper_gpu.py --device cpu --scale 4 --tokens 512 --repeats 2 --dtype float32 --threads 1
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from cooper_lib.models.cooper import (
    CharTokenizer,
    CooperModel,
    CooperSampling,
    Image,
    LLMConfig,
    Text,
    generate_latent,
    preset,
)
from cooper_lib.models.cooper.mot import MoTDecoderLayer, Qwen2RotaryEmbedding, block_mask
from cooper_lib.models.cooper.packing import SequenceBuilder
from cooper_lib.reasoning.cooper import CooperReasoner


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _best(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def _row(name: str, value: str) -> None:
    print(f"| {name:<52} | {value:>18} |")


def tiny_generation(device: torch.device, repeats: int) -> None:
    torch.manual_seed(0)
    model = CooperModel(preset("tiny")).to(device).eval()
    torch.nn.init.normal_(model.llm2vae.weight, std=0.3)
    g = torch.Generator().manual_seed(1)
    context = [
        Text((1, 5, 6, 2)),
        Image((torch.rand(3, 64, 64, generator=g) * 2 - 1).to(device)),
        Text((1, 7, 8, 2)),
    ]
    sampling = CooperSampling()  # evaluation settings: 50 timesteps, text 4.0 / image 2.0, text_channel
    grid = (4, 4)  # 64 x 64 px

    def run(batched: bool) -> torch.Tensor:
        gen = torch.Generator(device=device).manual_seed(0)
        return generate_latent(model, context, grid, sampling, generator=gen, batch_branches=batched)

    batched, single = run(True), run(False)
    err = (batched - single).abs().max().item()
    t_batched = _best(lambda: run(True), repeats, device)
    t_single = _best(lambda: run(False), repeats, device)
    with torch.no_grad():
        image = model.vae.decode(batched[None])
    seq = (
        SequenceBuilder(model.config)
        .text([1, 20, 21])
        .image(context[1].pixels)
        .latent(batched, noised=True)
        .build()
    )
    seq = seq.to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        loss = model.stage1_loss(seq, generator=torch.Generator(device=device).manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()

    t_step = _best(step, repeats, device)
    print(f"\n## tiny preset on {device} (64 x 64 depth map, 49 Euler updates, 3 guidance branches)\n")
    print(f"| {'measure':<52} | {'value':>18} |\n|{'-' * 54}|{'-' * 20}|")
    _row("generate, branches batched (s / map)", f"{t_batched:.3f}")
    _row("generate, branches one by one (s / map)", f"{t_single:.3f}")
    _row("max |batched - one by one| (latent)", f"{err:.2e}")
    _row("decoded pseudo-image shape", "x".join(map(str, image.shape[1:])))
    _row("stage-1 step (s)", f"{t_step:.4f}")


def tiny_turns(device: torch.device, repeats: int, turn_tokens: int) -> None:
    torch.manual_seed(0)
    model = CooperModel(preset("tiny")).to(device).eval()
    g = torch.Generator().manual_seed(2)
    image = ((torch.rand(3, 64, 64, generator=g) * 255).byte().permute(1, 2, 0)).numpy()
    reasoners = {
        incremental: CooperReasoner(
            model,
            CharTokenizer(),
            max_turns=3,
            max_new_tokens_per_turn=turn_tokens,
            sampling=CooperSampling(num_timesteps=3),
            incremental=incremental,
        )
        for incremental in (True, False)
    }
    traces = {k: r.run(image, "Which object is closer to the camera?") for k, r in reasoners.items()}
    same = [s.token_ids for s in traces[True].steps] == [s.token_ids for s in traces[False].steps]
    t_fast = _best(
        lambda: reasoners[True].run(image, "Which object is closer to the camera?"), repeats, device
    )
    t_slow = _best(
        lambda: reasoners[False].run(image, "Which object is closer to the camera?"), repeats, device
    )
    trace = traces[True]
    turns = sum(s.kind == "text" for s in trace.steps)
    print(
        f"\n## tiny preset on {device}: a {turns}-turn rollout, {trace.total_tokens} context tokens at the end\n"
    )
    print(f"| {'measure':<52} | {'value':>18} |\n|{'-' * 54}|{'-' * 20}|")
    _row("prompt tokens (system prompt, image, question)", str(trace.prompt_tokens))
    _row("generated tokens", str(trace.generated_tokens))
    _row("rollout, context cached across turns (s)", f"{t_fast:.3f}")
    _row("rollout, context recomputed every turn (s)", f"{t_slow:.3f}")
    _row("speed-up", f"{t_slow / t_fast:.2f}x")
    _row("same tokens", str(same))


def mot_layer(
    device: torch.device, scale: int, tokens: int, repeats: int, dtype: torch.dtype, attention: str
) -> None:
    full = LLMConfig()
    cfg = LLMConfig(
        vocab_size=16,
        hidden_size=full.hidden_size // scale,
        intermediate_size=full.intermediate_size // scale,
        num_hidden_layers=1,
        num_attention_heads=full.num_attention_heads // scale,
        num_key_value_heads=max(1, full.num_key_value_heads // scale),
    )
    qcfg = cfg.to_qwen2()
    layer = MoTDecoderLayer(qcfg, 0).to(device=device, dtype=dtype)
    rotary = Qwen2RotaryEmbedding(qcfg).to(device)
    n_params = sum(p.numel() for p in layer.parameters())
    half = tokens // 2
    x = torch.randn(tokens, cfg.hidden_size, device=device, dtype=dtype, requires_grad=True)
    positions = torch.cat([torch.arange(half), torch.full((tokens - half,), half)]).to(device)
    gen = (torch.arange(tokens) >= half).to(device)
    mask = torch.ones(tokens, tokens, dtype=torch.bool, device=device).tril()
    mask[half:, half:] = True
    attn_mask = block_mask(mask) if attention == "flex" else mask
    cos, sin = rotary(x, positions[None])
    cos_sin = (cos[0], sin[0])

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return layer(x, cos_sin, gen, attn_mask)[0]

    def forward_backward() -> None:
        out, _ = layer(x, cos_sin, gen, attn_mask)
        out.float().square().mean().backward()
        layer.zero_grad(set_to_none=True)
        x.grad = None

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t_fwd = _best(forward, repeats, device)
    t_fb = _best(forward_backward, repeats, device)
    flops = 3 * 2 * (n_params // 2) * tokens  # one expert (half the weights) per token; backward = 2x forward
    print(
        f"\n## one MoT layer at 7B shapes / {scale} on {device}, {dtype}, {attention}, {tokens} tokens (half text, half latent)\n"
    )
    print(f"| {'measure':<52} | {'value':>18} |\n|{'-' * 54}|{'-' * 20}|")
    _row(
        "hidden / MLP / heads / KV heads",
        f"{cfg.hidden_size}/{cfg.intermediate_size}/{cfg.num_attention_heads}/{cfg.num_key_value_heads}",
    )
    _row("layer parameters (both experts)", f"{n_params:,}")
    _row("forward (ms)", f"{t_fwd * 1e3:.2f}")
    _row("forward + backward (ms)", f"{t_fb * 1e3:.2f}")
    _row("TFLOP/s fwd + bwd (linear layers only)", f"{flops / t_fb / 1e12:.3f}")
    if device.type == "cuda":
        _row("peak memory (GiB)", f"{torch.cuda.max_memory_allocated() / 2**30:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scale", type=int, default=1, help="divide the 7B layer's widths by this")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="of the MoT layer"
    )
    parser.add_argument("--attention", default="sdpa", choices=["sdpa", "flex"], help="of the MoT layer")
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--turn-tokens", type=int, default=32, help="tokens per turn of the part-3 rollout")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.attention == "flex" and device.type != "cuda":
        parser.error("--attention flex: FlexAttention has no backward on the CPU; use a CUDA device")
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    if not args.skip_tiny:
        tiny_generation(device, args.repeats)
        tiny_turns(device, args.repeats, args.turn_tokens)
    mot_layer(device, args.scale, args.tokens, args.repeats, getattr(torch, args.dtype), args.attention)


if __name__ == "__main__":
    main()
