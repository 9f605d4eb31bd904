"""Scene configuration and the fixed vocabularies of the synthetic world (classes, shapes, colours).

World frame: right-handed, metres, z up, the ground is the plane z = 0 and the camera looks
along +y. Camera frame: OpenCV (x right, y down, z forward), so z-depth is the camera-frame z.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from cooper_lib.serialization import from_dict, to_dict

SEMANTIC_CLASSES: tuple[str, ...] = ("background", "ground", "wall", "sphere", "box", "cylinder", "cone")
"""Semantic class names; the id of a class is its index. `background` (0) is sky or anything beyond
`SceneConfig.max_depth` (depth 0 there, meaning "no measurement")."""

SHAPES: tuple[str, ...] = ("sphere", "box", "cylinder", "cone")
"""Object shapes; the semantic id of a shape is `SEMANTIC_CLASSES.index(shape)`."""

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.10, 0.10),
    "orange": (0.95, 0.50, 0.10),
    "yellow": (0.95, 0.85, 0.15),
    "green": (0.15, 0.62, 0.20),
    "cyan": (0.10, 0.75, 0.80),
    "blue": (0.15, 0.30, 0.85),
    "purple": (0.55, 0.20, 0.70),
    "pink": (0.95, 0.50, 0.72),
}
"""Named object colours (linear albedo in [0, 1]); names are what questions use."""


def class_id(name: str) -> int:
    """Semantic id of a class or shape name (see `SEMANTIC_CLASSES`)."""
    if name not in SEMANTIC_CLASSES:
        raise ValueError(f"class name: expected one of {SEMANTIC_CLASSES}, got {name!r}")
    return SEMANTIC_CLASSES.index(name)


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    if len(value) != 2 or not (low <= value[0] <= value[1] <= high):
        raise ValueError(f"{name}: expected (min, max) with {low} <= min <= max <= {high}, got {value}")


@dataclass
class SceneConfig:
    """How scenes are sampled and rendered. Round-trips through JSON (`to_json` / `from_json`).

    Ranges are (min, max) pairs sampled uniformly per scene or per object. Angles are degrees.
    """

    width: int = 64
    height: int = 64
    min_objects: int = 1
    max_objects: int = 6
    shapes: tuple[str, ...] = SHAPES
    object_size: tuple[float, float] = (0.3, 1.2)
    """Range of each object dimension (sphere diameter, box sides, cylinder/cone diameter and height)."""
    placement_distance: tuple[float, float] = (2.0, 9.0)
    """Range of the forward (world y) distance of object centres from the camera."""
    min_gap: float = 0.1
    """Smallest horizontal gap between the bounding circles of two objects (no interpenetration)."""
    camera_height: tuple[float, float] = (1.0, 2.2)
    camera_pitch: tuple[float, float] = (10.0, 35.0)
    """Downward tilt of the optical axis."""
    horizontal_fov: tuple[float, float] = (50.0, 70.0)
    light_elevation: tuple[float, float] = (30.0, 70.0)
    light_azimuth: tuple[float, float] = (-80.0, 80.0)
    """Horizontal direction of the light: 0 is straight behind the camera, +-90 from its sides, so the
    default keeps the faces the camera sees mostly lit and casts shadows away from it."""
    ambient: float = 0.3
    wall_probability: float = 0.4
    """Chance that a scene is a room: back and side walls behind and beside all objects."""
    max_depth: float = 40.0
    """Z-depth beyond which the ground counts as background (fades into the sky colour before it)."""

    def __post_init__(self) -> None:
        self.shapes = tuple(self.shapes)
        self.object_size = tuple(self.object_size)
        self.placement_distance = tuple(self.placement_distance)
        self.camera_height = tuple(self.camera_height)
        self.camera_pitch = tuple(self.camera_pitch)
        self.horizontal_fov = tuple(self.horizontal_fov)
        self.light_elevation = tuple(self.light_elevation)
        self.light_azimuth = tuple(self.light_azimuth)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""
        if self.width < 8 or self.height < 8:
            raise ValueError(f"width/height: expected >= 8 pixels, got {self.width} x {self.height}")
        if not 0 <= self.min_objects <= self.max_objects <= 8:
            raise ValueError(
                f"min_objects/max_objects: expected 0 <= min <= max <= 8, got {self.min_objects}, {self.max_objects}"
            )
        unknown = [s for s in self.shapes if s not in SHAPES]
        if not self.shapes or unknown:
            raise ValueError(f"shapes: expected a non-empty subset of {SHAPES}, got {self.shapes}")
        if self.max_objects > len(self.shapes) * len(COLOURS):
            raise ValueError(
                f"max_objects: at most {len(self.shapes) * len(COLOURS)} (unique colour-shape pairs)"
            )
        _check_range("object_size", self.object_size, 0.05, 5.0)
        _check_range("placement_distance", self.placement_distance, 0.5, 100.0)
        _check_range("camera_height", self.camera_height, 0.1, 20.0)
        _check_range("camera_pitch", self.camera_pitch, 0.0, 80.0)
        _check_range("horizontal_fov", self.horizontal_fov, 10.0, 120.0)
        _check_range("light_elevation", self.light_elevation, 5.0, 90.0)
        _check_range("light_azimuth", self.light_azimuth, -180.0, 180.0)
        if not 0.0 <= self.ambient <= 1.0:
            raise ValueError(f"ambient: expected a value in [0, 1], got {self.ambient}")
        if not 0.0 <= self.wall_probability <= 1.0:
            raise ValueError(f"wall_probability: expected a value in [0, 1], got {self.wall_probability}")
        if self.min_gap < 0:
            raise ValueError(f"min_gap: expected >= 0, got {self.min_gap}")
        y_far = self.placement_distance[1]
        x_far = y_far * math.tan(math.radians(self.horizontal_fov[1]) / 2)
        far = math.sqrt(x_far**2 + y_far**2 + self.camera_height[1] ** 2) + self.object_size[1]
        if self.max_depth <= far:
            raise ValueError(
                f"max_depth: expected more than the farthest object reach ({far:.1f} m), got {self.max_depth}"
            )
        if self.max_depth > 65.0:
            raise ValueError(f"max_depth: expected <= 65 m (16-bit millimetre PNGs), got {self.max_depth}")

    def to_dict(self) -> dict:
        """Plain-JSON dict (tuples become lists)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SceneConfig:
        """Inverse of `to_dict`; unknown keys raise ValueError naming them."""
        return from_dict(cls, data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> SceneConfig:
        return cls.from_dict(json.loads(text))
