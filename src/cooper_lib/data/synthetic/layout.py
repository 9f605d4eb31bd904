"""Scene layouts: the camera, the light, the room and the objects of one scene, sampled from a seed.

A layout is everything the renderer needs and nothing it computes. Sampling uses Python's
`random.Random(seed)` (a few dozen draws per scene, cheaper than tensor calls and identical on
every platform), so a scene depends on its seed and the config only, never on batching.
Objects rest on the ground; no interpenetration is guaranteed by keeping the bounding circles
of their footprints at least `min_gap` apart.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from .config import COLOURS, SceneConfig


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: intrinsics in pixels (pixel centres at integer + 0.5) and a pose in the world.

    The camera sits at `position` looking along world +y, tilted down by `pitch` radians.
    Its frame is OpenCV's: x right, y down, z forward.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    position: tuple[float, float, float]
    pitch: float

    def rotation(self) -> tuple[tuple[float, float, float], ...]:
        """Camera-to-world rotation as rows; its columns are the right, down and forward axes."""
        c, s = math.cos(self.pitch), math.sin(self.pitch)
        # right = (1, 0, 0), down = (0, -s, -c), forward = (0, c, -s)
        return ((1.0, 0.0, 0.0), (0.0, -s, c), (0.0, -c, -s))

    def intrinsics(self) -> torch.Tensor:
        """The 3 x 3 intrinsic matrix K (float64)."""
        return torch.tensor(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=torch.float64
        )

    def cam_to_world(self) -> torch.Tensor:
        """The 4 x 4 camera-to-world pose (float64)."""
        pose = torch.eye(4, dtype=torch.float64)
        pose[:3, :3] = torch.tensor(self.rotation(), dtype=torch.float64)
        pose[:3, 3] = torch.tensor(self.position, dtype=torch.float64)
        return pose

    def to_camera(self, point: tuple[float, float, float]) -> tuple[float, float, float]:
        """World point -> camera-frame point (x right, y down, z = depth)."""
        rel = [p - o for p, o in zip(point, self.position, strict=True)]
        rot = self.rotation()
        return tuple(sum(rot[i][j] * rel[i] for i in range(3)) for j in range(3))

    def project(self, point: tuple[float, float, float]) -> tuple[float, float]:
        """World point -> continuous pixel coordinates (u, v); pixel (row i, col j) spans [j, j+1) x [i, i+1)."""
        x, y, z = self.to_camera(point)
        if z <= 0:
            raise ValueError(f"point: expected a point in front of the camera, got camera-frame z={z:.3f}")
        return (self.fx * x / z + self.cx, self.fy * y / z + self.cy)

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "position": list(self.position),
            "pitch": self.pitch,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Camera:
        return cls(**{**data, "position": tuple(data["position"])})


@dataclass(frozen=True)
class ObjectSpec:
    """One object as placed: shape, colour name, centre of its bounding box (world, metres),
    size (width, height, depth) = extents along its local x, world z and local y, and yaw (radians)."""

    shape: str
    colour: str
    centre: tuple[float, float, float]
    size: tuple[float, float, float]
    yaw: float = 0.0

    @property
    def footprint_radius(self) -> float:
        """Radius of the smallest circle around the object's footprint on the ground."""
        if self.shape == "box":
            return 0.5 * math.hypot(self.size[0], self.size[2])
        return 0.5 * self.size[0]

    @property
    def name(self) -> str:
        """How questions refer to the object, e.g. "red sphere"."""
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Room:
    """Walls of an indoor scene: planes x = x_min, x = x_max and y = y_max, from z = 0 to `height`."""

    x_min: float
    x_max: float
    y_max: float
    height: float


@dataclass(frozen=True)
class Appearance:
    """Colours of the environment: a two-tone checkered ground, walls, and the sky gradient."""

    ground_dark: tuple[float, float, float]
    ground_light: tuple[float, float, float]
    tile: float
    wall: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    sky_zenith: tuple[float, float, float]


@dataclass(frozen=True)
class SceneLayout:
    """Everything the renderer needs for one scene. `light` is a unit vector pointing to the light."""

    seed: int
    camera: Camera
    light: tuple[float, float, float]
    objects: tuple[ObjectSpec, ...]
    room: Room | None
    appearance: Appearance


def _sample_size(
    rng: random.Random, config: SceneConfig, shape: str
) -> tuple[tuple[float, float, float], float]:
    """Size (w, h, d) and yaw of a new object."""
    low, high = config.object_size
    if shape == "sphere":
        d = rng.uniform(low, high)
        return (d, d, d), 0.0
    if shape == "box":
        return (rng.uniform(low, high), rng.uniform(low, high), rng.uniform(low, high)), rng.uniform(
            0, math.pi
        )
    d, h = rng.uniform(low, high), rng.uniform(low, high)
    return (d, h, d), 0.0


def sample_layout(seed: int, config: SceneConfig) -> SceneLayout:
    """Sample the layout of scene `seed`: camera, light, room, and up to `max_objects` objects.

    Each object is placed by rejection sampling (at most 30 tries) so that its centre projects
    inside the image with a margin and its footprint keeps `min_gap` from the others and 0.5 m from
    the camera; an object that finds no place is dropped, so a scene can hold fewer objects than
    drawn (never fewer than one try per object).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    rng = random.Random(seed)
    w, h = config.width, config.height
    hfov = math.radians(rng.uniform(*config.horizontal_fov))
    f = 0.5 * w / math.tan(0.5 * hfov)
    camera = Camera(
        width=w,
        height=h,
        fx=f,
        fy=f,
        cx=0.5 * w,
        cy=0.5 * h,
        position=(0.0, 0.0, rng.uniform(*config.camera_height)),
        pitch=math.radians(rng.uniform(*config.camera_pitch)),
    )
    azimuth = math.radians(rng.uniform(*config.light_azimuth))  # 0: the light is behind the camera (-y)
    elevation = math.radians(rng.uniform(*config.light_elevation))
    light = (
        math.cos(elevation) * math.sin(azimuth),
        -math.cos(elevation) * math.cos(azimuth),
        math.sin(elevation),
    )

    n_objects = rng.randint(config.min_objects, config.max_objects)
    objects: list[ObjectSpec] = []
    used: set[tuple[str, str]] = set()
    colour_names = list(COLOURS)
    margin_u, margin_v = 0.06 * w, 0.06 * h
    for _ in range(n_objects):
        shape = rng.choice(config.shapes)
        free = [c for c in colour_names if (c, shape) not in used]
        if not free:
            continue
        colour = rng.choice(free)
        size, yaw = _sample_size(rng, config, shape)
        for _try in range(30):
            y = rng.uniform(*config.placement_distance)
            x = rng.uniform(-1.0, 1.0) * y * math.tan(0.5 * hfov)
            candidate = ObjectSpec(shape, colour, (x, y, 0.5 * size[1]), size, yaw)
            radius = candidate.footprint_radius
            if math.hypot(x, y) < radius + 0.5:
                continue
            if any(
                math.hypot(x - o.centre[0], y - o.centre[1]) < radius + o.footprint_radius + config.min_gap
                for o in objects
            ):
                continue
            if camera.to_camera(candidate.centre)[2] <= 0.1:
                continue
            u, v = camera.project(candidate.centre)
            if margin_u <= u <= w - margin_u and margin_v <= v <= h - margin_v:
                objects.append(candidate)
                used.add((colour, shape))
                break

    room = None
    if rng.random() < config.wall_probability:
        reach_x = max((abs(o.centre[0]) + o.footprint_radius for o in objects), default=1.0)
        reach_y = max(
            (o.centre[1] + o.footprint_radius for o in objects), default=config.placement_distance[1]
        )
        half = reach_x + rng.uniform(0.5, 2.5)
        room = Room(
            x_min=-half, x_max=half, y_max=reach_y + rng.uniform(0.5, 3.0), height=rng.uniform(2.5, 4.0)
        )

    grey = rng.uniform(0.35, 0.6)
    tint = (rng.uniform(0.9, 1.1), 1.0, rng.uniform(0.85, 1.05))
    contrast = rng.uniform(0.06, 0.14)
    appearance = Appearance(
        ground_dark=tuple(min(1.0, (grey - contrast) * t) for t in tint),
        ground_light=tuple(min(1.0, (grey + contrast) * t) for t in tint),
        tile=rng.uniform(0.5, 1.5),
        wall=tuple(rng.uniform(0.7, 0.9) for _ in range(3)),
        sky_horizon=(0.85, 0.90, 0.95),
        sky_zenith=(0.40, 0.62, 0.90),
    )
    return SceneLayout(seed, camera, light, tuple(objects), room, appearance)
