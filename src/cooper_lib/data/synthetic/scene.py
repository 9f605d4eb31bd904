"""A rendered scene: its maps (RGB, metric z-depth, semantic and instance ids, normals) and metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .config import SEMANTIC_CLASSES
from .layout import Appearance, Camera, ObjectSpec, Room


@dataclass(frozen=True, kw_only=True)
class SceneObject(ObjectSpec):
    """An object as rendered: its `ObjectSpec` plus what the camera sees of it.

    Attributes:
        instance_id: value of the object's pixels in `SpatialScene.instance` (index in the scene + 1).
        distance: Euclidean distance from the camera centre to the object's centre (m).
        camera_centre: the centre in the camera frame (x right, y down, z forward; m).
        pixel_centre: projection (u, v) of the centre in pixel coordinates.
        visible_pixels: pixels where the object is the nearest surface.
        projected_pixels: pixels the object would cover with every other object removed (walls and
            ground never hide an object: all objects stand inside the room, above the ground).
        occlusion: 1 - visible / projected: the share of the object's in-frame silhouette hidden by
            other objects (0 when it is not in the frame at all). Truncation by the frame is not occlusion.
        bbox: (u_min, v_min, u_max, v_max) of the visible pixels, inclusive; None when none is visible.
    """

    instance_id: int
    distance: float
    camera_centre: tuple[float, float, float]
    pixel_centre: tuple[float, float]
    visible_pixels: int
    projected_pixels: int
    occlusion: float
    bbox: tuple[int, int, int, int] | None

    @property
    def semantic_id(self) -> int:
        return SEMANTIC_CLASSES.index(self.shape)

    def to_dict(self) -> dict:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict) -> SceneObject:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass
class SpatialScene:
    """One scene. Maps share the image grid H x W.

    Attributes:
        seed: the scene's seed; `render_scene(seed, config)` reproduces it exactly.
        rgb: [3, H, W] float in [0, 1].
        depth: [H, W] float z-depth in metres (camera-frame z); 0 where nothing was hit (background).
        semantic: [H, W] long class ids, see `SEMANTIC_CLASSES`.
        instance: [H, W] long; 0 for background, ground and walls, `SceneObject.instance_id` on objects.
        normals: [3, H, W] float unit surface normals in the camera frame; 0 on background.
        camera: intrinsics and pose.
        light: unit vector pointing to the light (world frame).
        objects: the objects with their metadata, in instance-id order.
        room: the walls, or None for an open scene.
    """

    seed: int
    rgb: torch.Tensor
    depth: torch.Tensor
    semantic: torch.Tensor
    instance: torch.Tensor
    normals: torch.Tensor
    camera: Camera
    light: tuple[float, float, float]
    objects: list[SceneObject]
    room: Room | None = None
    appearance: Appearance | None = field(default=None, repr=False)

    @property
    def valid_mask(self) -> torch.Tensor:
        """[H, W] bool: pixels with a depth measurement."""
        return self.depth > 0

    def object(self, name: str) -> SceneObject:
        """The object called `name` (e.g. "red sphere"); colour-shape pairs are unique in a scene."""
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise ValueError(
            f"name: no object {name!r} in scene {self.seed}; have {[o.name for o in self.objects]}"
        )

    def metadata(self) -> dict:
        """JSON-ready description of everything but the maps."""
        return {
            "seed": self.seed,
            "camera": self.camera.to_dict(),
            "light": list(self.light),
            "room": None if self.room is None else asdict(self.room),
            "objects": [o.to_dict() for o in self.objects],
        }
