"""`InterleavedReasoner` on the reference `CooperModel`: the same call runs a `CooperReasoner`."""

import pytest
import torch
from cooper_tiny import CharTokenizer, scene, tiny_model

from cooper_lib.reasoning import InterleavedReasoner
from cooper_lib.reasoning.cooper import CooperReasoner, CooperTrace
from cooper_lib.reasoning.reasoner import for_cooper

FAST = {"num_timesteps": 3}
BOTH_FAST = {"depth": FAST, "segmentation": FAST}


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize("policy", ["adaptive", "perceive_first", "text_only"])
def test_the_interleaved_reasoner_runs_the_cooper_reasoner_it_describes(model, policy):
    options = {"policy": policy, "max_turns": 3, "max_new_tokens_per_turn": 6}
    wrapped = InterleavedReasoner(model, CharTokenizer(), perceive_options=BOTH_FAST, **options)
    assert isinstance(wrapped.cooper, CooperReasoner) and wrapped.policy.name == policy
    direct = CooperReasoner(model, CharTokenizer(), sampling=wrapped.cooper.sampling, **options)
    got, want = wrapped.run(scene(4), "Which is closer?"), direct.run(scene(4), "Which is closer?")
    assert isinstance(got, CooperTrace) and got.turns == want.turns and got.stop_reason == want.stop_reason
    assert [s.kind for s in got.steps] == [s.kind for s in want.steps]
    for (name, a), (other, b) in zip(got.maps, want.maps, strict=True):
        assert name == other and torch.equal(a, b)
    if policy == "perceive_first":
        assert [name for name, _ in got.maps] == ["depth", "segmentation"]


def test_prompts_and_sampling_reach_the_cooper_reasoner(model):
    reasoner = InterleavedReasoner(
        model,
        CharTokenizer(),
        system_prompt=None,
        reflection_prompt="look again",
        generation_kwargs={"temperature": 0.7, "seed": 5},
        perceive_options=BOTH_FAST,
    )
    engine = reasoner.cooper
    assert engine.system_prompt is False and engine.format.reflection_prompt == "look again"
    assert engine.temperature == 0.7 and engine.seed == 5 and engine.sampling.num_timesteps == 3
    assert for_cooper(model, CharTokenizer()).system_prompt is True  # the format's, by default


def test_plug_in_only_arguments_and_missing_tokenizer_are_named(model):
    with pytest.raises(ValueError, match="processor"):
        InterleavedReasoner(model)
    with pytest.raises(ValueError, match="stream, map_override"):
        InterleavedReasoner(model, CharTokenizer(), stream=print, map_override=lambda *a: None)
    with pytest.raises(ValueError, match="top_p"):
        InterleavedReasoner(model, CharTokenizer(), generation_kwargs={"temperature": 1.0, "top_p": 0.9})
    with pytest.raises(ValueError, match="perceive_options"):
        InterleavedReasoner(model, CharTokenizer(), perceive_options={"depth": FAST, "segmentation": {}})
    with pytest.raises(TypeError, match="SpatialModel .* or a CooperModel"):
        InterleavedReasoner(object())
