"""How the arms' trainers are set up from `Table1Config`."""

from pathlib import Path

import pytest
import torch

from cooper_lib.experiments.table1 import Table1Config
from cooper_lib.experiments.table1.arms import _sft_trainer
from cooper_lib.experiments.table1.data import prepare_data


@pytest.mark.parametrize("supervise_maps", [False, True])
def test_sft_trains_the_heads_on_shown_maps_only_when_asked(tmp_path, supervise_maps):
    config = Table1Config.micro().with_(supervise_maps=supervise_maps)
    files = prepare_data(tmp_path, config)
    trainer = _sft_trainer(config, 0, 1, tmp_path / "sft", "cpu", [files["perceive_first"]], None)
    batch = trainer.collator(trainer.records[:2])
    assert trainer.collator.supervise_maps is supervise_maps
    assert ("aux_targets" in batch) is supervise_maps
    assert trainer.collator.system_prompt == ""


def test_the_map_loss_weight_scales_the_heads_loss_in_sft(tmp_path):
    config = Table1Config.micro().with_(supervise_maps=True, map_loss_weight=0.1)
    files = prepare_data(tmp_path, config)
    trainer = _sft_trainer(config, 0, 1, tmp_path / "sft", "cpu", [files["perceive_first"]], None)
    batch = trainer.collator(trainer.records[:2])
    out = trainer.model(**batch)
    expected = out.lm_loss + 0.1 * sum(out.aux_losses.values())
    assert set(out.aux_losses) == {"depth", "segmentation"}
    assert torch.allclose(out.loss, expected)
    with pytest.raises(ValueError, match="map_loss_weight: expected a positive weight, got 0"):
        Table1Config(map_loss_weight=0)


def test_sft_weight_decay_reaches_the_arms_sft_and_not_the_base_or_stage1(tmp_path, monkeypatch):
    """``sft_weight_decay`` is the optimiser's decay in each arm's SFT; the base model and stage 1
    keep none (a run that shares them across decays trains them once)."""
    from cooper_lib.experiments.table1 import arms

    config = Table1Config.micro().with_(sft_weight_decay=0.3)
    files = prepare_data(tmp_path, config)
    decays: dict[str, float] = {}
    sections = arms._sections

    def spy(config, seed, steps, out, device, lr, weight_decay=0.0):
        decays[Path(out).name] = weight_decay
        return sections(config, seed, steps, out, device, lr, weight_decay)

    monkeypatch.setattr(arms, "_sections", spy)
    base = arms.train_base(config, files, 0, tmp_path / "base", "cpu")
    arms.train_arm(arms.ARMS["bagel_pe"], config, files, 0, tmp_path / "arm", "cpu", base)
    assert decays == {"base": 0.0, "stage1": 0.0, "sft": 0.3}
    trainer = arms._sft_trainer(config, 0, 1, tmp_path / "wd", "cpu", [files["qa"]], None, 0.3)
    groups = trainer.kind.parameter_groups(trainer.config.optim.weight_decay)
    assert sorted(group["weight_decay"] for group in groups) == [0.0, 0.3]
    with pytest.raises(ValueError, match="sft_weight_decay: expected a non-negative float, got -0.1"):
        Table1Config(sft_weight_decay=-0.1)
    with pytest.raises(ValueError, match="sft_weight_decay: expected a non-negative float, got True"):
        Table1Config(sft_weight_decay=True)


def test_reasoner_prompts_follow_the_records():
    assert Table1Config().reasoner_prompts() == {"system_prompt": None, "reflection_prompt": ""}
    assert Table1Config(system_prompt=True, reflection_prompt=True).reasoner_prompts() == {}


def test_stage1_trains_the_heads_at_full_weight_after_a_lighter_sft(tmp_path):
    from cooper_lib.experiments.table1.arms import ARMS, train_arm, train_base
    from cooper_lib.loading import load_trained_folder

    config = Table1Config.micro().with_(map_loss_weight=0.05)
    files = prepare_data(tmp_path, config)
    base = train_base(config, files, 0, tmp_path / "base", "cpu")
    assert load_trained_folder(base).config.aux_weight("depth") == 0.05  # the caption SFT saved it
    train_arm(ARMS["bagel_pe"], config, files, 0, tmp_path / "arm", "cpu", base)
    stage1 = load_trained_folder(tmp_path / "arm" / "train" / "stage1" / "final")
    sft = load_trained_folder(tmp_path / "arm" / "train" / "sft" / "final")
    assert stage1.config.aux_weight("depth") == stage1.config.aux_weight("segmentation") == 1.0
    assert sft.config.aux_weight("segmentation") == 0.05


def test_a_frozen_stage1_keeps_the_base_language_model_and_trains_the_heads(tmp_path):
    """``stage1_llm="frozen"``: stage 1 leaves the base model's language model as it was (saved
    whole, though it did not train) and still trains the vision tower and the heads."""
    from cooper_lib.experiments.table1.arms import ARMS, _model_config, train_arm, train_base
    from cooper_lib.loading import load_trained_folder
    from cooper_lib.training.weights import build_model

    config = Table1Config.micro().with_(stage1_llm="frozen", stage1_steps=2, sft_steps=1, base_steps=4)
    files = prepare_data(tmp_path, config)
    base = load_trained_folder(train_base(config, files, 0, tmp_path / "base", "cpu"))
    initial = build_model(_model_config(config, 0, None)).adapter.language_model().state_dict()
    trained = base.adapter.language_model().state_dict()
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)  # the base model trained its LM
    train_arm(ARMS["amg_qa"], config, files, 0, tmp_path / "arm", "cpu", tmp_path / "base" / "final")
    stage1 = load_trained_folder(tmp_path / "arm" / "train" / "stage1" / "final")
    before = dict(base.named_parameters())
    language = stage1.adapter.language_model()
    ids = stage1.added_token_ids
    changed = set()
    for name, param in stage1.named_parameters():
        if "embed_tokens" in name or "lm_head" in name:  # the added tokens' rows train
            keep = torch.ones(param.shape[0], dtype=torch.bool)
            keep[ids] = False
            assert torch.equal(param[keep], before[name][keep]), name
        elif any(param is p for p in language.parameters()):
            assert torch.equal(param, before[name]), name
        elif not torch.equal(param, before[name]):
            changed.add(name.split(".")[0] if not name.startswith("backbone") else "vision")
    assert {"heads", "queries", "vision"} <= changed
    with pytest.raises(ValueError, match="stage1_llm: expected one of"):
        Table1Config(stage1_llm="half")


def test_stage1_takes_its_own_batch_and_sft_the_shared_one(tmp_path, monkeypatch):
    """``stage1_batch_size`` sets stage 1's records per step only; SFT keeps ``batch_size``."""
    from cooper_lib.experiments.table1 import arms

    seen = {}
    for name in ("Stage1Trainer", "InterleavedSFTTrainer"):
        real = getattr(arms, name)

        def spy(model, cfg, *args, _real=real, _name=name, **kwargs):
            seen[_name] = cfg.run.batch_size
            return _real(model, cfg, *args, **kwargs)

        monkeypatch.setattr(arms, name, spy)
    config = Table1Config.micro().with_(batch_size=2, stage1_batch_size=3)
    files = prepare_data(tmp_path, config)
    arms.train_arm(arms.ARMS["amg_qa"], config, files, 0, tmp_path / "arm", "cpu")
    assert seen == {"Stage1Trainer": 3, "InterleavedSFTTrainer": 2}


@pytest.mark.parametrize(("trace_maps", "share"), [("true", None), ("own", 1.0), ("mixed", 0.5)])
def test_the_perceiving_arms_traces_show_the_maps_trace_maps_names(tmp_path, monkeypatch, trace_maps, share):
    from cooper_lib.experiments.table1 import arms

    drawn = []
    monkeypatch.setattr("cooper_lib.loading.load_trained_folder", lambda path: torch.nn.Identity())
    monkeypatch.setattr(
        arms,
        "write_own_maps",
        lambda model, path, name, **kwargs: drawn.append((path, name, kwargs)) or tmp_path / f"{name}.jsonl",
    )
    config = Table1Config.micro().with_(trace_maps=trace_maps)
    data = {"interleaved": tmp_path / "interleaved.jsonl", "qa": tmp_path / "qa.jsonl"}
    sets = arms._sft_data(arms.ARMS["cooper"], config, data, 2, tmp_path / "stage1", "cpu")
    assert arms._sft_data(arms.ARMS["qa_only"], config, data, 2, tmp_path / "stage1", "cpu") == [data["qa"]]
    if share is None:
        assert sets == [data["interleaved"]] and not drawn
    else:
        name = f"{trace_maps}-seed-2-cooper"
        assert sets == [tmp_path / f"{name}.jsonl"]
        assert drawn == [(data["interleaved"], name, {"share": share, "seed": 2})]
