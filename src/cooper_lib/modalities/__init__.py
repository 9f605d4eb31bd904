"""Auxiliary modalities: one `Modality` object per modality, in one registry.

A `Modality` carries everything the library knows about a modality (tags and instruction, the
pseudo-image codec, display defaults, map kind, invalid pixels, target validation and loading,
the dense head's output and loss, metrics); a codec turns its maps into RGB pseudo-images in
[0, 1] and back. ``register_modality(modality)`` adds a user modality next to the built-ins.
"""

from cooper_lib.modalities.base import DecodedMap, ModalityCodec
from cooper_lib.modalities.colormaps import spectral_lut
from cooper_lib.modalities.depth import (
    DEPTH_PRESETS,
    DepthCodec,
    DepthModality,
    DepthPreset,
    depth_from_png,
    depth_to_png,
)
from cooper_lib.modalities.modality import Display, MapKind, Modality
from cooper_lib.modalities.normals import NormalsCodec, NormalsModality
from cooper_lib.modalities.palettes import ADE20K_CLASSES
from cooper_lib.modalities.registry import (
    available_modalities,
    get_codec,
    get_modality,
    register_modality,
    tags_only_modality,
)
from cooper_lib.modalities.segmentation import (
    IGNORE_INDEX,
    InstanceModality,
    SegmentationCodec,
    SegmentationModality,
    ade20k_palette,
    make_palette,
)
from cooper_lib.modalities.visualize import make_grid, to_pil

__all__ = [
    "ADE20K_CLASSES",
    "DEPTH_PRESETS",
    "IGNORE_INDEX",
    "DecodedMap",
    "DepthCodec",
    "DepthModality",
    "DepthPreset",
    "Display",
    "InstanceModality",
    "MapKind",
    "Modality",
    "ModalityCodec",
    "NormalsCodec",
    "NormalsModality",
    "SegmentationCodec",
    "SegmentationModality",
    "ade20k_palette",
    "available_modalities",
    "depth_from_png",
    "depth_to_png",
    "get_codec",
    "get_modality",
    "make_grid",
    "make_palette",
    "register_modality",
    "spectral_lut",
    "tags_only_modality",
    "to_pil",
]
