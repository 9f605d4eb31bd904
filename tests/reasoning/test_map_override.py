"""`InterleavedReasoner(map_override=...)`: the map shown can be swapped for another one."""

import torch
from scripted import ANSWER_TURN, QUESTION, image, script, spatial

from cooper_lib.reasoning import InterleavedReasoner


def test_map_override_replaces_the_shown_map_and_none_keeps_the_generated_one():
    model = spatial("qwen2_vl")
    calls = []
    depth = torch.full((8, 8), 3.0)

    def override(modality, row, generated):
        calls.append((modality, row, tuple(generated.shape)))
        return depth if modality == "depth" else None

    reasoner = InterleavedReasoner(
        model, policy="perceive_first", logits_processors=[script(model, ANSWER_TURN)], map_override=override
    )
    trace = reasoner.run(image(), QUESTION)
    maps = [s for s in trace.steps if s.kind == "map"]
    assert calls == [("depth", 0, model.config.output_size), ("segmentation", 0, model.config.output_size)]
    assert torch.equal(maps[0].map, depth)
    # the segmentation map stays the generated one: class ids at the heads' size
    assert maps[1].map.dtype == torch.long and tuple(maps[1].map.shape) == model.config.output_size
    # the picture shown is the replaced map drawn by the codec: one colour for a constant depth
    shown = [s.image for s in trace.steps if s.kind == "image"][0]
    assert len(shown.getcolors()) == 1
