"""The KV-cache check: next-token logits after an insertion equal those of a re-prefill.

Tolerance: |logit difference| <= 1e-5 in float32 (observed <= 3e-7 on every family; a position or
mask error gives 1e-3 and more). Two rows advance together and take different paths, so one row
decodes while the other inserts a map: the holes that leaves in the cache are checked too.
"""

import pytest
import torch
from scripted import FAMILIES, QUESTION, image, spatial

from cooper_lib.backbones.continuation import stack_images
from cooper_lib.reasoning import KVContext
from cooper_lib.reasoning.context import cache_keyword

ATOL = 1e-5


def _prompt(model, question: str) -> str:
    message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    return model.adapter.render_chat(model.processor, [message], add_generation_prompt=True)


def _tokens(model, text: str) -> list[int]:
    return model.adapter.tokenizer(model.processor).encode(text, add_special_tokens=False)


def _run_two_rows(model) -> tuple[KVContext, torch.Tensor]:
    """Row 0: prompt, text, tool call and query block, inserted map, one token.
    Row 1: another prompt, decoding token by token meanwhile (idle during the insertion)."""
    ctx = KVContext(model, batch_size=2)
    ctx.append(
        [
            ctx.prompt_segment(_prompt(model, QUESTION), [image(1)]),
            ctx.prompt_segment(_prompt(model, "How many?"), [image(2)]),
        ]
    )
    text = _tokens(model, "<think>look</think>")
    for token in text:
        ctx.append([ctx.token_segment([token]), ctx.token_segment([token])])
    spec = model.config.spec("depth")
    call = _tokens(model, spec.open_tag + "depth" + spec.close_tag)
    queries = [model.layout.query_id] * model.config.num_queries
    out = ctx.append([ctx.token_segment(call + queries), ctx.token_segment(text[:1])])
    content = [{"type": "image"}, {"type": "text", "text": "Here is the depth map."}]
    insertion = model.adapter.continuation_text(model.processor, content)
    map_image = image(3).resize((40, 40))
    ctx.append([ctx.text_segment(insertion, [map_image]), None])
    out = ctx.append([ctx.token_segment(text[:1]), ctx.token_segment(text[1:2])])
    return ctx, out.logits


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_after_an_insertion_equal_a_reprefill(family):
    model = spatial(family)
    ctx, cached = _run_two_rows(model)
    assert ctx.length(0) > ctx.length(1)  # row 1 has holes where row 0 inserted
    for row in range(2):
        with torch.no_grad():
            if family == "mllama":
                reference = _mllama_reprefill_after_prompt(model, ctx, row)
            else:
                reference = model.backbone(**ctx.full_inputs(row)).logits[0, -1]
        torch.testing.assert_close(cached[row], reference.float(), atol=ATOL, rtol=0)


def _mllama_reprefill_after_prompt(model, ctx: KVContext, row: int) -> torch.Tensor:
    """Mllama's reference: the prompt, then everything after it in one call (see backbones/mllama.py:
    a full forward lets text before the first image attend to later images)."""
    segments = ctx.segments[row]
    prefix = KVContext(model, 1)
    prefix.append([segments[0]])
    ids = torch.cat([seg["input_ids"] for seg in segments[1:]], dim=1)
    images = stack_images([(0, seg) for seg in segments[1:]], model.adapter.image_input_axes, 1)
    mask = model.adapter.context_inputs(torch.tensor([ctx.input_ids(row)]), segments)["cross_attention_mask"]
    out = model.backbone(input_ids=ids, cross_attention_mask=mask, cache=prefix.cache, **images)
    return out.logits[0, -1]


def test_mllama_full_reprefill_differs_before_the_first_image():
    """Why Mllama's reference starts after the prompt: a full re-prefill changes the rows before the
    first image (they attend to every image once a second one is in the sequence)."""
    model = spatial("mllama")
    ctx, cached = _run_two_rows(model)
    with torch.no_grad():
        full = model.backbone(**ctx.full_inputs(0)).logits[0, -1].float()
    assert (full - cached[0]).abs().max() > 10 * ATOL


def test_query_block_hidden_states_match_the_model_forward():
    """The states the reasoner reads at a query block equal SpatialModel.forward's on the full context."""
    model = spatial("qwen2_vl")
    ctx = KVContext(model)
    ctx.append([ctx.prompt_segment(_prompt(model, QUESTION), [image(1)])])
    spec = model.config.spec("segmentation")
    k = model.config.num_queries
    out = ctx.append(
        [
            ctx.token_segment(
                _tokens(model, spec.open_tag + "x" + spec.close_tag) + [model.layout.query_id] * k
            )
        ]
    )
    with torch.no_grad():
        reference = model(**ctx.full_inputs(0)).query_states["segmentation"][0]
    torch.testing.assert_close(out.hidden[0, -k:], reference, atol=ATOL, rtol=0)


def test_record_adds_tokens_without_running_them():
    model = spatial("llava")
    ctx = KVContext(model)
    ctx.append([ctx.prompt_segment(_prompt(model, QUESTION), [image(1)])])
    cached = ctx.cache.get_seq_length()
    ctx.record(0, [5, 6])
    assert ctx.input_ids(0)[-2:] == [5, 6]
    assert ctx.full_inputs(0)["input_ids"].shape[1] == ctx.length(0) == cached + 2
    assert ctx.cache.get_seq_length() == cached


def test_token_segment_joins_a_text_segment():
    model = spatial("qwen2_vl")
    ctx = KVContext(model)
    then = ctx.text_segment("\nuser: hi")
    joined = ctx.token_segment([7, 8], then=then)
    assert joined["input_ids"][0].tolist() == [7, 8, *then["input_ids"][0].tolist()]
    assert joined["attention_mask"][0, :2].tolist() == [1, 1]
    assert joined["mm_token_type_ids"][0, :2].tolist() == [0, 0]


def test_append_rejects_bad_segments():
    model = spatial("llava")
    ctx = KVContext(model, batch_size=2)
    with pytest.raises(ValueError, match="one per row"):
        ctx.append([ctx.token_segment([1])])
    with pytest.raises(ValueError, match="at least one non-empty"):
        ctx.append([None, None])
    with pytest.raises(ValueError, match="batch_size"):
        KVContext(model, batch_size=0)
    with pytest.raises(ValueError, match="no context"):
        ctx.full_inputs(0)


class _DecoderBeforeTheRename(torch.nn.Module):
    def forward(self, input_ids=None, past_key_values=None, use_cache=None):
        return input_ids


class _DecoderAfterTheRename(torch.nn.Module):
    def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs):
        return input_ids


def test_cache_keyword_follows_the_decoder_signature():
    # transformers renamed past_key_values to cache within 5.x; the package allows both sides
    assert cache_keyword(_DecoderBeforeTheRename()) == "past_key_values"
    assert cache_keyword(_DecoderAfterTheRename()) == "cache"
