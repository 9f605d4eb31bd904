"""The three trainers drive the reference assembly (`CooperModel`, tiny preset) through its model kind."""

import pytest
import torch
from training_setup import optim_config, run_config

from cooper_lib.data.records import Item, SFTRecord, load_stage1_records
from cooper_lib.models.cooper import CharTokenizer, CooperModel, load_tokenizer, preset
from cooper_lib.training import (
    GRPOConfig,
    InterleavedSFTTrainer,
    SFTConfig,
    SpatialGRPOTrainer,
    Stage1Config,
    Stage1Trainer,
)
from cooper_lib.training.config import ModelConfig
from cooper_lib.training.kinds import CooperKind, SpatialKind, build_cooper_model, model_kind
from cooper_lib.training.records import load_qa_records

TOK = CharTokenizer()


def tiny(seed: int = 0) -> CooperModel:
    torch.manual_seed(seed)
    return CooperModel(preset("tiny"))


def stage1_config(synthetic, output, **run):
    return Stage1Config(
        model=ModelConfig(cooper="tiny"),
        optim=optim_config(),
        run=run_config(output, ema_decay=None, **run),
        data=[str(synthetic["stage1"] / "records.jsonl")],
        num_workers=0,
    )


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_model_kind_dispatch_and_the_tokenizer_a_cooper_model_needs():
    model = tiny()
    kind = model_kind(model, TOK)
    assert isinstance(kind, CooperKind) and model_kind(kind) is kind
    with pytest.raises(TypeError, match="tokenizer"):
        model_kind(model)
    with pytest.raises(TypeError, match="SpatialModel or a CooperModel"):
        model_kind(torch.nn.Linear(2, 2))
    assert SpatialKind.__abstractmethods__ == frozenset()


def test_cooper_trainability_follows_the_model_section():
    model = tiny()
    kind = CooperKind(model, TOK)
    summary = kind.configure(ModelConfig(cooper="tiny"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("vae.", "vit_model.")) for n in trainable)  # COOPER: ViT and VAE frozen
    assert {"llm2vae.weight", "connector.fc1.weight"} <= trainable
    assert summary.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    kind.configure(ModelConfig(cooper="tiny", llm="frozen", freeze_vision=False))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    language = {n for n in trainable if n.startswith("language_model.")}
    assert language and all("moe_gen" in n for n in language)
    assert any(n.startswith("vit_model.") for n in trainable) and "connector.fc1.weight" not in trainable
    with pytest.raises(ValueError, match="model.llm"):
        kind.configure(ModelConfig(cooper="tiny", llm="lora"))
    kind.enable_gradient_checkpointing()
    assert model.language_model.model.gradient_checkpointing


def test_model_config_takes_exactly_one_of_backbone_and_cooper():
    assert ModelConfig(cooper="tiny").backbone is None  # the plug-in default steps aside
    assert ModelConfig().backbone == "tiny:qwen2_vl" and ModelConfig().cooper is None
    with pytest.raises(ValueError, match="set exactly one"):
        ModelConfig(cooper="tiny", backbone="tiny:llava").validate()
    with pytest.raises(ValueError, match="set exactly one"):
        Stage1Config(model=ModelConfig(backbone=None))
    with pytest.raises(ValueError, match="model.init_from"):
        ModelConfig(cooper="tiny", init_from="runs/x/final").validate()
    with pytest.raises(ValueError, match="preset"):
        build_cooper_model(ModelConfig(cooper="no-such-preset-or-folder"))


def test_stage1_trainer_trains_a_cooper_model_and_final_reloads_key_for_key(synthetic, tmp_path):
    config = stage1_config(synthetic, tmp_path / "run", max_steps=30, eval_every=30)
    config.eval_data = [str(synthetic["stage1"] / "records.jsonl")]
    config.eval_samples = 4
    trainer = Stage1Trainer(tiny(), config, tokenizer=TOK)
    vae_before = trainer.spatial.vae.state_dict()["decoder.conv_in.weight"].clone()
    result = trainer.train()
    losses = [h["loss"] for h in result.history]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-10:]) / 10 < 0.92 * sum(losses[:4]) / 4
    assert set(result.history[-1]) >= {"flow_loss", "eval/loss", "eval/flow_loss"}
    assert torch.equal(trainer.spatial.vae.state_dict()["decoder.conv_in.weight"], vae_before)  # frozen
    reloaded = CooperModel.from_pretrained(result.final_dir)
    assert_same_weights(reloaded, trainer.spatial)
    assert isinstance(load_tokenizer(result.final_dir), CharTokenizer)


def test_a_resumed_cooper_run_continues_the_same_trajectory(synthetic, tmp_path):
    whole = Stage1Trainer(tiny(), stage1_config(synthetic, tmp_path / "a"), tokenizer=TOK)
    whole.train()
    first = Stage1Trainer(tiny(), stage1_config(synthetic, tmp_path / "b"), tokenizer=TOK)
    first.train(stop_at=2)
    resumed = Stage1Trainer(tiny(), stage1_config(synthetic, tmp_path / "b"), tokenizer=TOK)
    assert resumed.step == 2 and resumed.resumed_from is not None
    resumed.train()
    assert_same_weights(resumed.spatial, whole.spatial)


def _sft_records(synthetic) -> list[SFTRecord]:
    """Short interleaved traces on synthetic scenes: question, a depth call, its true map, the answer."""
    depth = [e for e in load_stage1_records([synthetic["stage1"] / "records.jsonl"]) if e.modality == "depth"]
    return [
        SFTRecord(
            f"r{i}",
            [
                Item("image", str(e.image)),
                Item("text", "Which is closer?"),
                Item("text", "<think>a</think><depth-estimation>d</depth-estimation>", need_loss=True),
                Item(
                    "image",
                    str(e.image),
                    modality="depth",
                    target=str(e.target),
                    target_scale=e.options.get("scale"),
                ),
                Item("text", "<answer>\\boxed{A}</answer>", need_loss=True),
            ],
        )
        for i, e in enumerate(depth[:3])
    ]


def test_sft_trainer_learns_interleaved_traces_on_a_cooper_model(synthetic, tmp_path):
    records = _sft_records(synthetic)
    config = SFTConfig(
        model=ModelConfig(cooper="tiny"),
        optim=optim_config(),
        run=run_config(tmp_path, max_steps=10),
        num_workers=0,
        system_prompt="Think, then answer.",  # short: the character tokenizer spends a token per letter
    )
    trainer = InterleavedSFTTrainer(tiny(), config, records=records, tokenizer=TOK)
    result = trainer.train()
    lm = [h["lm_loss"] for h in result.history]
    assert all(torch.isfinite(torch.tensor(lm))) and all(h["flow_loss"] > 0 for h in result.history)
    assert sum(lm[-3:]) / 3 < 0.8 * sum(lm[:3]) / 3
    assert_same_weights(CooperModel.from_pretrained(result.final_dir), trainer.spatial)


def test_grpo_trainer_steps_a_cooper_model_on_its_rollouts(synthetic, tmp_path):
    config = GRPOConfig(
        model=ModelConfig(cooper="tiny"),
        optim=optim_config(lr=1e-2),
        run=run_config(tmp_path, max_steps=1, batch_size=1),
        num_generations=2,
        max_new_tokens=6,
        max_turns=1,
    )
    records = load_qa_records([synthetic["grpo"] / "records.jsonl"])[:2]

    def reward(traces, examples, groups):  # a reward that tells sampled rollouts apart
        return [float(sum(t.steps[0].token_ids)) for t in traces]

    trainer = SpatialGRPOTrainer(tiny(), config, records=records, reward_fn=reward, tokenizer=TOK)
    before = trainer.spatial.language_model.lm_head.weight.detach().clone()
    result = trainer.train()
    entry = result.history[0]
    assert torch.isfinite(torch.tensor(entry["loss"])) and entry["generated_tokens"] > 0
    assert entry["reward_std"] > 0 and not torch.equal(before, trainer.spatial.language_model.lm_head.weight)
    assert_same_weights(CooperModel.from_pretrained(result.final_dir), trainer.spatial)
