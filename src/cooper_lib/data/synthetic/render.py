"""Rendering a batch of scene layouts into maps and metadata in one set of tensor operations.

Every pixel casts one ray through its centre (no anti-aliasing, so every label is exact).
Objects are intersected by `raycast`; the ground and walls are planes handled here. Shading is
Lambertian with an ambient term; a shadow ray towards the directional light from every lit hit
point decides whether the light term applies. Directions are unit vectors in the world frame, so
t is metres along the ray; z-depth is t times the cosine between the ray and the optical axis.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from .config import SEMANTIC_CLASSES, SHAPES, SceneConfig
from .geometry import box_normal, cone_normal, cylinder_normal, sphere_normal
from .layout import SceneLayout, sample_layout
from .raycast import EPS, Objects, cast_primary, cast_shadow, screen_rects
from .scene import SceneObject, SpatialScene

_SHADOW_OFFSET = 2e-3  # shadow-ray origins are lifted off the surface along the normal (m)
_GROUND, _WALL = SEMANTIC_CLASSES.index("ground"), SEMANTIC_CLASSES.index("wall")
# environment surfaces: 0 none, 1 ground, 2 back wall (y = y_max), 3 left wall (x = x_min), 4 right wall
_SURFACE_CLASS = torch.tensor([0, _GROUND, _WALL, _WALL, _WALL])  # by surface id
_SURFACE_NORMAL = torch.tensor(
    [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]
)
_SHAPE_CLASS = torch.tensor([SEMANTIC_CLASSES.index(s) for s in SHAPES])


SPLITS = ("train", "test")
_TEST_BIT = 1 << 63  # set in every test scene's seed and in no train scene's


def scene_seed(seed: int, index: int, split: str = "train") -> int:
    """Seed of the `index`-th scene of a dataset drawn with `seed` from `split` (well mixed, so
    datasets made with different seeds do not share scenes).

    Train seeds are below 2**63 and test seeds at or above it, so no test scene is a training
    scene whatever the dataset seeds and sizes; ``split="train"`` gives the seeds of earlier versions.
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed/index: expected non-negative ints, got {seed}, {index}")
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    entropy = [seed, index] if split == "train" else [seed, index, 1]
    mixed = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]) >> 1
    return mixed if split == "train" else _TEST_BIT | mixed


def _ground_hit(oz: Tensor, dz: Tensor) -> Tensor:
    """Ray parameter of the ground plane z = 0 (+inf where the ray does not go down to it)."""
    t = -oz / dz
    return torch.where(t > EPS, t, math.inf)


def _wall_hits(room: Tensor, ox, oy, oz, dx, dy, dz) -> tuple[Tensor, Tensor]:
    """Nearest wall of each room [R, 4] (x_min, x_max, y_max, height): (t [R, N], surface id [R, N])."""
    x_min, x_max, y_max, top = (room[:, i : i + 1] for i in range(4))
    best = torch.full(torch.broadcast_shapes(ox.shape, dx.shape), math.inf)
    which = torch.zeros(best.shape, dtype=torch.long)
    walls = (  # surface id, t, coordinate along the wall, its bounds
        (2, (y_max - oy) / dy, ox, dx, x_min, x_max),  # back wall, between the side walls
        (3, (x_min - ox) / dx, oy, dy, -math.inf, y_max),  # side walls, up to the back wall
        (4, (x_max - ox) / dx, oy, dy, -math.inf, y_max),
    )
    for surface, t, o_along, d_along, low, high in walls:
        along, z = o_along + t * d_along, oz + t * dz
        ok = (t > EPS) & (t < best) & (along >= low) & (along <= high) & (z >= 0) & (z <= top)
        best = torch.where(ok, t, best)
        which = torch.where(ok, surface, which)
    return best, which


def _object_normals(
    objects: Objects, gid: Tensor, shape_of: Tensor, points: tuple[Tensor, ...], out: list[Tensor]
):
    """Write world-frame normals of the object pixels into `out` = [nx, ny, nz]; all arguments flat
    over the batch's pixels (gid: object id or -1, shape_of: its shape index)."""
    for shape, _ in objects.by_shape():
        pix = ((shape_of == shape) & (gid >= 0)).nonzero().squeeze(1)
        g = gid[pix]
        c, half = objects.centre[g], objects.half[g]
        lx, ly, lz = (points[i][pix] - c[:, i] for i in range(3))
        name = SHAPES[shape]
        if name == "sphere":
            n = sphere_normal(lx, ly, lz, half[:, 0])
        elif name == "box":
            cs, sn = objects.cos[g], objects.sin[g]
            bx, by, bz = box_normal(cs * lx + sn * ly, cs * ly - sn * lx, lz, half.unbind(1))
            n = (cs * bx - sn * by, sn * bx + cs * by, bz)
        elif name == "cylinder":
            n = cylinder_normal(lx, ly, lz, half[:, 0], half[:, 2])
        else:
            n = cone_normal(lx, ly, lz, half[:, 0], half[:, 2])
        for dst, src in zip(out, n, strict=True):
            dst[pix] = src


def _per_scene(layouts: Sequence[SceneLayout]) -> dict[str, Tensor]:
    """Per-scene values as [B, 1] columns or [B, C] tables."""
    cams = [lay.camera for lay in layouts]
    app = [lay.appearance for lay in layouts]

    def col(values) -> Tensor:
        return torch.tensor(values, dtype=torch.float32)[:, None]

    def table(values) -> Tensor:
        return torch.tensor(values, dtype=torch.float32)

    return {
        "fx": col([c.fx for c in cams]),
        "fy": col([c.fy for c in cams]),
        "cx": col([c.cx for c in cams]),
        "cy": col([c.cy for c in cams]),
        "cos_p": col([math.cos(c.pitch) for c in cams]),
        "sin_p": col([math.sin(c.pitch) for c in cams]),
        "position": table([c.position for c in cams]),
        "light": table([lay.light for lay in layouts]),
        "room": table(
            [(r.x_min, r.x_max, r.y_max, r.height) if (r := lay.room) else (0.0,) * 4 for lay in layouts]
        ),
        "tile": col([a.tile for a in app]),
        "ground_dark": table([a.ground_dark for a in app]),
        "ground_light": table([a.ground_light for a in app]),
        "wall": table([a.wall for a in app]),
        "sky_horizon": table([a.sky_horizon for a in app]),
        "sky_zenith": table([a.sky_zenith for a in app]),
    }


def _columns(table: Tensor) -> tuple[Tensor, ...]:
    """[B, C] -> C tensors of shape [B, 1], ready to broadcast against [B, N] pixels."""
    return tuple(table[:, i : i + 1] for i in range(table.shape[1]))


def _camera_rays(s: dict[str, Tensor], height: int, width: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Unit world directions (dx, dy, dz) of the rays through the pixel centres and the cosine of
    each ray to the optical axis (z-depth per metre along the ray), all [B, N]."""
    cols = torch.arange(width, dtype=torch.float32).repeat(height) + 0.5
    rows = torch.arange(height, dtype=torch.float32).repeat_interleave(width) + 0.5
    xc, yc = (cols - s["cx"]) / s["fx"], (rows - s["cy"]) / s["fy"]
    cos_ray = torch.rsqrt(xc * xc + yc * yc + 1.0)
    # camera frame (x, y, 1) -> world: x' = x, y' = cos - sin * y, z' = -(cos * y + sin)
    return (
        xc * cos_ray,
        (s["cos_p"] - s["sin_p"] * yc) * cos_ray,
        -(s["cos_p"] * yc + s["sin_p"]) * cos_ray,
        cos_ray,
    )


def render_layouts(
    layouts: Sequence[SceneLayout], config: SceneConfig, cull: bool = True
) -> list[SpatialScene]:
    """Render layouts that share one image size, in a single batch of tensor operations.

    `cull=False` tests every object against every pixel of its scene instead of its screen
    rectangle: the same result, slower (kept to check the culling).
    """
    if not layouts:
        return []
    height, width = layouts[0].camera.height, layouts[0].camera.width
    if any((lay.camera.height, lay.camera.width) != (height, width) for lay in layouts):
        raise ValueError("layouts: expected one image size for the whole batch")
    n_scenes, n_rays = len(layouts), height * width
    s = _per_scene(layouts)
    objects = Objects(layouts)
    rooms = torch.tensor([b for b, lay in enumerate(layouts) if lay.room is not None], dtype=torch.long)
    full = torch.tensor([[0, 0, width - 1, height - 1]] * objects.count, dtype=torch.long).reshape(-1, 4)

    # nearest surface along each primary ray: objects, then ground and walls
    dx, dy, dz, cos_ray = _camera_rays(s, height, width)
    origin = _columns(s["position"])
    rects = screen_rects(objects.corners(), s, objects.scene, width, height) if cull else full
    t_obj, gid, projected = cast_primary(
        objects, rects, width, n_rays, s["position"], (dx.flatten(), dy.flatten(), dz.flatten())
    )
    t_obj, gid = t_obj.view(n_scenes, n_rays), gid.view(n_scenes, n_rays)
    t_env = _ground_hit(origin[2], dz)
    surface = torch.isfinite(t_env).long()
    if rooms.numel():
        t_wall, wall = _wall_hits(s["room"][rooms], *(x[rooms] for x in (*origin, dx, dy, dz)))
        closer = t_wall < t_env[rooms]
        t_env[rooms] = torch.where(closer, t_wall, t_env[rooms])
        surface[rooms] = torch.where(closer, wall, surface[rooms])
    on_obj = t_obj < t_env
    t = torch.where(on_obj, t_obj, t_env)
    depth = t * cos_ray
    hit = on_obj | (torch.isfinite(t_env) & (depth <= config.max_depth))
    surface = torch.where(hit & ~on_obj, surface, 0)
    gid = torch.where(on_obj, gid, -1)
    depth = torch.where(hit, depth, 0.0)
    t = torch.where(hit, t, 0.0)
    points = tuple(o + t * d for o, d in zip(origin, (dx, dy, dz), strict=True))

    # labels and world-frame normals
    obj_shape = objects.gather(objects.shape, gid)
    semantic = torch.where(on_obj, _SHAPE_CLASS[obj_shape], _SURFACE_CLASS[surface])
    instance = torch.where(on_obj, objects.gather(objects.slot, gid) + 1, 0)
    normal = [_SURFACE_NORMAL[surface, i] for i in range(3)]
    _object_normals(
        objects,
        gid.flatten(),
        obj_shape.flatten(),
        [p.flatten() for p in points],
        [n.view(-1) for n in normal],
    )

    # Lambert + ambient; shadow rays towards the light from the hit points that face it
    light = _columns(s["light"])
    cos_light = sum(n * c for n, c in zip(normal, light, strict=True)).clamp_min(0.0)
    lifted = tuple(p + _SHADOW_OFFSET * n for p, n in zip(points, normal, strict=True))
    shadow_rects = (
        screen_rects(objects.shadow_volume(s["light"]), s, objects.scene, width, height) if cull else full
    )
    need = (hit & (cos_light > 0)).flatten()
    blocked = cast_shadow(
        objects, shadow_rects, width, n_rays, [p.flatten() for p in lifted], s["light"], need
    )
    blocked = blocked.view(n_scenes, n_rays)
    if rooms.numel():
        blocked[rooms] |= torch.isfinite(
            _wall_hits(s["room"][rooms], *(x[rooms] for x in (*lifted, *light)))[0]
        )
    shading = config.ambient + (1.0 - config.ambient) * cos_light * (~blocked)
    albedo = _albedo(objects, s, gid, on_obj, semantic, points)
    fade = ((depth / config.max_depth - 0.5) * 2.0).clamp(0.0, 1.0) * (
        ~on_obj
    )  # far ground melts into the sky
    up = dz.clamp(0.0, 1.0).sqrt()
    rgb = []
    for a, horizon, zenith in zip(albedo, _columns(s["sky_horizon"]), _columns(s["sky_zenith"]), strict=True):
        sky = horizon + (zenith - horizon) * up
        lit = (a * shading).clamp(0.0, 1.0)
        rgb.append(torch.where(hit, lit * (1.0 - fade) + sky * fade, sky))

    nx, ny, nz = normal  # world -> camera frame: x = x', y = -sin*y' - cos*z', z = cos*y' - sin*z'
    cam_normals = (nx, -s["sin_p"] * ny - s["cos_p"] * nz, s["cos_p"] * ny - s["sin_p"] * nz)
    shape_hw = (n_scenes, height, width)
    maps = {
        "rgb": torch.stack(rgb, 1).view(n_scenes, 3, height, width),
        "depth": depth.view(shape_hw),
        "semantic": semantic.view(shape_hw),
        "instance": instance.view(shape_hw),
        "normals": torch.stack(cam_normals, 1).view(n_scenes, 3, height, width),
    }
    stats = _object_stats(objects, gid.flatten(), projected, width, n_rays)
    firsts = [0]
    for layout in layouts:
        firsts.append(firsts[-1] + len(layout.objects))
    return [_scene(layout, b, firsts[b], maps, stats) for b, layout in enumerate(layouts)]


def _albedo(objects: Objects, s: dict[str, Tensor], gid, on_obj, semantic, points) -> list[Tensor]:
    """Per-pixel surface colour [B, N] x 3: object colours, walls, a two-tone checkered ground."""
    obj_colour = objects.gather(objects.colour, gid)
    parity = ((points[0] / s["tile"]).floor() + (points[1] / s["tile"]).floor()).remainder(2) > 0
    is_wall = semantic == _WALL
    channels = zip(_columns(s["ground_light"]), _columns(s["ground_dark"]), _columns(s["wall"]), strict=True)
    return [
        torch.where(on_obj, obj_colour[..., i], torch.where(is_wall, wall, torch.where(parity, light, dark)))
        for i, (light, dark, wall) in enumerate(channels)
    ]


def _object_stats(
    objects: Objects, gid: Tensor, projected: Tensor, width: int, n_rays: int
) -> dict[str, list]:
    """Per object (flat order): visible and alone pixel counts, and the inclusive bbox of the visible pixels."""
    pix = (gid >= 0).nonzero().squeeze(1)
    owner = gid[pix]
    local = pix % n_rays
    bounds = []
    for coord in (local % width, local // width):
        for reduce, init in (("amin", n_rays), ("amax", -1)):
            out = torch.full((objects.count,), init, dtype=torch.long)
            bounds.append(out.scatter_reduce_(0, owner, coord, reduce=reduce))
    u0, u1, v0, v1 = bounds
    return {
        "visible": torch.bincount(owner, minlength=objects.count).tolist(),
        "projected": projected.tolist(),
        "bbox": torch.stack([u0, v0, u1, v1], -1).tolist(),
    }


def _scene(
    layout: SceneLayout, b: int, first: int, maps: dict[str, Tensor], stats: dict[str, list]
) -> SpatialScene:
    """Scene `b` of the batch; its objects are entries first, first + 1, ... of the flat stats."""
    camera = layout.camera
    objects = []
    for k, spec in enumerate(layout.objects):
        visible, projected = stats["visible"][first + k], stats["projected"][first + k]
        objects.append(
            SceneObject(
                shape=spec.shape,
                colour=spec.colour,
                centre=spec.centre,
                size=spec.size,
                yaw=spec.yaw,
                instance_id=k + 1,
                distance=math.dist(spec.centre, camera.position),
                camera_centre=camera.to_camera(spec.centre),
                pixel_centre=camera.project(spec.centre),
                visible_pixels=visible,
                projected_pixels=projected,
                occlusion=1.0 - visible / projected if projected else 0.0,
                bbox=tuple(stats["bbox"][first + k]) if visible else None,
            )
        )
    return SpatialScene(
        seed=layout.seed,
        rgb=maps["rgb"][b],
        depth=maps["depth"][b],
        semantic=maps["semantic"][b],
        instance=maps["instance"][b],
        normals=maps["normals"][b],
        camera=camera,
        light=layout.light,
        objects=objects,
        room=layout.room,
        appearance=layout.appearance,
    )


def render_scene(seed: int, config: SceneConfig | None = None) -> SpatialScene:
    """Render the scene with this seed (`SpatialScene.seed` is the same seed)."""
    config = config or SceneConfig()
    return render_layouts([sample_layout(seed, config)], config)[0]


def default_batch_size(config: SceneConfig) -> int:
    """Scenes per batch: about 2^18 rays (64 scenes at 64 x 64, 4 at 256 x 256), enough to amortise
    the per-operation overhead of torch (see benchmarks/synthetic.py)."""
    return max(1, (1 << 18) // (config.width * config.height))


def iter_scenes(
    n: int,
    seed: int = 0,
    config: SceneConfig | None = None,
    batch_size: int | None = None,
    split: str = "train",
) -> Iterator[SpatialScene]:
    """Yield scenes `scene_seed(seed, 0, split) ... scene_seed(seed, n - 1, split)`, rendered in batches."""
    config = config or SceneConfig()
    if n < 0:
        raise ValueError(f"n: expected >= 0 scenes, got {n}")
    batch_size = default_batch_size(config) if batch_size is None else batch_size
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        layouts = [
            sample_layout(scene_seed(seed, i, split), config)
            for i in range(start, min(n, start + batch_size))
        ]
        yield from render_layouts(layouts, config)


def render_scenes(
    n: int,
    seed: int = 0,
    config: SceneConfig | None = None,
    batch_size: int | None = None,
    split: str = "train",
) -> list[SpatialScene]:
    """Render `n` scenes deterministically from `seed` and `split` (see `iter_scenes`)."""
    return list(iter_scenes(n, seed, config, batch_size, split))
