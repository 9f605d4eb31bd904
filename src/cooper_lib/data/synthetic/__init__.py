"""A procedural 3-D spatial world with exact labels: scenes, maps, questions and reasoning traces.

Scenes are ray cast in batches on the CPU (`render_scenes`): a ground plane, optional walls and
up to eight spheres, boxes, cylinders and cones, seen by a pinhole camera. Each `SpatialScene`
holds RGB, metric z-depth, semantic and instance ids, normals and per-object metadata, all exact.
`make_qa` asks spatial questions with exact answers, `make_traces` turns them into COOPER's
interleaved SFT traces, and `write_dataset` / `load_synthetic_dataset` store and read whole datasets.
"""

from .config import COLOURS, SEMANTIC_CLASSES, SHAPES, SceneConfig
from .layout import Camera, ObjectSpec, Room, SceneLayout, sample_layout
from .loader import (
    QADataset,
    SceneDataset,
    SFTDataset,
    Stage1Dataset,
    load_synthetic_dataset,
    read_manifest,
    to_hf_dataset,
)
from .qa import CATEGORIES, CATEGORY_INFO, SpatialQuestion, make_qa
from .render import iter_scenes, render_layouts, render_scene, render_scenes, scene_seed
from .scene import SceneObject, SpatialScene
from .traces import TOOL_REASONS, SceneFiles, default_codecs, make_traces, pseudo_images, shown_depth
from .writer import STAGES, write_dataset

__all__ = [
    "CATEGORIES",
    "CATEGORY_INFO",
    "COLOURS",
    "SEMANTIC_CLASSES",
    "SHAPES",
    "STAGES",
    "TOOL_REASONS",
    "Camera",
    "ObjectSpec",
    "QADataset",
    "Room",
    "SFTDataset",
    "SceneConfig",
    "SceneDataset",
    "SceneFiles",
    "SceneLayout",
    "SceneObject",
    "SpatialQuestion",
    "SpatialScene",
    "Stage1Dataset",
    "default_codecs",
    "iter_scenes",
    "load_synthetic_dataset",
    "make_qa",
    "make_traces",
    "pseudo_images",
    "shown_depth",
    "read_manifest",
    "render_layouts",
    "render_scene",
    "render_scenes",
    "sample_layout",
    "scene_seed",
    "to_hf_dataset",
    "write_dataset",
]
