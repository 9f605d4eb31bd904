"""Auxiliary modalities: codecs between maps (depth, segmentation, normals) and RGB pseudo-images.

A codec turns an auxiliary map into an RGB pseudo-image in [0, 1] that any image pipeline can
produce or read, and back; ``register_modality`` adds user codecs next to the built-ins.
"""

from cooper_lib.modalities.base import DecodedMap, ModalityCodec
from cooper_lib.modalities.colormaps import spectral_lut
from cooper_lib.modalities.depth import DEPTH_PRESETS, DepthCodec, DepthPreset, depth_from_png, depth_to_png
from cooper_lib.modalities.normals import NormalsCodec
from cooper_lib.modalities.palettes import ADE20K_CLASSES
from cooper_lib.modalities.registry import available_modalities, get_codec, register_modality
from cooper_lib.modalities.segmentation import SegmentationCodec, ade20k_palette, make_palette
from cooper_lib.modalities.visualize import make_grid, to_pil

__all__ = [
    "ADE20K_CLASSES",
    "DEPTH_PRESETS",
    "DecodedMap",
    "DepthCodec",
    "DepthPreset",
    "ModalityCodec",
    "NormalsCodec",
    "SegmentationCodec",
    "ade20k_palette",
    "available_modalities",
    "depth_from_png",
    "depth_to_png",
    "get_codec",
    "make_grid",
    "make_palette",
    "register_modality",
    "spectral_lut",
    "to_pil",
]
