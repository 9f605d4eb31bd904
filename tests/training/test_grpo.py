import pytest
import torch
from training_setup import model_config, optim_config, run_config

from cooper_lib.training.config import GRPOConfig
from cooper_lib.training.grpo import SpatialGRPOTrainer, rollout_seed
from cooper_lib.training.weights import build_model


def make_config(synthetic, out, **fields) -> GRPOConfig:
    run = fields.pop("run", {})
    records = str(synthetic["grpo"] / "records.jsonl")
    defaults = {"num_generations": 4, "max_new_tokens": 3, "max_turns": 2}
    return GRPOConfig(
        model=model_config(),
        optim=fields.pop("optim", optim_config()),
        run=run_config(out, **{"max_steps": 2, "batch_size": 1, **run}),
        data=[records],
        **{**defaults, **fields},
    )


def low_half_reward(half):
    """1 when every generated token lies in the lower half of the vocabulary: learnable from scratch."""

    def reward(traces, examples, groups):
        return [
            float(all(i < half for s in t.steps if s.kind == "text" for i in s.token_ids)) for t in traces
        ]

    return reward


def expected_low_half(trainer, half) -> float:
    """The policy's exact expected reward on the first question: P(first token < half)."""
    record = trainer.records[0]
    trace = trainer.greedy.run_batch([record.load_image()], [record.question])[0]
    inputs, mask = trainer._inputs(trace)
    position = int(mask[0].nonzero()[0]) - 1
    with torch.no_grad():
        hidden = trainer.spatial.adapter.hidden_states(**inputs)[0, position]
        probs = torch.softmax(trainer.spatial.adapter.output_embeddings()(hidden).float(), dim=-1)
    return float(probs[:half].sum())


def test_grpo_raises_the_expected_reward(synthetic, tmp_path):
    torch.manual_seed(0)
    config = make_config(
        synthetic,
        tmp_path,
        optim=optim_config(lr=0.1),
        run={"max_steps": 5},
        num_generations=8,
        max_new_tokens=1,
        max_turns=1,
    )
    model = build_model(config.model)
    half = len(model.processor.tokenizer) // 2
    trainer = SpatialGRPOTrainer(model, config, reward_fn=low_half_reward(half))
    before = expected_low_half(trainer, half)
    result = trainer.train()
    after = expected_low_half(trainer, half)
    # bound: 5 steps of 8 rollouts at lr 0.1 move the expected reward from ~0.5 up by at least 0.3
    assert after > before + 0.3, (before, after)
    rewards = [h["reward"] for h in result.history]
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2


def test_grpo_uses_the_cpr_reward_and_scores_only_sampled_tokens(synthetic, tmp_path):
    torch.manual_seed(0)
    trainer = SpatialGRPOTrainer(
        build_model(make_config(synthetic, tmp_path).model), make_config(synthetic, tmp_path)
    )
    batch = trainer.rollouts([(0, 0), (1, 3)])
    assert len(batch.traces) == 8 and batch.advantages.shape == (8,)
    assert {"reward", "reward/accuracy", "reward/format", "reward/exploration"} <= set(batch.metrics)
    for trace in batch.traces:
        mask = trace.generated_mask
        assert mask.shape == trace.model_inputs["input_ids"].shape[1:]
        assert not mask[: trace.prompt_tokens].any()  # the prompt is never scored
        assert int(mask.sum()) >= trace.generated_tokens  # sampled tokens (and a sampled end of turn)
        assert len(trace.turns) <= 2
    loss, stats = trainer.policy_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and stats["ratio"] == pytest.approx(1.0)
    result = trainer.train()
    assert [h["step"] for h in result.history] == [1.0, 2.0]
    assert all(
        h["reward/format"] == 0.0 for h in result.history
    )  # an untrained model never answers in format


def test_rollout_seeds_differ_per_rollout_and_repeat_per_position():
    seeds = {rollout_seed(0, step, p, g) for step in range(3) for p in range(4) for g in range(8)}
    assert len(seeds) == 3 * 4 * 8
    assert rollout_seed(0, 2, 1, 5) == rollout_seed(0, 2, 1, 5) != rollout_seed(1, 2, 1, 5)


def test_kl_to_the_starting_policy_is_zero_at_first_and_grows(synthetic, tmp_path):
    torch.manual_seed(0)
    config = make_config(
        synthetic, tmp_path, optim=optim_config(lr=0.05), run={"max_steps": 3}, kl_beta=0.1, max_turns=1
    )
    model = build_model(config.model)
    trainer = SpatialGRPOTrainer(
        model, config, reward_fn=low_half_reward(len(model.processor.tokenizer) // 2)
    )
    history = trainer.train().history
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert history[-1]["kl"] > 1e-4


@pytest.mark.slow
def test_grpo_resume_continues_the_same_trajectory(synthetic, tmp_path):
    def trainer(out, seed):
        torch.manual_seed(seed)
        config = make_config(synthetic, out, run={"max_steps": 4}, num_iterations=2)
        return SpatialGRPOTrainer(build_model(config.model), config)

    straight = trainer(tmp_path / "a", 0).train().history
    first = trainer(tmp_path / "b", 0).train(stop_at=2).history
    second = trainer(tmp_path / "b", 7).train().history
    for key in ("loss", "reward", "clip_fraction"):
        torch.testing.assert_close(
            [h[key] for h in first + second], [h[key] for h in straight], rtol=1e-5, atol=1e-6
        )


def test_a_non_finite_policy_loss_stops_training_before_the_update(synthetic, tmp_path):
    torch.manual_seed(0)
    config = make_config(synthetic, tmp_path, num_generations=2, max_new_tokens=1, max_turns=1)
    trainer = SpatialGRPOTrainer(build_model(config.model), config, reward_fn=low_half_reward(1))
    policy_loss = trainer.policy_loss

    def injected(batch):
        loss, metrics = policy_loss(batch)
        return loss * float("inf"), metrics

    trainer.policy_loss = injected
    with pytest.raises(
        FloatingPointError, match=r"loss: expected a finite value, got (nan|inf|-inf) at step 1"
    ):
        trainer.train()
    assert trainer.step == 0 and all(torch.isfinite(p).all() for p in trainer.spatial.parameters())
