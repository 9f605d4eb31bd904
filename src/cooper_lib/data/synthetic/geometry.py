"""Ray-primitive intersections and surface normals, vectorised over any broadcastable shapes.

Rays are given component-wise (ox, oy, oz, dx, dy, dz: tensors that broadcast together, e.g.
[M, 1] origins against [M, N] directions) in the primitive's local frame: the primitive is
centred at the origin with its axis along z. Every `*_hit` returns the smallest ray parameter
t > eps at which the ray enters the surface, and +inf where it misses; t is in units of |d|.
Quadratics are solved in the cancellation-free form q = -(b + sign(b) sqrt(disc)), roots q/a
and c/q, so grazing and near-surface rays stay accurate in float32.

Written by hand because no maintained library ray-casts analytic primitives in batched torch;
the formulas are the textbook ones (slab test for boxes, implicit quadrics for the rest).
"""

from __future__ import annotations

import torch
from torch import Tensor

INF = float("inf")


def _quadratic_roots(a: Tensor | None, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Roots of a t^2 + 2 b t + c = 0 (a = None means 1) as (t1, t2, real) without cancellation;
    NaN or inf where degenerate, which the callers' comparisons treat as a miss."""
    disc = b * b - c if a is None else b * b - a * c
    q = -(b + torch.copysign(disc.clamp_min(0.0).sqrt(), b))
    return (q if a is None else q / a), c / q, disc >= 0


def _first(candidates: list[tuple[Tensor, Tensor]], eps: float) -> Tensor:
    """Smallest t > eps among (t, valid) candidates, +inf where none is valid."""
    best = None
    for t, valid in candidates:
        t = torch.where(valid & (t > eps), t, INF)
        best = t if best is None else torch.minimum(best, t)
    return best


def sphere_hit(
    ox: Tensor, oy: Tensor, oz: Tensor, dx: Tensor, dy: Tensor, dz: Tensor, radius, eps: float
) -> Tensor:
    """Sphere of `radius` at the origin; directions must be unit vectors."""
    b = ox * dx + oy * dy + oz * dz
    c = ox * ox + oy * oy + oz * oz - radius * radius
    t1, t2, real = _quadratic_roots(None, b, c)
    return _first([(t1, real), (t2, real)], eps)


def box_hit(
    ox: Tensor, oy: Tensor, oz: Tensor, dx: Tensor, dy: Tensor, dz: Tensor, half, eps: float
) -> Tensor:
    """Axis-aligned box with half extents `half` = (hx, hy, hz) (slab test)."""
    near = far = None
    for o, d, h in ((ox, dx, half[0]), (oy, dy, half[1]), (oz, dz, half[2])):
        inv = 1.0 / d
        ta, tb = (-h - o) * inv, (h - o) * inv
        lo, hi = torch.minimum(ta, tb), torch.maximum(ta, tb)
        near = lo if near is None else torch.maximum(near, lo)
        far = hi if far is None else torch.minimum(far, hi)
    inside = near <= far
    return _first([(near, inside), (far, inside)], eps)


def cylinder_hit(
    ox: Tensor, oy: Tensor, oz: Tensor, dx: Tensor, dy: Tensor, dz: Tensor, radius, half_height, eps: float
) -> Tensor:
    """Capped cylinder around the z axis, from z = -half_height to +half_height."""
    t1, t2, real = _quadratic_roots(dx * dx + dy * dy, ox * dx + oy * dy, ox * ox + oy * oy - radius * radius)
    candidates = [(t, real & ((oz + t * dz).abs() <= half_height)) for t in (t1, t2)]
    r2 = radius * radius
    for plane in (half_height, -half_height):
        t = (plane - oz) / dz
        x, y = ox + t * dx, oy + t * dy
        candidates.append((t, x * x + y * y <= r2))
    return _first(candidates, eps)


def cone_hit(
    ox: Tensor, oy: Tensor, oz: Tensor, dx: Tensor, dy: Tensor, dz: Tensor, radius, half_height, eps: float
) -> Tensor:
    """Cone around the z axis: base disc of `radius` at z = -half_height, apex at z = +half_height."""
    k2 = (radius / (2.0 * half_height)) ** 2
    m = half_height - oz  # height below the apex at the ray origin
    a = dx * dx + dy * dy - k2 * dz * dz
    b = ox * dx + oy * dy + k2 * m * dz
    c = ox * ox + oy * oy - k2 * m * m
    t1, t2, real = _quadratic_roots(a, b, c)
    candidates = [(t, real & ((oz + t * dz).abs() <= half_height)) for t in (t1, t2)]
    t = (-half_height - oz) / dz
    x, y = ox + t * dx, oy + t * dy
    candidates.append((t, x * x + y * y <= radius * radius))
    return _first(candidates, eps)


def sphere_normal(px: Tensor, py: Tensor, pz: Tensor, radius: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Outward unit normal at surface points p (local frame)."""
    return px / radius, py / radius, pz / radius


def box_normal(px: Tensor, py: Tensor, pz: Tensor, half: tuple[Tensor, Tensor, Tensor]):
    """Outward normal of the face nearest to each surface point p (local frame)."""
    gaps = torch.stack([half[0] - px.abs(), half[1] - py.abs(), half[2] - pz.abs()])
    face = gaps.argmin(0)
    signs = torch.stack([px.sign(), py.sign(), pz.sign()])
    normal = torch.zeros_like(signs)
    normal.scatter_(0, face[None], signs.gather(0, face[None]))
    return normal[0], normal[1], normal[2]


def cylinder_normal(px: Tensor, py: Tensor, pz: Tensor, radius: Tensor, half_height: Tensor):
    """Outward normal at surface points: a cap's ±z where the point is nearer a cap plane than the side."""
    rho = torch.sqrt(px * px + py * py).clamp_min(1e-12)
    on_cap = (half_height - pz.abs()).abs() < (radius - rho).abs()
    zero = torch.zeros_like(px)
    return (
        torch.where(on_cap, zero, px / rho),
        torch.where(on_cap, zero, py / rho),
        torch.where(on_cap, pz.sign(), zero),
    )


def cone_normal(px: Tensor, py: Tensor, pz: Tensor, radius: Tensor, half_height: Tensor):
    """Outward normal at surface points: -z on the base disc, the cone's gradient on its side."""
    k = radius / (2.0 * half_height)
    rho = torch.sqrt(px * px + py * py)
    side_gap = (rho - k * (half_height - pz)).abs() / torch.sqrt(1.0 + k * k)
    on_base = (pz + half_height).abs() < side_gap
    nz = k * k * (half_height - pz)
    norm = torch.sqrt(px * px + py * py + nz * nz).clamp_min(1e-12)
    zero = torch.zeros_like(px)
    return (
        torch.where(on_base, zero, px / norm),
        torch.where(on_base, zero, py / norm),
        torch.where(on_base, -torch.ones_like(pz), nz / norm),
    )
