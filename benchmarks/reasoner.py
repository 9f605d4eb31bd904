"""Speed of the interleaved reasoner on a mid-size random Qwen2-VL (hidden 1024, 8 layers).

1. Text generation: tokens per second of the reasoner's turn (``text_only``, one turn, EOS
   suppressed so both write exactly N tokens) against `model.generate` on the same prompt,
   greedy. "call" rates include the prompt prefill; "decode" rates come from the time difference
   between N and 3N tokens, so the prefill cancels. Trials alternate the two, medians are shown.
2. One insertion (a map image with the reflection prompt, appended after a tool call's query
   block) at contexts of about 1k and 4k tokens: appending it to the KV cache against a full
   re-prefill of the same context (the backbone's forward, last position's logits only).

    python benchmarks/reasoner.py                  # both parts
    python benchmarks/reasoner.py --threads 1 --tokens 32 --contexts 1024 4096
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from PIL import Image
from transformers import SuppressTokensLogitsProcessor

from cooper_lib import add_spatial_heads
from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.reasoning import InterleavedReasoner, KVContext

MID = {"hidden_size": 1024, "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 4}
QUESTION = "Which chair is closer to the camera?"


def build():
    backbone, processor = build_tiny_backbone("qwen2_vl", **MID)
    model = add_spatial_heads(backbone, processor, ("depth",), output_size=(64, 64))
    image = Image.new("RGB", (84, 84), (90, 120, 200))
    return model, image


def text_generation(model, image, tokens: int, trials: int) -> None:
    tokenizer = model.adapter.tokenizer(model.processor)
    eos = sorted({tokenizer.eos_token_id, model.backbone.generation_config.eos_token_id} - {None})
    no_eos = SuppressTokensLogitsProcessor(eos)
    message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}
    text = model.adapter.render_chat(model.processor, [message], add_generation_prompt=True)
    inputs = model.adapter.prompt_inputs(model.processor, text, [image])

    def reasoner_call(n: int) -> float:
        reasoner = InterleavedReasoner(
            model,
            policy="text_only",
            max_turns=1,
            max_new_tokens_per_turn=n,
            system_prompt=None,
            logits_processors=[no_eos],
        )
        start = time.perf_counter()
        trace = reasoner.run(image, QUESTION)
        elapsed = time.perf_counter() - start
        assert trace.generated_tokens == n, trace.generated_tokens
        return elapsed

    def generate_call(n: int) -> float:
        start = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=n, do_sample=False, logits_processor=[no_eos])
        elapsed = time.perf_counter() - start
        assert out.shape[1] - inputs["input_ids"].shape[1] == n
        return elapsed

    reasoner_call(4), generate_call(4)  # warm-up
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(trials):
        for n in (tokens, 3 * tokens):
            times.setdefault(("generate", n), []).append(generate_call(n))
            times.setdefault(("reasoner", n), []).append(reasoner_call(n))
    med = {key: statistics.median(value) for key, value in times.items()}
    rate = {name: 3 * tokens / med[(name, 3 * tokens)] for name in ("generate", "reasoner")}
    decode = {
        name: 2 * tokens / (med[(name, 3 * tokens)] - med[(name, tokens)])
        for name in ("generate", "reasoner")
    }
    print(
        f"\n## Text generation ({3 * tokens} tokens, prompt {inputs['input_ids'].shape[1]} tokens, {trials} trials)\n"
    )
    print("| | model.generate | reasoner | reasoner / generate |")
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| tokens/s, whole call | {rate['generate']:.1f} | {rate['reasoner']:.1f} | {rate['reasoner'] / rate['generate']:.2f}x |"
    )
    print(
        f"| tokens/s, decode only | {decode['generate']:.1f} | {decode['reasoner']:.1f} | "
        f"{decode['reasoner'] / decode['generate']:.2f}x |"
    )


def insertion(model, image, context: int, trials: int) -> tuple[int, int, float, float]:
    """(context tokens, inserted tokens, cached seconds, re-prefill seconds), medians."""
    tokenizer = model.adapter.tokenizer(model.processor)
    filler = tokenizer.encode(" far" * context, add_special_tokens=False)
    spec = model.config.spec("depth")
    call = tokenizer.encode(f"<think>x</think>{spec.open_tag}go{spec.close_tag}", add_special_tokens=False)
    queries = [model.layout.query_id] * model.config.num_queries
    content = [{"type": "image"}, {"type": "text", "text": "Here is the generated depth map. Check it."}]
    insert_text = model.adapter.continuation_text(model.processor, content)
    map_image = Image.new("RGB", image.size, (200, 60, 60))
    message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}
    prompt = model.adapter.render_chat(model.processor, [message], add_generation_prompt=True)

    def prepared() -> tuple[KVContext, dict]:
        """A context of `context` tokens ending with a tool call's query block, and the insertion."""
        ctx = KVContext(model)
        head = ctx.prompt_segment(prompt, [image])
        budget = context - head["input_ids"].shape[1] - len(call) - len(queries)
        ctx.append([head])
        ctx.append([ctx.token_segment(filler[:budget] + call + queries)])
        return ctx, ctx.text_segment(insert_text, [map_image])

    cached, full = [], []
    for _ in range(trials + 1):
        ctx, segment = prepared()
        start = time.perf_counter()
        ctx.append([segment])
        cached.append(time.perf_counter() - start)
        inputs = ctx.full_inputs(0)
        start = time.perf_counter()
        with torch.no_grad():
            model.backbone(**inputs, logits_to_keep=1)
        full.append(time.perf_counter() - start)
    total = ctx.length(0)
    return total, segment["input_ids"].shape[1], statistics.median(cached[1:]), statistics.median(full[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32, help="N: the turns write N and 3N tokens")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--contexts", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--skip-text", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, image = build()
    print(f"mid-size random qwen2_vl {MID}, {torch.get_num_threads()} CPU threads, float32")
    if not args.skip_text:
        text_generation(model, image, args.tokens, args.trials)
    print(f"\n## One insertion ({args.trials} trials)\n")
    print(
        "| context tokens | inserted tokens | KV cache (ms) | full re-prefill (ms) | cache / re-prefill | inserted / context |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for context in args.contexts:
        total, inserted, cached, full = insertion(model, image, context, args.trials)
        print(
            f"| {total} | {inserted} | {cached * 1000:.1f} | {full * 1000:.1f} | {cached / full:.3f} | "
            f"{inserted / total:.3f} |"
        )


if __name__ == "__main__":
    main()
