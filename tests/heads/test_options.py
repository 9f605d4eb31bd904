import pytest
import torch

from cooper_lib.config import SpatialConfig
from cooper_lib.heads import build_head
from cooper_lib.heads.options import modality_options, record_option, resolve_options, tokenizer_from_option
from cooper_lib.tokenizers import PatchTokenizer, VQConfig, VQTokenizer


def _config(head_options, head="flow"):
    return SpatialConfig(modalities=("depth", "segmentation"), head=head, head_options=head_options)


def test_modality_entries_win_over_shared_options():
    config = _config({"steps": 25, "width": 64, "segmentation": {"steps": 10}})
    assert modality_options(config, "depth") == {"steps": 25, "width": 64}
    assert modality_options(config, "segmentation") == {"steps": 10, "width": 64}
    assert resolve_options(config, "depth", "flow", {"steps": 50, "width": 256, "seed": 0}) == {
        "steps": 25,
        "width": 64,
        "seed": 0,
    }


def test_unknown_and_malformed_options_are_named():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['stpes'\] for the 'flow' head of 'depth'"):
        resolve_options(_config({"stpes": 3}), "depth", "flow", {"steps": 50})
    with pytest.raises(TypeError, match=r"head_options\['depth'\]: expected a dict"):
        modality_options(_config({"depth": 4}), "depth")
    with pytest.raises(TypeError, match="head_options: expected a mapping"):
        SpatialConfig(head_options=[("steps", 3)])
    with pytest.raises(TypeError, match=r"head_options\['depth'\]\['steps'\]: expected int, got '3'"):
        resolve_options(_config({"depth": {"steps": "3"}}), "depth", "flow", {"steps": 50})
    with pytest.raises(TypeError, match=r"head_options\['steps'\]: expected int, got 2.5"):
        resolve_options(_config({"steps": 2.5}), "depth", "flow", {"steps": 50})
    assert resolve_options(_config({"lr": 1}), "depth", "flow", {"lr": 0.5})["lr"] == 1.0


def test_record_option_keeps_other_entries_and_round_trips(tmp_path):
    config = _config({"steps": 25, "depth": {"width": 64}})
    record_option(config, "depth", "tokenizer", {"tokenizer_type": "patch", "patch_size": 4})
    assert config.head_options == {
        "steps": 25,
        "depth": {"width": 64, "tokenizer": {"tokenizer_type": "patch", "patch_size": 4}},
    }
    config.save(tmp_path)
    assert SpatialConfig.load(tmp_path) == config


def test_tokenizer_option_from_folder_or_config(tmp_path):
    vq = VQTokenizer(VQConfig(image_size=16, downsample=4, base_channels=8, codebook_size=16, code_dim=8))
    vq.save_pretrained(tmp_path / "vq")
    config = _config({})
    assert tokenizer_from_option(config, "depth", None, "vq") is None
    loaded = tokenizer_from_option(config, "depth", tmp_path / "vq", "vq")
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), vq.state_dict().values(), strict=True)
    )
    assert config.head_options["depth"]["tokenizer"]["tokenizer_type"] == "vq"
    fresh = tokenizer_from_option(config, "depth", config.head_options["depth"]["tokenizer"], "vq")
    assert isinstance(fresh, VQTokenizer) and fresh.get_config() == vq.get_config()
    with pytest.raises(ValueError, match="expected a 'patch' tokenizer"):
        tokenizer_from_option(config, "depth", tmp_path / "vq", "patch")
    with pytest.raises(FileNotFoundError):
        tokenizer_from_option(config, "depth", tmp_path / "missing", "vq")
    patch = tokenizer_from_option(
        config, "depth", {"tokenizer_type": "patch", "image_size": [8, 8], "patch_size": 2}, "patch"
    )
    assert isinstance(patch, PatchTokenizer) and patch.grid == (4, 4)


def test_head_per_modality():
    config = SpatialConfig(
        modalities=("depth", "segmentation"),
        head={"depth": "flow", "segmentation": "dense"},
        query_grid=(2, 2),
        output_size=(16, 16),
        head_options={"depth": {"width": 32, "blocks": 1}},
    )
    assert config.head_for("depth") == "flow" and config.head_for("segmentation") == "dense"
    assert type(build_head(config, "depth", 32)).__name__ == "FlowHead"
    assert type(build_head(config, "segmentation", 32)).__name__ == "DenseHead"
    assert SpatialConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("head", "error", "message"),
    [
        ({"depth": "flow"}, ValueError, r"must name one head for each of \['depth', 'segmentation'\]"),
        ({"depth": "flow", "segmentation": "dense", "normals": "flow"}, ValueError, "must name one head"),
        ({"depth": "flow", "segmentation": 3}, TypeError, "head.segmentation: expected a string, got 3"),
        (3, TypeError, r"head: expected str \| dict\[str, str\], got 3"),
    ],
)
def test_bad_per_modality_head_is_named(head, error, message):
    with pytest.raises(error, match=message):
        SpatialConfig(head=head)


def test_unknown_per_modality_head_is_named_when_built():
    config = SpatialConfig(head={"depth": "flow", "segmentation": "magic"})
    with pytest.raises(ValueError, match="head: expected one of .* for 'segmentation', got 'magic'"):
        build_head(config, "segmentation", 32)
