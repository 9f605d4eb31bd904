import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cooper_lib.data import hf
from cooper_lib.data.records import load_sft_records, load_stage1_records
from cooper_lib.data.synthetic import SceneConfig, to_hf_dataset, write_dataset

datasets = pytest.importorskip("datasets")

CONFIG = SceneConfig(width=32, height=24, min_objects=2, max_objects=3)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {s: write_dataset(root / s, 2, seed=3, stage=s, config=CONFIG) for s in ("stage1", "sft")}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(hf.Path, "home", lambda: tmp_path / "home")
    return tmp_path / "home" / ".cache" / "cooper_lib" / "datasets"


def _same_stage1(a, b):
    assert [r.modality for r in a] == [r.modality for r in b] and [r.source for r in a] == [
        r.source for r in b
    ]
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(np.array(x.load_image()), np.array(y.load_image()))
        assert torch.equal(x.load_target(), y.load_target())


def test_stage1_export_is_portable(folders, tmp_path, cache):
    saved = tmp_path / "saved"
    to_hf_dataset(folders["stage1"]).save_to_disk(str(saved))
    moved = tmp_path / "moved"
    shutil.copytree(folders["stage1"], moved)  # the JSONL copy stays readable; the original goes
    shutil.rmtree(folders["stage1"])
    try:
        from_jsonl = load_stage1_records([moved / "records.jsonl"])
        _same_stage1(load_stage1_records(saved), from_jsonl)
        _same_stage1(load_stage1_records(to_hf_dataset(moved)), from_jsonl)
        assert any(cache.iterdir())  # embedded bytes became files every reader opens
    finally:
        shutil.copytree(moved, folders["stage1"])


def test_dataset_built_in_memory(cache):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 10, 3), dtype=np.uint8))
    depth = np.arange(80, dtype=np.uint16).reshape(8, 10) * 100
    data = datasets.Dataset.from_dict(
        {
            "image": [rgb],
            "modality": ["depth"],
            "target": [Image.fromarray(depth)],
            "depth_scale": [1000.0],
        }
    )
    (record,) = load_stage1_records(data)
    assert np.array_equal(np.array(record.load_image()), np.array(rgb))
    assert torch.allclose(record.load_target(), torch.from_numpy(depth.astype(np.float32)) / 1000)


def test_hub_id_and_parquet(folders, tmp_path, monkeypatch, cache):
    exported = to_hf_dataset(folders["stage1"])
    calls = []

    def fake_load_dataset(name, split=None, **kwargs):
        calls.append((name, split))
        return exported

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    reference = load_stage1_records([folders["stage1"] / "records.jsonl"])
    _same_stage1(load_stage1_records(["hf://org/synth:validation"]), reference)
    _same_stage1(load_stage1_records("hf://org/synth"), reference)
    assert calls == [("org/synth", "validation"), ("org/synth", "train")]
    monkeypatch.undo()
    exported.to_parquet(str(tmp_path / "rows.parquet"))
    _same_stage1(load_stage1_records([tmp_path / "rows.parquet"]), reference)


def test_sft_export_is_portable(folders, tmp_path, cache):
    reference = load_sft_records([folders["sft"] / "records.jsonl"])
    saved = tmp_path / "sft"
    to_hf_dataset(folders["sft"]).save_to_disk(str(saved))
    records = load_sft_records(saved)
    assert [r.text() for r in records] == [r.text() for r in reference]
    assert [r.meta for r in records] == [r.meta for r in reference]
    mapped = 0
    for a, b in zip(records, reference, strict=True):
        for x, y in zip(a.items, b.items, strict=True):
            assert not str(x.value).startswith(str(folders["sft"]))  # no local paths travel
            if x.target is not None:
                assert torch.equal(a.load_target(x), b.load_target(y))
                mapped += 1
    assert mapped > 0


def test_errors(tmp_path):
    with pytest.raises(TypeError, match="source"):
        list(hf.dataset_rows(tmp_path / "rows.jsonl"))
    with pytest.raises(ValueError, match="split"):
        list(hf.dataset_rows(datasets.DatasetDict({"train": datasets.Dataset.from_dict({"a": [1]})}), "test"))
    with pytest.raises(ValueError, match="hf://"):
        list(hf.dataset_rows("hf://"))
