import pytest

from cooper_lib.data.synthetic import SEMANTIC_CLASSES, SHAPES, SceneConfig
from cooper_lib.data.synthetic.config import class_id


def test_json_round_trip():
    config = SceneConfig(width=96, height=72, max_objects=3, shapes=("box", "cone"), wall_probability=0.0)
    assert SceneConfig.from_json(config.to_json()) == config
    assert SceneConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"width": 4}, "width"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects"),
        ({"max_objects": 9}, "max_objects"),
        ({"shapes": ("torus",)}, "shapes"),
        ({"object_size": (1.0, 0.5)}, "object_size"),
        ({"camera_pitch": (10.0, 95.0)}, "camera_pitch"),
        ({"ambient": 1.5}, "ambient"),
        ({"wall_probability": -0.1}, "wall_probability"),
        ({"max_depth": 10.0}, "max_depth"),
    ],
)
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SceneConfig(**kwargs)


def test_unknown_keys_are_rejected():
    with pytest.raises(
        ValueError, match=r"SceneConfig: unknown fields \['colour'\]; expected a subset of \['width'"
    ):
        SceneConfig.from_dict({"width": 64, "colour": "red"})


def test_classes():
    assert SEMANTIC_CLASSES[:3] == ("background", "ground", "wall")
    assert [class_id(s) for s in SHAPES] == [3, 4, 5, 6]
    with pytest.raises(ValueError, match="class name"):
        class_id("torus")
