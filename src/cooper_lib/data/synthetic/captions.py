"""Scene captions: the image-text pairs a base model is pretrained on, written from scene metadata.

A real MLLM reaches fine-tuning already able to name what it sees; a backbone built from a config
cannot. Captioning the synthetic world's scenes gives such a backbone that start, the same for
every arm of an experiment (`cooper_lib.experiments.table1`): every object the questions may name,
nearest first, with its colour, shape and distance
(``"<answer>red sphere 2.4 m; blue box 3.1 m</answer>"``), or without the distances
(``"<answer>red sphere; blue box</answer>"``) for a base model that, like the MLLMs COOPER starts
from, names what it sees but was never taught metres. A caption states no answer to a question
as such; the questions still have to be learned from it.

A map caption (`map_caption_record`) shows the photograph, then the scene's depth map as a tool's
answer, laid out as an interleaved trace's depth call, and names the objects with their distances:
metres stated only where a depth map is shown, as a pretrained MLLM reads a depth visualisation
it is shown. (The photograph is shown too, and a base model trained on both reads its metres
mostly off it: benchmarks/RESULTS.md, "What a map could give a reader that needs no finding".)
"""

from __future__ import annotations

from typing import Any

from cooper_lib.data.records import Item, SFTRecord
from cooper_lib.data.turns import TurnFormat

from .qa import default_min_pixels
from .scene import SpatialScene

CAPTION_PROMPT = "Describe the objects, nearest first."
"""The user turn of every caption record."""


def caption(scene: SpatialScene, min_pixels: int | None = None, distances: bool = True) -> str:
    """The scene's objects showing at least `min_pixels` pixels (`default_min_pixels`: the objects
    questions may ask about), nearest first: ``"<colour> <shape> <distance with one decimal> m"``
    (``"<colour> <shape>"`` without `distances`) joined by ``"; "``, or ``"no objects"``."""
    least = default_min_pixels(scene) if min_pixels is None else min_pixels
    shown = sorted((o for o in scene.objects if o.visible_pixels >= least), key=lambda o: o.distance)
    named = (f"{o.colour} {o.shape}" + (f" {o.distance:.1f} m" if distances else "") for o in shown)
    return "; ".join(named) or "no objects"


def caption_record(
    scene: SpatialScene,
    image: Any,
    id: str,
    turn_format: TurnFormat | None = None,
    distances: bool = True,
) -> SFTRecord:
    """A one-turn SFT record: the image and `CAPTION_PROMPT`, answered by `caption` in the answer
    tags of `turn_format` (default `TurnFormat.default()`), the trained text. The tags keep the
    caption's first and last words apart from the chat template's own tokens, which a byte-level
    tokenizer would otherwise merge with them. `distances`: as `caption`'s."""
    fmt = turn_format or TurnFormat.default()
    return SFTRecord(
        id=id,
        items=[
            Item("image", image, role="user"),
            Item("text", CAPTION_PROMPT, role="user"),
            Item(
                "text",
                fmt.answer_block(caption(scene, distances=distances)),
                need_loss=True,
                role="assistant",
            ),
        ],
        meta={"category": "caption", "scene_seed": scene.seed},
    )


def map_caption_record(
    scene: SpatialScene, image: Any, depth_map: Any, id: str, turn_format: TurnFormat | None = None
) -> SFTRecord:
    """A caption SFT record that reads the distances off a depth map: the image and
    `CAPTION_PROMPT`, a depth call (``<think></think>`` and the call, no loss: the record teaches
    reading a map, not calling for one), `depth_map` (the scene's depth pseudo-image) as the tool's
    image with the reflection text of `turn_format` after it, then `caption` with the distances in
    the answer tags, the trained text. Its layout is an interleaved SFT trace's (`make_traces`), so
    what it teaches is where a perceiving model finds its maps."""
    fmt = turn_format or TurnFormat.default()
    photo, prompt, answer = caption_record(scene, image, id, fmt).items
    call = Item("text", fmt.think_block("") + fmt.tool_call("depth"), role="assistant")
    shown = [
        Item("image", depth_map, role="tool", modality="depth"),
        Item("text", fmt.reflection("depth"), role="tool"),
    ]
    return SFTRecord(
        id=id,
        items=[photo, prompt, call, *shown, answer],
        meta={"category": "map_caption", "scene_seed": scene.seed},
    )
