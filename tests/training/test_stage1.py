import json
import multiprocessing
import os

import pytest
import torch
from training_setup import model_config, optim_config, run_config

from cooper_lib.data.records import load_stage1_records
from cooper_lib.training.config import Stage1Config
from cooper_lib.training.stage1 import Stage1Trainer
from cooper_lib.training.weights import build_model, load_trained_model


def make_config(synthetic, out, **run) -> Stage1Config:
    records = str(synthetic["stage1"] / "records.jsonl")
    return Stage1Config(
        model=model_config(),
        optim=optim_config(),
        run=run_config(out, **run),
        data=[records],
        eval_data=[records],
        eval_samples=8,
    )


def test_stage1_training_lowers_the_held_out_loss(synthetic, tmp_path):
    torch.manual_seed(0)
    config = make_config(synthetic, tmp_path, max_steps=8, batch_size=4, ema_decay=None)
    trainer = Stage1Trainer(build_model(config.model), config)
    before = trainer.run_evaluation()
    result = trainer.train()
    after = trainer.run_evaluation()
    # bound: 8 steps of 4 maps at lr 2e-3 cut the held-out auxiliary loss by at least 10%
    assert after["loss"] < 0.9 * before["loss"], (before, after)
    assert after["depth/abs_rel"] < before["depth/abs_rel"]
    assert [h["step"] for h in result.history] == list(range(1, 9))
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)


def test_stage1_writes_a_loadable_final_model_with_ema_weights(synthetic, tmp_path):
    torch.manual_seed(0)
    config = make_config(synthetic, tmp_path, max_steps=2, ema_decay=0.5)
    model = build_model(config.model)
    trainer = Stage1Trainer(model, config)
    result = trainer.train()
    assert sorted(p.name for p in result.final_dir.iterdir()) == [
        "backbone.safetensors", "base_model.json", "cooper_config.json", "spatial_heads.safetensors",
        "trainable.json",
    ]  # fmt: skip
    backbone, processor = _fresh_backbone()
    loaded = load_trained_model(result.final_dir, backbone, processor)
    with trainer.ema.applied():
        expected = model.addition_state_dict()
        layer = dict(model.backbone.named_parameters())["model.language_model.layers.0.mlp.up_proj.weight"]
        layer = layer.detach().clone()
    got = loaded.addition_state_dict()
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []
    assert torch.equal(
        dict(loaded.backbone.named_parameters())["model.language_model.layers.0.mlp.up_proj.weight"], layer
    )
    assert not torch.equal(
        layer, dict(model.backbone.named_parameters())["model.language_model.layers.0.mlp.up_proj.weight"]
    )


def _fresh_backbone():
    from cooper_lib.backbones.tiny import build_tiny_backbone

    return build_tiny_backbone("qwen2_vl")


def test_mixture_weights_choose_the_sources(synthetic, tmp_path):
    records = load_stage1_records([synthetic["stage1"] / "records.jsonl"])
    config = make_config(synthetic, tmp_path, max_steps=1)
    config.mixture = {"depth": 1.0, "segmentation": 0.0}
    trainer = Stage1Trainer(build_model(config.model), config, records=records)
    batch = trainer.micro_batches()[0]
    assert set(batch["aux_targets"]) == {"depth"}
    config.mixture = {"depth": 1.0}
    with pytest.raises(ValueError, match="no weight for sources"):
        Stage1Trainer(build_model(config.model), config, records=records)


def test_stage1_rejects_a_modality_without_a_head(synthetic, tmp_path):
    config = make_config(synthetic, tmp_path, max_steps=1)
    config.model.spatial = {**config.model.spatial, "modalities": ["depth"]}
    with pytest.raises(ValueError, match=r"modalities \['segmentation'\] have no head"):
        Stage1Trainer(build_model(config.model), config)


def test_stage1_trains_from_a_datasets_dataset_in_workers(synthetic, tmp_path, monkeypatch):
    """A `datasets.Dataset` (every file embedded) trains like its JSONL, collated in a worker."""
    datasets = pytest.importorskip("datasets")
    from cooper_lib.data.synthetic import to_hf_dataset

    monkeypatch.setenv("HOME", str(tmp_path))  # embedded images are cached under ~/.cache
    exported = to_hf_dataset(synthetic["stage1"])
    assert isinstance(exported, datasets.Dataset)
    config = make_config(synthetic, tmp_path, max_steps=2, batch_size=2, ema_decay=None)
    config.num_workers = 1
    torch.manual_seed(0)
    before = set(multiprocessing.active_children())  # other tests' trainers may still hold workers
    from_rows = Stage1Trainer(build_model(config.model), config, records=exported, eval_records=exported)
    assert len(from_rows.records) == len(load_stage1_records(config.data))
    losses = [h["loss"] for h in from_rows.train().history]
    assert set(multiprocessing.active_children()) <= before  # the loop's end stopped its workers
    config.num_workers = 0
    config.run.output_dir = str(tmp_path / "jsonl")
    torch.manual_seed(0)
    reference = [h["loss"] for h in Stage1Trainer(build_model(config.model), config).train().history]
    assert losses == pytest.approx(reference, rel=1e-5)


def test_run_allow_outside_root_lets_records_name_files_outside_their_folder(synthetic, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    rows = [json.loads(line) for line in (synthetic["stage1"] / "records.jsonl").read_text().splitlines()[:2]]
    for row in rows:  # the same files, named from another folder with `..` steps
        for key in ("image", "target"):
            row[key] = os.path.relpath(synthetic["stage1"] / row[key], shared)
    records = shared / "records.jsonl"
    records.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = make_config(synthetic, tmp_path / "out", max_steps=1)
    config.data, config.eval_data = [str(records)], []
    assert rows[0]["image"].startswith("..")
    with pytest.raises(ValueError, match=r"outside the dataset folder .*run: \{allow_outside_root: true\}"):
        Stage1Trainer(build_model(config.model), config)
    config.run.allow_outside_root = True
    trainer = Stage1Trainer(build_model(config.model), config)
    assert trainer.records[0].image.resolve() == (synthetic["stage1"] / "images/000000.png").resolve()
