import itertools
import math

import pytest

from cooper_lib.data.synthetic import SceneConfig, sample_layout, scene_seed


def layouts(n=60, **kwargs):
    config = SceneConfig(**kwargs)
    return config, [sample_layout(scene_seed(1, i), config) for i in range(n)]


def test_objects_rest_on_the_ground_without_interpenetration():
    config, all_layouts = layouts(min_objects=6, max_objects=8)
    for layout in all_layouts:
        for o in layout.objects:
            assert o.centre[2] == pytest.approx(o.size[1] / 2)  # bottom at z = 0
            assert all(config.object_size[0] <= s <= config.object_size[1] for s in o.size)
        for a, b in itertools.combinations(layout.objects, 2):
            gap = math.hypot(a.centre[0] - b.centre[0], a.centre[1] - b.centre[1])
            assert gap >= a.footprint_radius + b.footprint_radius + config.min_gap - 1e-9


def test_object_names_are_unique_and_centres_project_into_the_image():
    _, all_layouts = layouts(min_objects=4, max_objects=8, width=50, height=30)
    for layout in all_layouts:
        names = [o.name for o in layout.objects]
        assert len(names) == len(set(names))
        for o in layout.objects:
            u, v = layout.camera.project(o.centre)
            assert 0 <= u <= 50 and 0 <= v <= 30


def test_layout_is_a_function_of_the_seed():
    config = SceneConfig()
    assert sample_layout(123, config) == sample_layout(123, config)
    assert sample_layout(123, config) != sample_layout(124, config)


def test_rooms_enclose_objects_and_camera():
    _, all_layouts = layouts(wall_probability=1.0)
    for layout in all_layouts:
        room = layout.room
        assert room.x_min < layout.camera.position[0] < room.x_max
        for o in layout.objects:
            assert (
                room.x_min < o.centre[0] - o.footprint_radius
                and o.centre[0] + o.footprint_radius < room.x_max
            )
            assert o.centre[1] + o.footprint_radius < room.y_max


def test_scene_seeds_are_distinct_across_datasets():
    seeds = {scene_seed(s, i) for s in range(5) for i in range(200)}
    assert len(seeds) == 1000
    with pytest.raises(ValueError, match="seed"):
        scene_seed(-1, 0)
    with pytest.raises(ValueError, match="seed"):
        sample_layout(-3, SceneConfig())


def test_test_split_scenes_are_never_train_scenes():
    train = {scene_seed(s, i) for s in range(5) for i in range(200)}
    test = {scene_seed(s, i, "test") for s in range(5) for i in range(200)}
    assert len(test) == 1000 and not train & test
    assert max(train) < 2**63 <= min(test)  # by construction, for any dataset seed and size
    assert scene_seed(0, 0) == scene_seed(0, 0, "train")  # train seeds are those of earlier versions
    with pytest.raises(ValueError, match="split"):
        scene_seed(0, 0, "val")
