import pytest
import torch
from cooper_tiny import CharTokenizer, scene, tiny_model

from cooper_lib.data.turns import TurnFormat
from cooper_lib.eval.runner import evaluate, load_result
from cooper_lib.eval.synthetic_bench import load_synthetic
from cooper_lib.models.cooper import CooperSampling, Image, Latent, Text, TextContext
from cooper_lib.reasoning import cooper as cooper_reasoning
from cooper_lib.reasoning.cooper import CooperReasoner, CooperTrace, fit_pixels

FAST = CooperSampling(num_timesteps=3)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _scripted(turns: list[str], tok: CharTokenizer):
    """A `generate_text` that writes `turns` in order, one token at a time, honouring `stop`."""
    calls = []

    def generate(model, context, max_new_tokens, *, temperature, generator, stop):
        text = turns[len(calls)]
        calls.append(context)
        out = []
        for token in tok.encode(text)[:max_new_tokens]:
            out.append(token)
            if stop(token):
                break
        return out

    return generate, calls


def test_fit_pixels_rounds_to_strides_and_caps_the_side():
    x = fit_pixels(scene(size=(40, 100)), 16, 64)
    assert x.shape == (3, 32, 64) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert fit_pixels(scene(size=(100, 100)), 16, 75).shape == (3, 64, 64)  # sides stay multiples of 16


def test_adaptive_turns_call_a_tool_feed_the_map_back_as_vision_tokens_and_answer(model, monkeypatch):
    tok = CharTokenizer()
    fmt = TurnFormat.default(("depth", "segmentation"))
    call = f"<think>far?</think>{fmt.tool_call('depth', 'go')}"
    answer = "<think>ok</think><answer>\\boxed{B}</answer>"
    generate, contexts = _scripted([call + " trailing", answer], tok)
    monkeypatch.setattr(cooper_reasoning, "generate_text", generate)  # the recompute path's decoder
    reasoner = CooperReasoner(model, tok, tags=fmt, sampling=FAST, system_prompt=False, incremental=False)
    trace = reasoner.run(scene(), "Which is closer?")
    assert isinstance(trace, CooperTrace)
    assert [s.kind for s in trace.steps] == ["text", "tool_call", "map", "image", "text"]
    assert trace.steps[0].text == call  # stopped at the closing tag
    assert trace.steps[1].modality == "depth" and trace.steps[1].text == "go"
    assert trace.steps[2].map.shape == (3, 32, 48)  # the VAE size of the 40 x 48 input
    assert trace.answer == "B" and trace.stop_reason == "answer" and trace.turns == [call, answer]
    # the second turn read: latent + ViT image, question, the call, the map as ViT tokens only, reflection
    kinds = [type(item).__name__ for item in contexts[1]]
    assert kinds == ["Latent", "Image", "Text", "Text", "Text", "Image", "Text"]
    assert contexts[1][3].ids == (1, *tok.encode(call)) and contexts[1][4].ids == (2,)  # <|im_end|> added
    assert contexts[1][-1].ids == (1, *tok.encode(fmt.reflection("depth")), 2)
    flags = [generated for _, generated in trace.segments]
    assert flags == [False, False, False, True, False, False, False, True, False]


def test_perceive_first_forces_both_maps_then_the_model_writes(model):
    reasoner = CooperReasoner(
        model, CharTokenizer(), policy="perceive_first", sampling=FAST, max_new_tokens_per_turn=6
    )
    trace = reasoner.run(scene(1), "How far is the chair?")
    kinds = [s.kind for s in trace.steps]
    assert kinds == ["text", "tool_call", "map", "image"] * 2 + ["text"]
    assert [s.modality for s in trace.steps if s.kind == "map"] == ["depth", "segmentation"]
    assert trace.steps[0].forced and not trace.steps[-1].forced
    assert len(trace.steps[-1].token_ids) <= 6 and trace.stop_reason == "max_turns"
    assert all(torch.isfinite(m).all() for _, m in trace.maps)
    assert sum(isinstance(item, Latent) for item, _ in trace.segments) == 1  # maps come back as ViT tokens
    assert sum(isinstance(item, Image) for item, _ in trace.segments) == 3
    assert isinstance(trace.segments[0][0], Text)  # the system prompt


def test_text_only_never_generates_maps_and_checks_arguments(model):
    reasoner = CooperReasoner(
        model, CharTokenizer(), policy="text_only", max_turns=2, max_new_tokens_per_turn=4
    )
    trace = reasoner.run(scene(2), "Is it left?")
    assert trace.maps == [] and trace.stop_reason == "max_turns"
    assert [s.kind for s in trace.steps] == ["text", "prompt", "text"]
    assert [s.finish for s in trace.steps if s.kind == "text"] == ["length", "length"]
    # the prompt holds 8 latent + 122 ViT + 13 question tokens: 5 are left for the turn's text
    tight = CooperReasoner(
        model,
        CharTokenizer(),
        policy="text_only",
        max_total_tokens=150,
        max_new_tokens_per_turn=20,
        system_prompt=False,
    )
    short = tight.run(scene(2), "Is it left?")
    assert short.prompt_tokens == 143 and len(short.steps[0].token_ids) == 5
    assert short.steps[0].finish == "budget" and short.stop_reason == "max_total_tokens"
    with pytest.raises(TypeError, match="model"):
        CooperReasoner(object(), CharTokenizer())
    with pytest.raises(ValueError, match="max_turns"):
        CooperReasoner(model, CharTokenizer(), max_turns=0)


def test_the_evaluation_harness_evaluates_the_cooper_reasoner(model, tmp_path):
    bench = load_synthetic(n=1, seed=3, questions_per_scene=3)
    reasoner = CooperReasoner(
        model, CharTokenizer(), policy="text_only", max_turns=1, max_new_tokens_per_turn=4
    )
    result = evaluate(reasoner, bench, output=tmp_path / "run.jsonl", progress=False)
    assert result.policy == "text_only" and len(result.records) == 3 and result.computed == 3
    assert all(r["stop_reason"] == "max_turns" and r["tools"] == [] for r in result.records)
    assert load_result(tmp_path / "run.jsonl", bench).records == result.records


@pytest.mark.parametrize(
    ("policy", "temperature"), [("perceive_first", 0.0), ("adaptive", 0.0), ("adaptive", 1.0)]
)
def test_incremental_turns_write_the_tokens_the_recompute_path_writes(model, policy, temperature):
    """Turns decoded from the cache the previous turns extended (perceive-first: forced calls and
    maps fed back as ViT tokens with reflections; adaptive: the untrained model's unparsed turns,
    retry prompts, the pending last token) write the tokens and maps recomputing writes."""
    runs = [
        CooperReasoner(
            model, CharTokenizer(), policy=policy, max_turns=3, max_new_tokens_per_turn=6,
            temperature=temperature, sampling=FAST, system_prompt=False, incremental=incremental,
        ).run(scene(4), "Is it left?")
        for incremental in (True, False)
    ]  # fmt: skip
    fast, slow = ([(s.kind, s.token_ids, s.text) for s in t.steps] for t in runs)
    assert fast == slow
    maps = [[s.map for s in t.steps if s.kind == "map"] for t in runs]
    assert all(torch.equal(a, b) for a, b in zip(*maps, strict=True))
    written = sum(s.kind == "text" and not s.forced for s in runs[0].steps)
    assert (len(maps[0]), written) == ((2, 1) if policy == "perceive_first" else (0, 3))


def test_each_turn_leaves_the_cache_of_a_full_prefill_of_its_context(model, monkeypatch):
    """After every turn the rollout's cache holds exactly the keys and values (and RoPE position)
    of the whole context prefilled at once: earlier turns, retry prompts, the token left pending."""
    real, checked = cooper_reasoning._TurnContext.generate, []

    def checking(self, items, limit, **options):
        ids = real(self, items, limit, **options)
        fed = [item for item, _ in items] + [Text((model.config.bos_token_id, *ids[:-1]))]
        full = TextContext(model).extend(fed)
        assert (self.cache.length, self.cache.position) == (full.length, full.position)
        for (k, v), (k_full, v_full) in zip(self.cache.kv, full.kv, strict=True):
            torch.testing.assert_close(k, k_full, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(v, v_full, rtol=1e-4, atol=1e-5)
        checked.append(len(items))
        return ids

    monkeypatch.setattr(cooper_reasoning._TurnContext, "generate", checking)
    reasoner = CooperReasoner(
        model, CharTokenizer(), max_turns=3, max_new_tokens_per_turn=6, sampling=FAST, system_prompt=False
    )
    reasoner.run(scene(4), "Is it left?")
    assert len(checked) == 3 and checked[0] < checked[1] < checked[2]
