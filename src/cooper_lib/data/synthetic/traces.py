"""Interleaved SFT traces in COOPER's turn format, built from a scene's true maps and metadata.

A tool-using trace is: system prompt, image, question, then the assistant's
`<think>why this map helps</think>` + tool call, the inserted map (the true map drawn as the
pseudo-image a model would generate, with the raw map as the head's `target`), the reflection
prompt, and `<think>what the map shows</think><answer>... \\boxed{X}</answer>`. A text-only
trace answers in one turn. Every number in the reasoning is read off the true maps (median
depth of an object's pixels, pixel extents and centroids) or the metadata, so traces state only
true facts. The tool is chosen by the question's category (`CATEGORY_INFO`); questions no map
helps with are always answered in text.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from cooper_lib.data.records import Item, SFTRecord
from cooper_lib.data.turns import TurnFormat
from cooper_lib.modalities import ModalityCodec, get_modality
from cooper_lib.modalities.depth import DISPLAY_RANGE

from .config import SEMANTIC_CLASSES
from .qa import ANSWER_STYLES, OCCLUDED, SpatialQuestion, article, visible_depth
from .scene import SceneObject, SpatialScene
from .templates import PLURALS

DISPLAY_DEPTH_RANGE = DISPLAY_RANGE
"""Depth range (m) the default depth pseudo-image spreads over the Spectral table; farther clamps
(its home: `cooper_lib.modalities.depth.DISPLAY_RANGE`)."""


def default_codecs(depth_range: tuple[float, float] | None = None) -> dict[str, ModalityCodec]:
    """Codecs that draw the inserted maps: each modality's display codec (`Modality.display_codec`,
    what the reasoner shows a model): Spectral depth over `depth_range` metres (default
    `DISPLAY_DEPTH_RANGE`), farther clamped (as COOPER shows depth to the model), and one distinct
    colour per class of `SEMANTIC_CLASSES`. A model trained on traces drawn over another range
    needs the same ``SpatialConfig.depth_display_range``."""
    return {
        "depth": get_modality("depth").display_codec(
            num_classes=len(SEMANTIC_CLASSES), depth_mode="metric", value_range=depth_range
        ),
        "segmentation": get_modality("segmentation").display_codec(
            num_classes=len(SEMANTIC_CLASSES), depth_mode="metric"
        ),
    }


def shown_depth(scene: SpatialScene, far: float = DISPLAY_DEPTH_RANGE[1]) -> torch.Tensor:
    """The scene's depth in metres with background pixels (no depth) at `far`, the far end of the
    range it is drawn over, as a depth model would show them (not at 0 m)."""
    return torch.where(scene.valid_mask, scene.depth, torch.full_like(scene.depth, float(far)))


def pseudo_images(scene: SpatialScene, codecs: dict | None = None) -> dict[str, torch.Tensor]:
    """The scene's true maps drawn as pseudo-images [3, H, W] in [0, 1], by modality. Background
    pixels (no depth) are drawn at the far end of the depth range (`shown_depth`)."""
    codecs = codecs or default_codecs()
    return {
        "depth": codecs["depth"].encode(shown_depth(scene, codecs["depth"].max_depth)),
        "segmentation": codecs["segmentation"].encode(scene.semantic),
    }


@dataclass(frozen=True)
class SceneFiles:
    """Paths (relative to a dataset folder) of a scene's image and maps, for file-backed records."""

    image: str
    depth: str
    segmentation: str
    depth_image: str
    segmentation_image: str


_IN_IMAGE = "In the image I see"


def _kind(noun: str, n: int) -> str:
    """ "sphere" / "spheres", "red object" / "red objects" by count."""
    if n == 1:
        return noun
    return PLURALS.get(noun, f"{noun}s")


def _centroid(scene: SpatialScene, obj: SceneObject) -> tuple[int, int]:
    """(column, row) of the mean of the object's visible pixels."""
    rows, cols = (scene.instance == obj.instance_id).nonzero(as_tuple=True)
    return round(float(cols.float().mean())), round(float(rows.float().mean()))


def _objects(scene: SpatialScene, q: SpatialQuestion) -> list[SceneObject]:
    return [scene.objects[i - 1] for i in q.objects]


_WHY_DEPTH = (
    "The question is about distances and sizes in metres, which a depth map measures directly. I will estimate the depth first.",
    "To judge how far things are, a depth map of the scene will help.",
    "A depth map tells me how far each object is from the camera; let me generate it.",
)
_WHY_SEGMENTATION = (
    "I need to find the objects and where they are; a segmentation map separates them clearly.",
    "Segmenting the image will show each object's region, which makes locating and counting reliable.",
    "Let me segment the image so that every object stands out as its own region.",
)
TOOL_REASONS: frozenset[str] = frozenset(_WHY_DEPTH + _WHY_SEGMENTATION)
"""Every sentence a trace may give in ``<think>`` as its reason to call a tool (one is drawn per call)."""


def _depth_facts(scene: SpatialScene, q: SpatialQuestion, source: str) -> str:
    """Facts for depth-helped categories; `source` is "The depth map shows" or "In the image"."""
    objs = _objects(scene, q)
    if q.category in ("relative_depth", "closest_object"):
        parts = [f"the {o.name} at about {visible_depth(scene, o):.1f} m" for o in objs]
        ranked = sorted(objs, key=lambda o: o.distance)
        if len(objs) == 2:
            return f"{source} {' and '.join(parts)}, so the {ranked[0].name} is closer than the {ranked[1].name}."
        return f"{source} {', '.join(parts)}; the {ranked[0].name} is the closest and the {ranked[-1].name} the farthest."
    if q.category == "distance_camera":
        (o,) = objs
        return (
            f"{source} the visible surface of the {o.name} at about {visible_depth(scene, o):.1f} m. "
            f"Its centre is {o.distance:.2f} m from the camera."
        )
    if q.category == "distance_between":
        a, b = objs
        return (
            f"{source} the {a.name} at about {visible_depth(scene, a):.1f} m and the {b.name} at about "
            f"{visible_depth(scene, b):.1f} m; with their sideways offset, the centres are {q.answer_phrase} apart."
        )
    if q.category in ("height", "width", "size_compare"):
        axis, word = (0, "wide") if q.category == "width" else (1, "tall")
        parts = []
        for o in objs:
            extent = o.bbox[axis + 2] - o.bbox[axis] + 1
            parts.append(
                f"the {o.name} is at about {visible_depth(scene, o):.1f} m and spans {extent} pixels, "
                f"so it is {o.size[axis]:.2f} m {word}"
            )
        return f"{source} that " + "; ".join(parts) + "."
    raise ValueError(f"question: category {q.category!r} has no depth reasoning")


def _segmentation_facts(scene: SpatialScene, q: SpatialQuestion, source: str) -> str:
    """Facts for segmentation-helped categories; `source` is "The segmentation map shows" or "In the image"."""
    objs = _objects(scene, q)
    width, height = scene.camera.width, scene.camera.height
    if q.category in ("count_shape", "count_colour"):
        kind = _kind(q.subject if q.category == "count_shape" else f"{q.subject} object", len(objs))
        if q.category == "count_colour" and source != _IN_IMAGE:
            source = "Comparing its regions with the image, I find"  # the map has classes, not colours
        if not objs:
            return f"{source} no {kind}."
        where = ", ".join(f"the {o.name} around column {_centroid(scene, o)[0]}" for o in objs)
        return f"{source} {len(objs)} {kind}: {where}."
    if q.category in ("left_right", "above_below"):
        axis, size, word = (0, width, "column") if q.category == "left_right" else (1, height, "row")
        parts = [f"the {o.name} centred at {word} {_centroid(scene, o)[axis]}" for o in objs]
        return f"{source} {' and '.join(parts)} (of {size})."
    if q.category == "occlusion":
        (o,) = objs
        if o.occlusion >= OCCLUDED:
            return (
                f"{source} the {o.name} with {o.visible_pixels} pixels; about {o.occlusion:.0%} of its "
                "silhouette is hidden behind an object in front of it."
            )
        return f"{source} the whole silhouette of the {o.name}, with nothing in front of it."
    if q.category == "shape":
        (o,) = objs
        return f"{source} the {o.colour} object as a {o.shape}."
    raise ValueError(f"question: category {q.category!r} has no segmentation reasoning")


@dataclass(frozen=True)
class _ToolTrace:
    """How the traces use the synthetic world's map of one modality."""

    why: tuple[str, ...]  # reasons to call the tool
    facts: Callable[[SpatialScene, SpatialQuestion, str], str]
    from_map: str  # `facts` source when reading the map
    from_image: str  # `facts` source when answering from the image alone
    scene_map: str  # the `SpatialScene` field of the true map
    files: tuple[str, str]  # `SceneFiles` fields of the shown pseudo-image and the true map


_TOOL_TRACES: dict[str, _ToolTrace] = {
    "depth": _ToolTrace(
        _WHY_DEPTH,
        _depth_facts,
        "The depth map shows",
        "In the image, I estimate",
        "depth",
        ("depth_image", "depth"),
    ),
    "segmentation": _ToolTrace(
        _WHY_SEGMENTATION,
        _segmentation_facts,
        "The segmentation map shows",
        _IN_IMAGE,
        "semantic",
        ("segmentation_image", "segmentation"),
    ),
}
"""The maps the synthetic world renders, by the modality (`SpatialQuestion.modality`) they answer."""


def _plain_facts(scene: SpatialScene, q: SpatialQuestion) -> str:
    """Facts for a text-only answer, from the image itself."""
    if q.modality is not None:
        tool = _TOOL_TRACES[q.modality]
        return tool.facts(scene, q, tool.from_image)
    visible = [o.name for o in scene.objects if o.visible_pixels > 0]
    if q.category == "existence":
        return f"{_IN_IMAGE} {', '.join(article(n) for n in visible) or 'no objects'}."
    if q.category == "colour":
        (o,) = _objects(scene, q)
        return f"The {o.shape} in the image is {o.colour}."
    raise ValueError(f"question: category {q.category!r} has no text reasoning")


def _answer(fmt: TurnFormat, q: SpatialQuestion) -> str:
    return fmt.answer_block(f"The answer is {q.answer_phrase}. \\boxed{{{q.boxed}}}")


def _final(fmt: TurnFormat, facts: str, q: SpatialQuestion, answer_style: str) -> str:
    """The answering turn: reasoning and a sentence ("full"), or the boxed answer alone ("short",
    "short_text")."""
    if answer_style != "full":
        return fmt.answer_block(f"\\boxed{{{q.boxed}}}")
    return fmt.think_block(facts) + _answer(fmt, q)


def make_traces(
    scene: SpatialScene,
    questions: Sequence[SpatialQuestion],
    seed: int | random.Random = 0,
    *,
    tool_ratio: float = 0.5,
    files: SceneFiles | None = None,
    codecs: dict | None = None,
    id_prefix: str = "",
    turn_format: TurnFormat | None = None,
    answer_style: str = "full",
) -> list[SFTRecord]:
    """One SFT record per question.

    Args:
        scene: the scene the questions are about.
        questions: from `make_qa` on this scene.
        seed: an int or a `random.Random` (tool choice and phrasing).
        tool_ratio: chance that a question some map helps with gets a tool-using trace.
        files: paths of the scene's files; when given, image items hold these paths, otherwise
            in-memory tensors (the RGB image, the pseudo-image, and the raw map as `target`).
        codecs: codecs drawing in-memory pseudo-images (default `default_codecs()`).
        id_prefix: prefix of record ids (`{id_prefix}{index}`).
        turn_format: tags and prompts of the turns (default `TurnFormat.default()`).
        answer_style: "full" (the answer turn reasons in `<think>` from what the image or map
            shows, then answers in a sentence with the boxed answer: 30-130 tokens), "short"
            (the answer turn is only ``<answer>\\boxed{X}</answer>``, a direct answer; the tool
            call keeps its one-sentence `<think>`) or "short_text" (as "short"; questions made
            with it box a choice's text, `SpatialQuestion.boxed`).
    """
    if answer_style not in ANSWER_STYLES:
        raise ValueError(f"answer_style: expected one of {ANSWER_STYLES}, got {answer_style!r}")
    if not 0.0 <= tool_ratio <= 1.0:
        raise ValueError(f"tool_ratio: expected a value in [0, 1], got {tool_ratio}")
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    fmt = turn_format or TurnFormat.default()
    drawn = None if files else pseudo_images(scene, codecs)
    image = files.image if files else scene.rgb
    records = []
    for index, q in enumerate(questions):
        head = [
            Item("text", fmt.system_prompt, role="system"),
            Item("image", image, role="user"),
            Item("text", q.prompt, role="user"),
        ]
        use_tool = q.modality is not None and rng.random() < tool_ratio
        if use_tool:
            tool = _TOOL_TRACES[q.modality]
            why = rng.choice(tool.why)
            facts = tool.facts(scene, q, tool.from_map)
            if files:
                shown, target = (getattr(files, name) for name in tool.files)
            else:
                shown, target = drawn[q.modality], getattr(scene, tool.scene_map)
            body = [
                Item(
                    "text", fmt.think_block(why) + fmt.tool_call(q.modality), need_loss=True, role="assistant"
                ),
                Item("image", shown, role="tool", modality=q.modality, target=target),
                Item("text", fmt.reflection(q.modality), role="tool"),
                Item("text", _final(fmt, facts, q, answer_style), need_loss=True, role="assistant"),
            ]
        else:
            facts = _plain_facts(scene, q) if answer_style == "full" else ""
            body = [Item("text", _final(fmt, facts, q, answer_style), need_loss=True, role="assistant")]
        meta = {**q.to_dict(), "scene_seed": scene.seed, "tool": q.modality if use_tool else None}
        records.append(SFTRecord(id=f"{id_prefix}{index}", items=head + body, meta=meta))
    return records
