"""Casting rays of a batch of scenes against their objects, with screen-space culling.

An object can only be hit by the rays of its own scene whose pixels fall inside the screen
rectangle of its bounding box (primary rays) or of its shadow volume (shadow rays: the bounding
box swept away from the light down to just below the ground, since every shaded point lies at
z >= 0, give or take the small lift of shadow-ray origins off their surface).
Each (object, pixel) pair inside such a rectangle becomes one entry of a flat list, and all pairs of
one shape are intersected in a single call, whatever the number of scenes in the batch. Culling is
exact: a pixel outside the rectangle cannot see the object, so `cull=False` (every pixel of the
scene) gives the same images, only slower.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from .config import COLOURS, SHAPES
from .geometry import box_hit, cone_hit, cylinder_hit, sphere_hit
from .layout import SceneLayout

EPS = 1e-4  # smallest accepted ray parameter (m)
_SHADOW_FLOOR = -0.01  # shadow volumes reach down to this height (m), below every shaded point
_CORNER_SIGNS = torch.tensor(
    [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=torch.float32
)


class Objects:
    """All objects of a batch as flat tensors over M objects, in scene order then slot order."""

    def __init__(self, layouts: Sequence[SceneLayout]):
        rows = [(b, k, o) for b, layout in enumerate(layouts) for k, o in enumerate(layout.objects)]
        specs = [o for *_, o in rows]
        self.count = len(rows)
        self.scene = torch.tensor([b for b, _, _ in rows], dtype=torch.long)
        self.slot = torch.tensor([k for _, k, _ in rows], dtype=torch.long)
        self.shape = torch.tensor([SHAPES.index(o.shape) for o in specs], dtype=torch.long)
        self.centre = torch.tensor([o.centre for o in specs], dtype=torch.float32).reshape(-1, 3)
        # half extents along local x, local y, world z (the size tuple is width, height, depth)
        self.half = torch.tensor([(o.size[0] / 2, o.size[2] / 2, o.size[1] / 2) for o in specs]).reshape(
            -1, 3
        )
        self.cos = torch.tensor([math.cos(o.yaw) for o in specs], dtype=torch.float32)
        self.sin = torch.tensor([math.sin(o.yaw) for o in specs], dtype=torch.float32)
        self.colour = torch.tensor([COLOURS[o.colour] for o in specs], dtype=torch.float32).reshape(-1, 3)

    def gather(self, values: Tensor, gid: Tensor) -> Tensor:
        """values[gid] per pixel; pixels with gid < 0 get row 0 (or zeros when the batch has no objects)."""
        if not self.count:
            return torch.zeros(gid.shape + values.shape[1:], dtype=values.dtype)
        return values[gid.clamp_min(0)]

    def by_shape(self) -> Iterator[tuple[int, Tensor]]:
        """(shape index, ids of the objects of that shape) for every shape present."""
        for s in range(len(SHAPES)):
            idx = (self.shape == s).nonzero().squeeze(1)
            if idx.numel():
                yield s, idx

    def corners(self) -> Tensor:
        """[M, 8, 3] world corners of each object's (yawed) bounding box."""
        local = _CORNER_SIGNS * self.half[:, None, :]
        cos, sin = self.cos[:, None], self.sin[:, None]
        x = cos * local[..., 0] - sin * local[..., 1]
        y = sin * local[..., 0] + cos * local[..., 1]
        return torch.stack([x, y, local[..., 2]], -1) + self.centre[:, None, :]

    def shadow_volume(self, light: Tensor) -> Tensor:
        """[M, 16, 3] points whose convex hull holds every point above `_SHADOW_FLOOR` that the object
        can shade: the bounding-box corners and their projections along the light [B, 3] (which
        always points up) onto the plane z = `_SHADOW_FLOOR`."""
        corners = self.corners()
        towards = light[self.scene][:, None, :]
        drop = (corners[..., 2:3] - _SHADOW_FLOOR) / towards[..., 2:3]
        return torch.cat([corners, corners - drop * towards], 1)

    def to_local(self, g: Tensor, ox, oy, oz, dx, dy, dz) -> tuple[Tensor, ...]:
        """Rays (origins relative to the object centres) rotated into the frames of objects `g`."""
        cos, sin = self.cos[g], self.sin[g]
        return cos * ox + sin * oy, cos * oy - sin * ox, oz, cos * dx + sin * dy, cos * dy - sin * dx, dz

    def hit(self, shape: int, g: Tensor, ox, oy, oz, dx, dy, dz) -> Tensor:
        """Ray parameters of rays (origins relative to the centres, unit directions) against objects `g`
        of one `shape`; +inf where they miss."""
        half = self.half[g]
        name = SHAPES[shape]
        if name == "sphere":
            return sphere_hit(ox, oy, oz, dx, dy, dz, half[:, 0], EPS)
        if name == "box":
            return box_hit(*self.to_local(g, ox, oy, oz, dx, dy, dz), half.unbind(1), EPS)
        if name == "cylinder":
            return cylinder_hit(ox, oy, oz, dx, dy, dz, half[:, 0], half[:, 2], EPS)
        return cone_hit(ox, oy, oz, dx, dy, dz, half[:, 0], half[:, 2], EPS)


def screen_rects(points: Tensor, cams: dict[str, Tensor], scene: Tensor, width: int, height: int) -> Tensor:
    """[M, 4] inclusive pixel rectangles (u0, v0, u1, v1) holding the projections of `points` [M, P, 3]
    (all pixels whose centre lies in their bounding box, plus a pixel of margin); the whole frame
    where a point is not in front of the camera, an empty rectangle (u1 < u0) where all are outside."""
    rel = points - cams["position"][scene][:, None, :]
    cos, sin = cams["cos_p"][scene], cams["sin_p"][scene]  # [M, 1]
    x = rel[..., 0]
    y = -sin * rel[..., 1] - cos * rel[..., 2]
    z = cos * rel[..., 1] - sin * rel[..., 2]
    in_front = (z > 1e-3).all(1)
    z = z.clamp_min(1e-3)
    u = cams["fx"][scene] * x / z + cams["cx"][scene]
    v = cams["fy"][scene] * y / z + cams["cy"][scene]
    lo_u, hi_u = (u.amin(1) - 0.5).floor() - 1, (u.amax(1) - 0.5).ceil() + 1
    lo_v, hi_v = (v.amin(1) - 0.5).floor() - 1, (v.amax(1) - 0.5).ceil() + 1
    rect = torch.stack(
        [lo_u.clamp_min(0), lo_v.clamp_min(0), hi_u.clamp_max(width - 1), hi_v.clamp_max(height - 1)], 1
    )
    full = torch.tensor([0.0, 0.0, width - 1.0, height - 1.0])
    return torch.where(in_front[:, None], rect, full).long()


def rect_pixels(rects: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """Every pixel of every rectangle: (rectangle index [P], flat pixel index row * width + col [P])."""
    widths = (rects[:, 2] - rects[:, 0] + 1).clamp_min(0)
    heights = (rects[:, 3] - rects[:, 1] + 1).clamp_min(0) * (widths > 0)
    n_rects = rects.shape[0]
    # first the rows of all rectangles, then the pixels of all rows
    row_owner = torch.repeat_interleave(torch.arange(n_rects), heights)
    row_start = torch.cumsum(heights, 0) - heights
    rows = rects[row_owner, 1] + torch.arange(row_owner.numel()) - row_start[row_owner]
    row_width = widths[row_owner]
    pix_row = torch.repeat_interleave(torch.arange(row_owner.numel()), row_width)
    pix_start = torch.cumsum(row_width, 0) - row_width
    cols = rects[row_owner[pix_row], 0] + torch.arange(pix_row.numel()) - pix_start[pix_row]
    return row_owner[pix_row], rows[pix_row] * width + cols


def cast_primary(
    objects: Objects,
    rects: Tensor,
    width: int,
    n_rays: int,
    origin: Tensor,
    rays: tuple[Tensor, Tensor, Tensor],
) -> tuple[Tensor, Tensor, Tensor]:
    """Primary rays of all scenes against their objects.

    Args:
        rects: [M, 4] screen rectangles of the objects' bounding boxes (see `screen_rects`).
        width: image width in pixels.
        n_rays: rays per scene (H * W).
        origin: [B, 3] camera centres.
        rays: unit directions (dx, dy, dz), each flat [B * N].

    Returns:
        t [B * N] of the nearest object (+inf: none), its object id [B * N] (-1: none), and each
        object's pixel count when rendered alone [M].
    """
    nearest = torch.full((rays[0].numel(),), math.inf)
    winner = torch.full((rays[0].numel(),), -1, dtype=torch.long)
    rel = origin[objects.scene] - objects.centre  # camera centre relative to each object
    found = []
    for shape, idx in objects.by_shape():
        owner, pixel = rect_pixels(rects[idx], width)
        g = idx[owner]
        r = objects.scene[g] * n_rays + pixel
        t = objects.hit(shape, g, rel[g, 0], rel[g, 1], rel[g, 2], *(d[r] for d in rays))
        hit = torch.isfinite(t).nonzero().squeeze(1)
        found.append((g[hit], r[hit], t[hit]))
    if not found:
        return nearest, winner, torch.zeros(0, dtype=torch.long)
    g, r, t = (torch.cat(parts) for parts in zip(*found, strict=True))
    nearest.scatter_reduce_(0, r, t, reduce="amin")
    best = t == nearest[r]
    winner[r[best]] = g[best]
    return nearest, winner, torch.bincount(g, minlength=objects.count)


def cast_shadow(
    objects: Objects,
    rects: Tensor,
    width: int,
    n_rays: int,
    points: tuple[Tensor, Tensor, Tensor],
    light: Tensor,
    need: Tensor,
) -> Tensor:
    """Shadow rays from `points` (flat [B * N] each) towards the light [B, 3] of their scene, cast only
    where `need` [B * N] is true; returns [B * N] bool, true where an object blocks the light."""
    blocked = torch.zeros(need.shape, dtype=torch.bool)
    to_light = light[objects.scene]
    for shape, idx in objects.by_shape():
        owner, pixel = rect_pixels(rects[idx], width)
        g = idx[owner]
        r = objects.scene[g] * n_rays + pixel
        keep = need[r]
        g, r = g[keep], r[keep]
        c = objects.centre[g]
        rel = (points[i][r] - c[:, i] for i in range(3))
        t = objects.hit(shape, g, *rel, to_light[g, 0], to_light[g, 1], to_light[g, 2])
        blocked[r[torch.isfinite(t)]] = True
    return blocked
