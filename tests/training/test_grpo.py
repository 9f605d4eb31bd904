import pytest
import torch
from training_setup import model_config, optim_config, run_config

from cooper_lib.training.config import GRPOConfig, ModelConfig
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
    inputs, mask = trainer.kind.rollout_inputs(trace, trainer.accelerator.device)
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


def test_grpo_defaults_are_coopers():
    # scripts/train_reason_interleave_grpo.sh:23 (--max_think_token_n 4096) and --num_timesteps 30;
    # inferencer.py:640-651: rollout guidance 4.0 / 2.0, interval [0.4, 1], global renorm, shift 3.0
    config = GRPOConfig()
    assert (config.max_new_tokens, config.image_steps, config.flow_preset) == (4096, 30, "cooper-rollout")
    assert (config.temperature, config.num_generations, config.kl_beta, config.clip_eps) == (1.0, 8, 0.0, 0.2)
    with pytest.raises(ValueError, match="flow_preset"):
        GRPOConfig(flow_preset="fast")
    with pytest.raises(ValueError, match="image_steps"):
        GRPOConfig(image_steps=1)


def test_rollouts_sample_flow_maps_with_the_rollout_preset_and_image_steps(synthetic, tmp_path):
    from cooper_lib.training.kinds import rollout_perceive_options

    spatial = {
        **model_config().spatial,
        "head": {"depth": "flow", "segmentation": "dense"},
        "head_options": {"depth": {"width": 32, "blocks": 1, "steps": 4}},
    }
    config = make_config(synthetic, tmp_path, image_steps=12)
    config.model = ModelConfig(spatial=spatial)
    model = build_model(config.model)
    options = rollout_perceive_options(model, config)
    assert options == {"depth": {"preset": "cooper-rollout", "cfg_img_scale": 1.0, "steps": 12}}
    settings = model.heads["depth"].sampling_settings(dict(options["depth"]))
    guidance = settings["guidance"]
    assert (settings["steps"], settings["shift"]) == (12, 3.0)
    assert (guidance.text_scale, guidance.image_scale, tuple(guidance.interval), guidance.renorm) == (
        4.0,
        1.0,  # the image branch needs image-free query states, which rollouts do not compute
        (0.4, 1.0),
        "global",
    )
    trainer = SpatialGRPOTrainer(model, config, reward_fn=low_half_reward(1))
    assert trainer.reasoner.perceive_options == options and trainer.greedy.perceive_options == options
    assert trainer.reasoner.max_new_tokens_per_turn == 3 and trainer.reasoner.sampling.temperature == 1.0
    from cooper_prompts import COOPER_REFLECTION_PROMPT, COOPER_SYSTEM_PROMPT

    for reasoner in (trainer.reasoner, trainer.greedy):  # rollouts and the evaluation hook
        assert (reasoner.system_prompt, reasoner.reflection_prompt) == (
            COOPER_SYSTEM_PROMPT,
            COOPER_REFLECTION_PROMPT,
        )
    own = make_config(synthetic, tmp_path, flow_preset=None)
    assert rollout_perceive_options(model, own) == {"depth": {"steps": 30}}


def test_rollout_temperature_divides_the_logits():
    from cooper_lib.reasoning.sampling import SamplingConfig, TokenSampler

    # logits (0, ln 3): T = 1 gives (1/4, 3/4); T = 0.5 gives (1, 9) / 10
    logits = torch.tensor([[0.0, float(torch.log(torch.tensor(3.0)))]])
    no_ids = torch.zeros(1, 0, dtype=torch.long)
    for temperature, expected in ((1.0, [0.25, 0.75]), (0.5, [0.1, 0.9])):
        sampler = TokenSampler(SamplingConfig(temperature=temperature), seeds=[0])
        probs = torch.softmax(sampler.warpers(no_ids, logits.clone()), dim=-1)[0]
        torch.testing.assert_close(probs, torch.tensor(expected), rtol=0, atol=1e-6)


def test_policy_logprobs_use_the_tempered_logits(synthetic, tmp_path):
    # COOPER's trainer divides the logits by the sampling temperature before the log-softmax
    # (train/grpo/bagel_interleave_grpo_trainer.py:754-756): log p_T = z / T - logsumexp(z / T)
    from cooper_lib.training.kinds import PolicyScorer

    model = build_model(model_config())
    torch.manual_seed(0)
    ids = torch.randint(5, 60, (1, 9))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[0, 4:] = True
    with torch.no_grad():
        hidden = model.adapter.hidden_states(**inputs)
        logits = model.adapter.output_embeddings()(hidden).double()
        for temperature in (1.0, 0.7):
            expected = torch.log_softmax(logits[0, 3:-1] / temperature, dim=-1).gather(-1, ids[0, 4:, None])[
                :, 0
            ]
            got = PolicyScorer(model, temperature)(inputs, mask)[0]
            torch.testing.assert_close(got[4:].double(), expected, rtol=1e-4, atol=1e-5)
            assert (got[:4] == 0).all()
    with pytest.raises(ValueError, match="temperature"):
        PolicyScorer(model, 0.0)


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
