import json

import pytest

from cooper_lib.config import ModalitySpec, SpatialConfig
from cooper_lib.heads import build_head
from cooper_lib.modalities import get_modality


def test_defaults_are_coopers_tags():
    config = SpatialConfig()
    assert config.modalities == ("depth", "segmentation")
    assert config.num_queries == 64
    assert config.spec("depth").open_tag == "<depth-estimation>"
    assert config.spec("segmentation").close_tag == "</segmentation>"


def test_json_round_trip(tmp_path):
    config = SpatialConfig(
        modalities=("depth", "normals", "edges"),
        tags={"edges": ModalitySpec("<edges>", "</edges>", "Find the edges.")},
        query_grid=(4, 6),
        output_size=(32, 48),
        aux_loss_weights={"depth": 2.0},
        added_tokens={"<edges>": 7},
    )
    config.save(tmp_path)
    loaded = SpatialConfig.load(tmp_path)
    assert loaded == config
    assert loaded.spec("edges") == ModalitySpec("<edges>", "</edges>", "Find the edges.")
    # a name only tags define (configs saved before modalities were objects) is a depth-like map
    assert loaded.modality("edges").kind == "float" and loaded.modality("edges").name == "edges"
    assert json.loads((tmp_path / "cooper_config.json").read_text())["query_grid"] == [4, 6]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"modalities": ("depth", "smell")}, "modalities: expected names from"),
        ({"modalities": ()}, "at least one modality"),
        ({"modalities": ("depth", "depth")}, "distinct names"),
        ({"query_grid": (0, 8)}, "query_grid"),
        ({"query_source": "pixels"}, r"query_source: expected one of \['learned', 'image'\], got 'pixels'"),
        ({"output_size": (64,)}, "output_size"),
        ({"depth_mode": "absolute"}, "depth_mode"),
        ({"num_classes": 0}, "num_classes"),
        ({"query_token": "<depth-estimation>"}, "distinct tag"),
        ({"depth_display_range": (5.0, 2.0)}, r"depth_display_range: expected \(near, far\)"),
        ({"depth_display_range": (0.0, 8.0)}, r"depth_display_range: expected \(near, far\)"),
        ({"depth_display_range": (1.0, 8.0), "depth_mode": "relative"}, "each map's own range"),
    ],
)
def test_bad_config_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpatialConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query_grid": (2.5, 2)}, r"query_grid\[0\]: expected int, got 2.5"),
        ({"query_grid": "2x2"}, "query_grid: expected a list, got '2x2'"),
        ({"num_classes": "7"}, "num_classes: expected int, got '7'"),
        ({"head_width": True}, "head_width: expected int, got True"),
        ({"aux_loss_weights": {"depth": "high"}}, "aux_loss_weights.depth: expected float, got 'high'"),
    ],
)
def test_wrong_types_are_rejected_not_converted(kwargs, message):
    with pytest.raises(TypeError, match=message):
        SpatialConfig(**kwargs)
    with pytest.raises(TypeError, match="SpatialConfig." + message):  # the same rule for files
        SpatialConfig.from_dict({k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()})
    assert SpatialConfig(query_grid=[2.0, 3]).query_grid == (2, 3)  # integral numbers are ints


def test_depth_display_range_draws_the_depth_shown_to_the_model(tmp_path):
    config = SpatialConfig(depth_display_range=[0.5, 7])
    assert config.depth_display_range == (0.5, 7.0)
    codec = config.display_codec("depth")
    assert (codec.encoding, codec.min_depth, codec.max_depth) == ("spectral", 0.5, 7.0)
    assert config.display_codec("segmentation").config == SpatialConfig().display_codec("segmentation").config
    default = SpatialConfig().display_codec("depth")
    assert (default.min_depth, default.max_depth) == get_modality("depth").display.value_range
    config.save(tmp_path)
    assert SpatialConfig.load(tmp_path).depth_display_range == (0.5, 7.0)


def test_corrupt_config_file_is_named(tmp_path):
    (tmp_path / "cooper_config.json").write_text('{"query_grid": [2, ')
    with pytest.raises(ValueError, match=r"cooper_config.json: not valid JSON at line 1, column 20"):
        SpatialConfig.load(tmp_path)
    (tmp_path / "cooper_config.json").write_bytes(b'{"depth_mode": "\xff"}')
    with pytest.raises(ValueError, match="cooper_config.json: not UTF-8 text \\(byte 16"):
        SpatialConfig.load(tmp_path)
    (tmp_path / "cooper_config.json").write_text('{"num_classes": "7"}')
    with pytest.raises(
        TypeError, match="cooper_config.json: SpatialConfig.num_classes: expected int, got '7'"
    ):
        SpatialConfig.load(tmp_path)


def test_unknown_head_is_named_when_built():
    config = SpatialConfig(head="magic")
    with pytest.raises(ValueError, match="head: expected one of .*, got 'magic'"):
        build_head(config, "depth", 32)


def test_unknown_field_rejected():
    with pytest.raises(
        ValueError, match=r"SpatialConfig: unknown fields \[.colour.\]; expected a subset of \[.modalities."
    ):
        SpatialConfig.from_dict({"modalities": ["depth"], "colour": 1})


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="cooper_config.json"):
        SpatialConfig.load(tmp_path)


def test_default_modalities_have_distinct_tags():
    tags = [
        t
        for name in ("depth", "segmentation", "normals")
        for t in (get_modality(name).open_tag, get_modality(name).close_tag)
    ]
    assert len(set(tags)) == len(tags)
