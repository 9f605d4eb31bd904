"""`benchmarks/table1_map_scale.py`: a depth map's error split into its scale and the rest."""

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "table1_map_scale.py"
spec = importlib.util.spec_from_file_location("table1_map_scale", SCRIPT)
map_scale = importlib.util.module_from_spec(spec)
spec.loader.exec_module(map_scale)


def _scene(instance: torch.Tensor, distance: float = 4.0) -> SimpleNamespace:
    ids = sorted(set(instance.unique().tolist()) - {0})
    return SimpleNamespace(
        instance=instance, objects=[SimpleNamespace(instance_id=i, distance=distance) for i in ids]
    )


def _maps():
    """Three 4 x 4 scenes 4 m deep everywhere, an object (instance 1) in the top-left 2 x 2: one drawn
    twice as deep all over (its scale wrong), one with the room right and the object at 2 m, one
    drawn with the room right and the object at 4.4 m."""
    instance = torch.zeros(4, 4, dtype=torch.long)
    instance[:2, :2] = 1
    true = torch.full((3, 4, 4), 4.0)
    pred = true.clone()
    pred[0] *= 2
    pred[1][instance == 1] = 2.0
    pred[2][instance == 1] = 4.4
    return pred, true, [_scene(instance)] * 3


def test_the_room_carries_the_maps_scale_and_the_object_its_own_error():
    pred, true, scenes = _maps()
    rooms, objects = map_scale.scale_errors(pred, true, scenes)
    assert rooms == pytest.approx([math.log(2), 0.0, 0.0])
    assert [o for o, _ in objects] == pytest.approx([math.log(2), math.log(0.5), math.log(1.1)])
    assert [r for _, r in objects] == pytest.approx(rooms)


def test_the_room_is_the_median_of_its_pixels_and_absent_without_any():
    pred, true, scenes = _maps()
    pred[0, 3, 3] = 40.0  # one far-off room pixel a mean would follow
    rooms, _ = map_scale.scale_errors(pred[:1], true[:1], scenes[:1])
    assert rooms == pytest.approx([math.log(2)])
    everywhere = _scene(torch.ones(4, 4, dtype=torch.long))
    rooms, objects = map_scale.scale_errors(pred[:1], true[:1], [everywhere])
    assert rooms == [None] and objects[0][1] is None


def test_summary_rescaling_recovers_a_map_wrong_only_in_scale():
    pred, true, scenes = _maps()
    row = map_scale.summary(pred, true, scenes)
    assert set(row) == set(map_scale.COLUMNS)
    assert row["room_sd"] == pytest.approx(
        torch.tensor([math.log(2), 0.0, 0.0], dtype=torch.float64).std().item()
    )
    errors = torch.tensor([math.log(2), math.log(0.5), math.log(1.1)], dtype=torch.float64)
    assert row["object_sd"] == pytest.approx(errors.std().item())
    assert row["object_less_room_sd"] == pytest.approx(
        torch.tensor([0.0, math.log(0.5), math.log(1.1)]).double().std().item()
    )
    assert row["read_off_true"] == pytest.approx(100.0)  # the true maps show each object at its distance
    assert row["read_off"] < row["read_off_rescaled"] < row["read_off_true"]
    # the first map, its scale put right, reads as the true map does; the others are left as drawn
    others = 100 * map_scale.object_distance_mra(pred[1:], scenes[1:])
    assert row["read_off_rescaled"] == pytest.approx((100.0 + 2 * others) / 3)
