"""What the two live TRL tests share: teaching a tiny model COOPER's answer format, and two
`trl.GRPOTrainer` steps with the CPR reward parts on it."""

import torch

from cooper_lib.training.trl_rewards import cpr_reward_funcs


def teach_the_format(model, tokenizer, prompts, steps: int = 80) -> None:
    """A few supervised steps on answers in COOPER's format (right or wrong ones), so sampled
    completions differ in format and accuracy and GRPO has advantages to follow."""
    texts = [
        f"{p}<think>one two</think><answer>{a}</answer>" for p in prompts for a in ("2", "3", "yes", "no")
    ]
    batch = tokenizer([t + tokenizer.eos_token for t in texts], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def train_two_grpo_steps(model, tokenizer, prompts, output_dir):
    """Two `trl.GRPOTrainer` steps (groups of 4) on `prompts` with `cpr_reward_funcs()`; the trainer."""
    import datasets
    import trl

    rows = {
        "prompt": list(prompts) * 2,
        "answer": ["2", "yes"] * 2,
        "answer_type": ["integer", "yes_no"] * 2,
        "cpr": ["positive", "negative"] * 2,
    }
    args = trl.GRPOConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=32,
        max_steps=2,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        bf16=False,  # TRL's default is bf16; accelerate's state would keep it for later trainers in the process
        save_strategy="no",
        reward_weights=[1.0, 1.0, 1.0],
    )
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=cpr_reward_funcs(),
        args=args,
        train_dataset=datasets.Dataset.from_dict(rows),
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer
