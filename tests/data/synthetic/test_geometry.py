import math

import pytest
import torch

from cooper_lib.data.synthetic.geometry import (
    box_hit,
    box_normal,
    cone_hit,
    cone_normal,
    cylinder_hit,
    cylinder_normal,
    sphere_hit,
    sphere_normal,
)

EPS = 1e-4


def ray(origin, direction):
    """Component tensors of one ray (direction normalised)."""
    d = torch.tensor(direction, dtype=torch.float64)
    d = d / d.norm()
    o = torch.tensor(origin, dtype=torch.float64)
    return (*o.reshape(3, 1), *d.reshape(3, 1))


def t(value):
    return torch.tensor([value], dtype=torch.float64)


def test_sphere_front_hit_and_miss():
    assert sphere_hit(*ray((0, -5, 0), (0, 1, 0)), t(1.0), EPS).item() == pytest.approx(4.0)
    assert math.isinf(sphere_hit(*ray((0, -5, 1.01), (0, 1, 0)), t(1.0), EPS).item())
    assert math.isinf(sphere_hit(*ray((0, -5, 0), (0, -1, 0)), t(1.0), EPS).item())  # sphere behind


def test_sphere_hit_from_inside_is_the_exit():
    assert sphere_hit(*ray((0, 0, 0), (1, 0, 0)), t(2.0), EPS).item() == pytest.approx(2.0)


def test_box_faces():
    half = (t(1.0), t(2.0), t(0.5))
    assert box_hit(*ray((0, -5, 0), (0, 1, 0)), half, EPS).item() == pytest.approx(3.0)
    assert box_hit(*ray((5, 0, 0), (-1, 0, 0)), half, EPS).item() == pytest.approx(4.0)
    assert box_hit(*ray((0.3, 0.2, 4), (0, 0, -1)), half, EPS).item() == pytest.approx(3.5)
    assert math.isinf(box_hit(*ray((1.2, -5, 0), (0, 1, 0)), half, EPS).item())


def test_box_diagonal_entry():
    # enters through the x = -1 face: from (-3, 0, 0) along (1, 0.25, 0) normalised
    d = torch.tensor([1.0, 0.25, 0.0], dtype=torch.float64)
    got = box_hit(*ray((-3, 0, 0), d.tolist()), (t(1.0), t(1.0), t(1.0)), EPS).item()
    assert got == pytest.approx(2.0 * d.norm().item())


def test_cylinder_side_and_caps():
    r, hh = t(0.5), t(1.0)
    assert cylinder_hit(*ray((0, -5, 0.3), (0, 1, 0)), r, hh, EPS).item() == pytest.approx(4.5)
    assert cylinder_hit(*ray((0.1, 0.2, 3), (0, 0, -1)), r, hh, EPS).item() == pytest.approx(2.0)
    assert cylinder_hit(*ray((0.1, 0.2, -3), (0, 0, 1)), r, hh, EPS).item() == pytest.approx(2.0)
    assert math.isinf(cylinder_hit(*ray((0, -5, 1.2), (0, 1, 0)), r, hh, EPS).item())  # above the top
    assert math.isinf(cylinder_hit(*ray((0.6, 0, 3), (0, 0, -1)), r, hh, EPS).item())  # beside it


def test_cone_side_and_base():
    r, hh = t(1.0), t(1.0)  # base radius 1 at z = -1, apex at z = 1; radius at z is (1 - z) / 2
    for z in (-0.5, 0.0, 0.5):
        expected = 5.0 - (1.0 - z) / 2.0
        assert cone_hit(*ray((0, -5, z), (0, 1, 0)), r, hh, EPS).item() == pytest.approx(expected)
    assert cone_hit(*ray((0.2, 0.1, -4), (0, 0, 1)), r, hh, EPS).item() == pytest.approx(3.0)  # base disc
    assert math.isinf(cone_hit(*ray((0, -5, 1.5), (0, 1, 0)), r, hh, EPS).item())  # above the apex
    assert math.isinf(cone_hit(*ray((0.8, -5, 0.5), (0, 1, 0)), r, hh, EPS).item())  # beside the narrow top


def test_cone_from_above_hits_the_side_at_the_right_height():
    # straight down at x = 0.5: the side has radius 0.5 at z = 0 (z = 1 - 2 * radius)
    got = cone_hit(*ray((0.5, 0.0, 3.0), (0, 0, -1)), t(1.0), t(1.0), EPS).item()
    assert got == pytest.approx(3.0)


def test_hits_broadcast_over_many_rays():
    ox, oy, oz = (torch.zeros(5, 1) for _ in range(3))
    oy -= 5.0
    dx = torch.zeros(5, 7)
    dz = torch.linspace(-0.1, 0.1, 7).expand(5, 7)
    dy = torch.sqrt(1 - dz**2)
    radius = torch.linspace(0.5, 1.0, 5)[:, None]
    assert sphere_hit(ox, oy, oz, dx, dy, dz, radius, EPS).shape == (5, 7)
    assert cone_hit(ox, oy, oz, dx, dy, dz, radius, radius, EPS).shape == (5, 7)


def test_normals_are_outward_units():
    n = sphere_normal(t(0.0), t(-2.0), t(0.0), t(2.0))
    assert [v.item() for v in n] == [0.0, -1.0, 0.0]
    n = box_normal(t(0.2), t(-2.0), t(0.1), (t(1.0), t(2.0), t(0.5)))
    assert [v.item() for v in n] == [0.0, -1.0, 0.0]
    n = cylinder_normal(t(0.1), t(0.2), t(1.0), t(0.5), t(1.0))
    assert [v.item() for v in n] == [0.0, 0.0, 1.0]
    n = cylinder_normal(t(0.3), t(-0.4), t(0.2), t(0.5), t(1.0))
    assert [v.item() for v in n] == pytest.approx([0.6, -0.8, 0.0])
    n = cone_normal(t(0.1), t(0.2), t(-1.0), t(1.0), t(1.0))
    assert [v.item() for v in n] == [0.0, 0.0, -1.0]
    # side point at z = 0 (radius 0.5) on the -y side: normal tilts up by atan(k), k = 0.5
    n = cone_normal(t(0.0), t(-0.5), t(0.0), t(1.0), t(1.0))
    expected = torch.tensor([0.0, -1.0, 0.5]) / math.sqrt(1.25)
    assert [v.item() for v in n] == pytest.approx(expected.tolist())
