import math

import numpy as np
import pytest
import torch

from cooper_lib.data.synthetic import (
    SEMANTIC_CLASSES,
    Camera,
    ObjectSpec,
    Room,
    SceneConfig,
    SceneLayout,
    render_layouts,
    render_scene,
    render_scenes,
    sample_layout,
    scene_seed,
)
from cooper_lib.data.synthetic.layout import Appearance

CONFIG = SceneConfig(width=48, height=40)
APPEARANCE = Appearance((0.3,) * 3, (0.5,) * 3, 1.0, (0.8,) * 3, (0.9,) * 3, (0.5,) * 3)
CAMERA = Camera(width=65, height=65, fx=50.0, fy=50.0, cx=32.5, cy=32.5, position=(0.0, 0.0, 1.5), pitch=0.3)
LIGHT = (0.0, -0.5, math.sqrt(0.75))


def layout(objects=(), room=None, camera=CAMERA) -> SceneLayout:
    return SceneLayout(0, camera, LIGHT, tuple(objects), room, APPEARANCE)


def world_rays(camera: Camera) -> np.ndarray:
    """[H, W, 3] float64 world directions with camera-frame z = 1 (so ray t is z-depth)."""
    cols, rows = np.meshgrid(np.arange(camera.width) + 0.5, np.arange(camera.height) + 0.5)
    cam = np.stack([(cols - camera.cx) / camera.fx, (rows - camera.cy) / camera.fy, np.ones_like(cols)], -1)
    return cam @ np.array(camera.rotation()).T


def test_ground_plane_depth_matches_closed_form():
    scene = render_layouts([layout()], SceneConfig(width=65, height=65))[0]
    d = world_rays(CAMERA)
    expected = np.where(d[..., 2] < 0, -CAMERA.position[2] / np.where(d[..., 2] < 0, d[..., 2], -1), 0.0)
    ground = (expected > 0) & (expected < 40.0)
    assert ground.sum() > 1000
    got = scene.depth.double().numpy()
    np.testing.assert_allclose(got[ground], expected[ground], rtol=1e-4)
    assert (scene.semantic.numpy()[ground] == SEMANTIC_CLASSES.index("ground")).all()
    assert (got[~ground] == 0).all() and (scene.semantic.numpy()[~ground] == 0).all()
    # the principal ray meets the ground at distance h / sin(pitch) along the optical axis
    assert scene.depth[32, 32].item() == pytest.approx(1.5 / math.sin(0.3), rel=1e-4)


def test_sphere_depth_matches_closed_form():
    centre, radius = np.array([0.3, 5.0, 0.5]), 0.5
    scene = render_layouts(
        [layout([ObjectSpec("sphere", "red", tuple(centre), (1.0, 1.0, 1.0))])],
        SceneConfig(width=65, height=65),
    )[0]
    d = world_rays(CAMERA)
    oc = np.array(CAMERA.position) - centre
    a, b, c = (d * d).sum(-1), (d * oc).sum(-1), oc @ oc - radius**2
    disc = b * b - a * c
    inside = disc > 1e-3 * a  # rays that clearly hit (grazing rays excluded)
    expected = (-b - np.sqrt(np.maximum(disc, 0))) / a
    assert inside.sum() > 50
    np.testing.assert_allclose(scene.depth.double().numpy()[inside], expected[inside], rtol=1e-4)
    sphere = scene.semantic.numpy() == SEMANTIC_CLASSES.index("sphere")
    assert (sphere[inside]).all()
    assert sphere.sum() == scene.objects[0].visible_pixels == (scene.instance == 1).sum().item()
    assert (disc[sphere] >= -1e-6 * a[sphere]).all()  # no sphere pixel off the sphere


def test_ground_normals_and_sphere_normals():
    scene = render_layouts(
        [layout([ObjectSpec("sphere", "blue", (0.0, 6.0, 0.6), (1.2, 1.2, 1.2))])],
        SceneConfig(width=65, height=65),
    )[0]
    ground = scene.semantic == SEMANTIC_CLASSES.index("ground")
    expected = torch.tensor([0.0, -math.cos(0.3), -math.sin(0.3)])  # world up seen from the camera
    assert torch.allclose(scene.normals[:, ground].T, expected.expand(int(ground.sum()), 3), atol=1e-6)
    norms = scene.normals.norm(dim=0)
    assert torch.allclose(norms[scene.depth > 0], torch.ones(1), atol=1e-5)
    sphere = scene.instance == 1
    facing = (scene.normals[2][sphere] < 0).float().mean()  # visible surfaces face the camera
    assert facing == 1.0


def test_walls_bound_the_view_and_never_hide_objects():
    room = Room(x_min=-3.0, x_max=3.0, y_max=8.0, height=3.0)
    scene = render_layouts(
        [layout([ObjectSpec("box", "green", (1.0, 5.0, 0.4), (0.8, 0.8, 0.8), 0.4)], room)],
        SceneConfig(width=65, height=65),
    )[0]
    wall = scene.semantic == SEMANTIC_CLASSES.index("wall")
    assert wall.sum() > 100
    assert scene.objects[0].occlusion == 0.0 and scene.objects[0].visible_pixels > 0
    d = world_rays(CAMERA)
    # pixels on the back wall: z-depth is where the ray reaches y = 8
    t_back = (8.0 - 0.0) / d[..., 1]
    back = wall.numpy() & (np.abs(CAMERA.position[0] + t_back * d[..., 0]) < 2.9)
    back &= (CAMERA.position[2] + t_back * d[..., 2]) > 0.05
    np.testing.assert_allclose(scene.depth.double().numpy()[back], t_back[back], rtol=1e-4)


def test_segmentation_counts_match_metadata():
    for scene in render_scenes(12, seed=3, config=CONFIG):
        for obj in scene.objects:
            mask = scene.instance == obj.instance_id
            assert mask.sum().item() == obj.visible_pixels
            if obj.visible_pixels:
                assert (scene.semantic[mask] == obj.semantic_id).all()
                rows, cols = mask.nonzero(as_tuple=True)
                assert obj.bbox == (
                    cols.min().item(),
                    rows.min().item(),
                    cols.max().item(),
                    rows.max().item(),
                )
            assert obj.visible_pixels <= obj.projected_pixels
            assert obj.occlusion == pytest.approx(
                1 - obj.visible_pixels / obj.projected_pixels if obj.projected_pixels else 0.0
            )
        objects = scene.semantic >= SEMANTIC_CLASSES.index("sphere")
        assert torch.equal(objects, scene.instance > 0)


def test_projected_pixels_equal_rendering_each_object_alone():
    config = SceneConfig(width=40, height=40, min_objects=4, max_objects=6)
    base = sample_layout(scene_seed(5, 0), config)
    scene = render_layouts([base], config)[0]
    alone = render_layouts(
        [SceneLayout(0, base.camera, base.light, (o,), base.room, base.appearance) for o in base.objects],
        config,
    )
    for obj, single in zip(scene.objects, alone, strict=True):
        assert single.objects[0].visible_pixels == obj.projected_pixels


def test_culling_changes_nothing():
    config = SceneConfig(width=32, height=24, min_objects=3, max_objects=8, wall_probability=0.5)
    layouts = [sample_layout(scene_seed(11, i), config) for i in range(10)]
    fast, slow = render_layouts(layouts, config, cull=True), render_layouts(layouts, config, cull=False)
    for a, b in zip(fast, slow, strict=True):
        for name in ("rgb", "depth", "semantic", "instance", "normals"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert a.objects == b.objects


def test_deterministic_per_seed_and_independent_of_batching():
    scenes = render_scenes(5, seed=7, config=CONFIG, batch_size=3)
    again = render_scenes(5, seed=7, config=CONFIG, batch_size=5)
    for a, b in zip(scenes, again, strict=True):
        single = render_scene(a.seed, CONFIG)
        for other in (b, single):
            for name in ("rgb", "depth", "semantic", "instance", "normals"):
                assert torch.equal(getattr(a, name), getattr(other, name)), name
            assert a.objects == other.objects
    assert len({s.seed for s in scenes}) == 5
    assert not torch.equal(scenes[0].rgb, render_scenes(1, seed=8, config=CONFIG)[0].rgb)


def test_maps_have_documented_shapes_and_ranges():
    scene = render_scene(1, CONFIG)
    assert scene.rgb.shape == (3, 40, 48) and scene.rgb.dtype == torch.float32
    assert 0.0 <= scene.rgb.min() and scene.rgb.max() <= 1.0
    assert scene.depth.shape == (40, 48) and scene.depth.min() >= 0 and scene.depth.max() <= CONFIG.max_depth
    assert scene.semantic.dtype == torch.long and scene.semantic.max() < len(SEMANTIC_CLASSES)
    assert scene.instance.max() <= len(scene.objects)
    assert scene.normals.shape == (3, 40, 48)
    K = scene.camera.intrinsics()
    assert K[0, 0] == scene.camera.fx and K[1, 2] == scene.camera.cy
    assert torch.allclose(
        scene.camera.cam_to_world()[:3, 3], torch.tensor(scene.camera.position, dtype=torch.float64)
    )


def test_object_metadata_is_consistent_with_the_camera():
    for scene in render_scenes(6, seed=2, config=CONFIG):
        cam = scene.camera
        for obj in scene.objects:
            assert obj.distance == pytest.approx(math.dist(obj.centre, cam.position))
            x, y, z = obj.camera_centre
            assert obj.pixel_centre == pytest.approx((cam.fx * x / z + cam.cx, cam.fy * y / z + cam.cy))
            assert math.hypot(x, y, z) == pytest.approx(obj.distance)


def test_render_rejects_mixed_sizes():
    other = Camera(32, 32, 30.0, 30.0, 16.0, 16.0, (0.0, 0.0, 1.0), 0.2)
    with pytest.raises(ValueError, match="one image size"):
        render_layouts([layout(), layout(camera=other)], CONFIG)


def test_scene_without_objects_and_empty_batch():
    assert render_layouts([], CONFIG) == []
    scene = render_layouts([layout()], SceneConfig(width=65, height=65))[0]
    assert scene.objects == [] and scene.instance.max() == 0


def test_bad_counts_are_rejected():
    with pytest.raises(ValueError, match="n:"):
        render_scenes(-1, config=CONFIG)
    with pytest.raises(ValueError, match="batch_size"):
        render_scenes(2, config=CONFIG, batch_size=0)


def _near_ground(scene, config):
    """Ground pixels near enough that the sky fade (which starts at half of max_depth) is zero."""
    ground = scene.semantic == SEMANTIC_CLASSES.index("ground")
    return ground & (scene.depth < 0.5 * config.max_depth)


def test_ground_shading_is_lambert_with_ambient():
    config = SceneConfig(width=65, height=65)
    steep, low = LIGHT, (0.0, -0.8, 0.6)  # unit vectors to the light; the ground normal is +z
    lit = render_layouts([layout()], config)[0]
    other = render_layouts([SceneLayout(0, CAMERA, low, (), None, APPEARANCE)], config)[0]
    near = _near_ground(lit, config)
    assert near.sum() > 500
    a = config.ambient
    expected = (a + (1 - a) * steep[2]) / (a + (1 - a) * low[2])
    ratio = lit.rgb[:, near] / other.rgb[:, near]
    torch.testing.assert_close(ratio, torch.full_like(ratio, expected), rtol=1e-5, atol=0)


def test_an_object_casts_a_shadow_of_ambient_light_only():
    config = SceneConfig(width=65, height=65)
    empty = render_layouts([layout()], config)[0]
    sphere = render_layouts(
        [layout([ObjectSpec("sphere", "red", (0.0, 5.0, 0.5), (1.0, 1.0, 1.0))])], config
    )[0]
    ground = _near_ground(empty, config) & _near_ground(sphere, config)
    ratio = sphere.rgb[:, ground] / empty.rgb[:, ground]
    shadowed = (ratio < 1 - 1e-4).all(dim=0)
    assert shadowed.sum() > 10, "no shadow behind the sphere"
    a = config.ambient
    expected = a / (a + (1 - a) * LIGHT[2])  # light term gone, ambient kept
    torch.testing.assert_close(
        ratio[:, shadowed], torch.full_like(ratio[:, shadowed], expected), rtol=1e-5, atol=0
    )
    torch.testing.assert_close(ratio[:, ~shadowed], torch.ones_like(ratio[:, ~shadowed]), rtol=1e-5, atol=0)
    # exactly the ground points whose ray to the light meets the sphere are shadowed
    d = torch.from_numpy(world_rays(CAMERA))[ground]
    points = torch.tensor(CAMERA.position, dtype=torch.float64) + d * empty.depth[ground].double()[:, None]
    oc = points - torch.tensor([0.0, 5.0, 0.5], dtype=torch.float64)
    b = oc @ torch.tensor(LIGHT, dtype=torch.float64)
    disc = b * b - ((oc * oc).sum(-1) - 0.25)
    blocked = (disc > 0) & (-b - disc.clamp_min(0).sqrt() > 0)
    clear = disc.abs() > 1e-2  # grazing rays may go either way
    assert blocked[clear].sum() > 10
    assert torch.equal(shadowed[clear], blocked[clear])
