import sys

import pytest
import torch

from cooper_lib.data.synthetic import (
    SceneConfig,
    SceneDataset,
    load_synthetic_dataset,
    read_manifest,
    render_scenes,
    to_hf_dataset,
    write_dataset,
)

CONFIG = SceneConfig(width=32, height=24, min_objects=2, max_objects=4)


@pytest.fixture(scope="module")
def datasets_on_disk(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return {
        stage: write_dataset(root / stage, 3, seed=2, stage=stage, config=CONFIG, questions_per_scene=2)
        for stage in ("stage1", "sft", "grpo", "eval")
    }


def test_scene_round_trip(datasets_on_disk):
    loaded = SceneDataset(datasets_on_disk["eval"])
    rendered = render_scenes(3, seed=2, config=CONFIG, split="test")  # an eval set: test scenes
    assert len(loaded) == 3
    for a, b in zip(loaded, rendered, strict=True):
        assert a.seed == b.seed and a.camera == b.camera and a.room == b.room
        assert a.objects == b.objects
        assert (a.depth - b.depth).abs().max() <= 0.0005 + 1e-5  # 16-bit millimetres
        assert torch.equal(a.valid_mask, b.valid_mask)
        assert torch.equal(a.semantic, b.semantic) and torch.equal(a.instance, b.instance)
        assert (a.rgb - b.rgb).abs().max() <= 0.5 / 255 + 1e-6
        assert (a.normals - b.normals).abs().max() < 0.02


def test_stage1_items(datasets_on_disk):
    data = load_synthetic_dataset(datasets_on_disk["stage1"], "stage1")
    assert len(data) == 6
    depth, seg = data[0], data[1]
    assert (
        depth["modality"] == "depth"
        and depth["target"].dtype == torch.float32
        and depth["target"].shape == (24, 32)
    )
    assert seg["modality"] == "segmentation" and seg["target"].dtype == torch.long
    assert depth["image"].shape == (3, 24, 32)
    assert depth["instruction"].startswith("<depth-estimation>")


def test_sft_items_load_images(datasets_on_disk):
    data = load_synthetic_dataset(datasets_on_disk["sft"])
    assert len(data) == 6
    for index in range(len(data)):
        sample = data[index]
        for item in sample["items"]:
            if item["type"] == "image":
                assert item["value"].shape == (3, 24, 32)
            if item["target"] is not None:
                assert item["target"].shape == (24, 32)


@pytest.mark.parametrize("stage", ["grpo", "eval"])
def test_qa_items(datasets_on_disk, stage):
    data = load_synthetic_dataset(datasets_on_disk[stage])
    sample = data[0]
    assert sample["image"].shape == (3, 24, 32)
    assert sample["answer"] and sample["cpr"] in ("positive", "negative", "boundary")


def test_stage_mismatch_and_missing_manifest(datasets_on_disk, tmp_path):
    with pytest.raises(ValueError, match="stage"):
        load_synthetic_dataset(datasets_on_disk["sft"], "stage1")
    with pytest.raises(ValueError, match="stage"):
        load_synthetic_dataset(datasets_on_disk["sft"], "rl")
    with pytest.raises(FileNotFoundError, match="manifest"):
        read_manifest(tmp_path)


def test_hf_export_needs_datasets(datasets_on_disk, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # an import of datasets now fails
    with pytest.raises(ImportError, match="pip install datasets"):
        to_hf_dataset(datasets_on_disk["eval"])


@pytest.mark.parametrize("stage", ["stage1", "sft", "eval"])
def test_hf_export(datasets_on_disk, stage):
    pytest.importorskip("datasets")
    data = to_hf_dataset(datasets_on_disk[stage])
    assert len(data) == len(load_synthetic_dataset(datasets_on_disk[stage]))
    if stage != "sft":
        assert data[0]["image"].size == (32, 24)
