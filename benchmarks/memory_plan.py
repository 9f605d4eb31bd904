"""Memory a training run needs per GPU: computed from parameter counts, and measured at reduced size.

`--table plan` prints docs/memory.md's table for Qwen2.5-VL-3B / 7B: weights + gradients + AdamW
states + an activation estimate, per stage and setting (formulas in `plan_gib`). `--table measured`
trains one step of a tiny Qwen2-VL (CPU, fp32) per setting and compares the measured peak RSS of the
step (kernel high-water mark, benchmarks/memory.py) with the same formula on the tiny model's counts.

    python benchmarks/memory_plan.py --table plan
    python benchmarks/memory_plan.py --table measured [--hidden 512 --layers 8 --tokens 1024]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3


@dataclass(frozen=True)
class Backbone:
    name: str
    llm: float  # language-model parameters (trained in stage 1 / SFT / GRPO with llm=full)
    vision: float  # vision tower + projector (frozen: freeze_vision)
    hidden: int
    layers: int


#: Approximate counts from the model cards / configs (Qwen2.5-VL: 675M vision encoder).
BACKBONES = (
    Backbone("Qwen2.5-VL-3B", 3.09e9, 0.67e9, 2048, 36),
    Backbone("Qwen2.5-VL-7B", 7.62e9, 0.67e9, 3584, 28),
)

#: setting -> (bytes per frozen weight, per trainable weight: weight + grad + AdamW m, v,
#: trainable share kind, shard factor of (weights, grads+states), activation bytes per token-layer-hidden)
SETTINGS = {
    "pure bf16 (not recommended)": (2, 2 + 2 + 4, "full", (1, 1), 34),
    "fp32 + bf16 autocast (default)": (4, 4 + 4 + 8, "full", (1, 1), 34),
    "fp32 + bf16 autocast + grad. checkpointing": (4, 4 + 4 + 8, "full", (1, 1), 2),
    "LoRA r=16, bf16 base": (2, 4 + 4 + 8, "lora", (1, 1), 34),
    "QLoRA r=16, 4-bit base": (0.55, 4 + 4 + 8, "lora", (1, 1), 34),
    "ZeRO-2 x8, fp32 + bf16 autocast": (4, 4 + 4 + 8, "full", (1, 8), 34),
    "FSDP2 / ZeRO-3 x8, fp32 + bf16 autocast": (4, 4 + 4 + 8, "full", (8, 8), 34),
}

#: stage -> tokens per GPU micro-batch (docs' batch sizes; ~512 tokens a sample with one 448px image)
#: and extra KV-cache tokens (GRPO: 8 rollouts of up to 1024 tokens kept for generation).
STAGES = {
    "stage 1 (batch 8)": (8 * 512, 0),
    "SFT (batch 4)": (4 * 1024, 0),
    "GRPO (2 questions x 8 rollouts)": (16 * 1024, 16 * 1024),
}


def plan_gib(backbone: Backbone, setting: str, tokens: int, kv_tokens: int) -> float:
    """Per-GPU GiB: frozen weights + trainable weight/grad/AdamW bytes (sharded as the setting says)
    + activations (bytes x tokens x layers x hidden, bf16; checkpointing keeps layer inputs only)
    + GRPO's KV cache (2 x layers x hidden x 2 bytes a token; GQA would make it smaller)."""
    frozen_b, train_b, kind, (w_shard, s_shard), act = SETTINGS[setting]
    lora = 16 * 2 * backbone.hidden * 7 * backbone.layers if kind == "lora" else 0  # r x (in+out) x 7 linears
    trainable = lora if kind == "lora" else backbone.llm
    frozen = backbone.vision + (backbone.llm if kind == "lora" else 0)
    weights = frozen * frozen_b / w_shard
    train_weights = trainable * 4 / w_shard if train_b > 8 else trainable * 2
    grads_states = trainable * (train_b - (4 if train_b > 8 else 2)) / s_shard
    activations = act * tokens * backbone.layers * backbone.hidden
    kv = 2 * backbone.layers * backbone.hidden * 2 * kv_tokens
    return (weights + train_weights + grads_states + activations + kv) / GIB


def print_plan() -> None:
    for backbone in BACKBONES:
        print(f"\n### {backbone.name} ({(backbone.llm + backbone.vision) / 1e9:.2f} B parameters)\n")
        print("| setting | " + " | ".join(STAGES) + " |")
        print("| --- |" + " --- |" * len(STAGES))
        for setting in SETTINGS:
            cells = [f"{plan_gib(backbone, setting, *STAGES[stage]):.0f}" for stage in STAGES]
            print(f"| {setting} | " + " | ".join(cells) + " |")


def print_measured(hidden: int, layers: int, tokens: int) -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from memory import PeakRSS

    from cooper_lib.backbones.tiny import build_tiny_backbone
    from cooper_lib.training.precision import enable_gradient_checkpointing

    print(
        f"\ntiny qwen2_vl, hidden {hidden}, {layers} layers, {tokens} text tokens, CPU fp32, one AdamW step\n"
    )
    print("| setting | trainable params | computed MiB | measured peak MiB |")
    print("| --- | --- | --- | --- |")
    for setting in ("full", "full + grad. checkpointing", "LoRA r=16"):
        torch.manual_seed(0)
        model, _ = build_tiny_backbone(
            "qwen2_vl", hidden_size=hidden, num_hidden_layers=layers, intermediate_size=4 * hidden
        )
        model.train()
        if setting.startswith("LoRA"):
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(
                model,
                LoraConfig(
                    r=16,
                    target_modules=[
                        "q_proj",
                        "k_proj",
                        "v_proj",
                        "o_proj",
                        "gate_proj",
                        "up_proj",
                        "down_proj",
                    ],
                ),
            )
        if "checkpointing" in setting:
            enable_gradient_checkpointing(model)
        trainable = [p for p in model.parameters() if p.requires_grad]
        n_train = sum(p.numel() for p in trainable)
        optimizer = torch.optim.AdamW(trainable, lr=1e-4)
        ids = torch.randint(0, 200, (1, tokens))
        with PeakRSS() as peak:
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
        act = 2 if "checkpointing" in setting else 34
        # fp32 activations here: twice the bf16 figure of the plan
        computed = (n_train * (4 + 8) + 2 * act * tokens * layers * hidden) / 2**20
        print(f"| {setting} | {n_train:,} | {computed:.0f} | {peak.delta_mib:.0f} |", flush=True)
        del model, optimizer, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", choices=("plan", "measured"), default="plan")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=1024)
    args = parser.parse_args()
    if args.table == "plan":
        print_plan()
    else:
        print_measured(args.hidden, args.layers, args.tokens)


if __name__ == "__main__":
    main()
