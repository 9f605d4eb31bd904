"""Image-seeded queries: each query adds its cell of the first image's visual tokens, in a full
forward and in a KV-cached context alike."""

import functools

import pytest
import torch
from helpers import SMALL_HEADS, images
from PIL import Image

from cooper_lib import SpatialModel, add_spatial_heads
from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.reasoning import KVContext

ATOL = 1e-5


@functools.cache
def seeded(source: str = "image") -> SpatialModel:
    """Tiny Qwen2-VL whose 64 px images are 4 x 4 visual tokens, 2 x 2 queries (shared: never mutated)."""
    model, processor = build_tiny_backbone("qwen2_vl", image_size=64, patch_size=8)
    return add_spatial_heads(model, processor, **{**SMALL_HEADS, "query_source": source})


def _language_model_embeds(model: SpatialModel, inputs: dict) -> torch.Tensor:
    """The inputs_embeds the language model receives (after every pre-hook)."""
    seen = []

    def keep(module, args, kwargs):
        seen.append(kwargs["inputs_embeds"].detach().clone())

    handle = model.adapter.language_model().register_forward_pre_hook(keep, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    return seen[0]


def test_queries_add_their_cell_of_the_image():
    model = seeded()
    inputs = model.perception_inputs(images(2, size=64), "depth")
    embeds = _language_model_embeds(model, inputs)
    ids = inputs["input_ids"]
    learned = (model.queries["depth"] + model.query_pos).detach()
    for row in range(2):
        visual = embeds[row, ids[row] == model.adapter.image_token_id]
        assert visual.shape[0] == 16
        cells = visual.reshape(2, 2, 2, 2, -1).permute(0, 2, 1, 3, 4).reshape(4, 4, -1).mean(dim=1)
        got = embeds[row, ids[row] == model.layout.query_id]
        torch.testing.assert_close(got, learned + cells, atol=ATOL, rtol=0)


def test_learned_queries_are_not_seeded():
    model = seeded("learned")
    assert model.query_seeder is None
    inputs = model.perception_inputs(images(2, size=64), "depth")
    embeds = _language_model_embeds(model, inputs)
    got = embeds[inputs["input_ids"] == model.layout.query_id].reshape(2, 4, -1)
    learned = (model.queries["depth"] + model.query_pos).detach()
    torch.testing.assert_close(got, learned.expand_as(got), atol=0, rtol=0)


@pytest.mark.parametrize("source", ["image", "learned"])
def test_seeded_queries_carry_the_gradient_to_the_vision_tower(source):
    """The query positions' input embeddings depend on the vision tower only when seeded."""
    model, processor = build_tiny_backbone("qwen2_vl", image_size=64, patch_size=8)
    spatial = add_spatial_heads(model, processor, **{**SMALL_HEADS, "query_source": source})
    spatial.set_backbone_trainable(True)
    inputs = spatial.perception_inputs(images(2, size=64), "depth")
    seen = []
    hook = spatial.adapter.language_model().register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["inputs_embeds"]), with_kwargs=True
    )
    spatial(**inputs)
    hook.remove()
    queries = seen[0][inputs["input_ids"] == spatial.layout.query_id]
    tower = list(spatial.adapter.vision_tower().parameters())
    grads = torch.autograd.grad(queries.sum(), tower, allow_unused=True)
    reached = sum(float(g.abs().sum()) for g in grads if g is not None)
    assert (reached > 0) == (source == "image")


def _prompt(model: SpatialModel, question: str) -> str:
    message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    return model.adapter.render_chat(model.processor, [message], add_generation_prompt=True)


def _query_block(model: SpatialModel, ctx: KVContext, modality: str) -> dict:
    spec = model.config.spec(modality)
    call = model.adapter.tokenizer(model.processor).encode(
        spec.open_tag + modality + spec.close_tag, add_special_tokens=False
    )
    return ctx.token_segment(call + [model.layout.query_id] * model.config.num_queries)


def test_kv_context_seeds_every_block_from_the_photo():
    """Row 0 perceives twice, a map inserted between (its image must not become the seed); row 1
    only decodes. Each block's states equal a full forward's over the row's whole context."""
    model = seeded()
    photos = images(2, size=64)
    ctx = KVContext(model, batch_size=2)
    ctx.append(
        [
            ctx.prompt_segment(_prompt(model, "How far?"), [photos[0]]),
            ctx.prompt_segment(_prompt(model, "Hi"), [photos[1]]),
        ]
    )
    first = ctx.append([_query_block(model, ctx, "depth"), ctx.token_segment([7])])
    content = [{"type": "image"}, {"type": "text", "text": "Here is the depth map."}]
    insertion = model.adapter.continuation_text(model.processor, content)
    ctx.append([ctx.text_segment(insertion, [images(3, size=64)[2]]), None])
    second = ctx.append([_query_block(model, ctx, "segmentation"), ctx.token_segment([8])])
    with torch.no_grad():
        full = model(**ctx.full_inputs(0)).query_states
    k = model.config.num_queries
    torch.testing.assert_close(first.hidden[0, -k:], full["depth"][0], atol=ATOL, rtol=0)
    torch.testing.assert_close(second.hidden[0, -k:], full["segmentation"][0], atol=ATOL, rtol=0)


def test_a_query_block_without_an_image_is_refused():
    model = seeded()
    ctx = KVContext(model)
    text = model.adapter.render_chat(
        model.processor,
        [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        add_generation_prompt=True,
    )
    ctx.append([ctx.prompt_segment(text, [])])
    with pytest.raises(ValueError, match="query_source='image': row 0 holds a query block with no image"):
        ctx.append([_query_block(model, ctx, "depth")])


def test_a_non_square_image_is_refused_only_when_perceived():
    model = seeded()
    wide = Image.new("RGB", (128, 64))
    inputs = model.perception_inputs([wide], "depth")
    count = int((inputs["input_ids"] == model.adapter.image_token_id).sum())
    with pytest.raises(ValueError, match=f"fills {count} visual tokens, not a square block"):
        model(**inputs)
    ctx = KVContext(model)
    ctx.append([ctx.prompt_segment(_prompt(model, "What colour?"), [wide])])
    ctx.append([ctx.token_segment([7])])  # answering in text needs no seeds
    content = [{"type": "image"}, {"type": "text", "text": "Here is the depth map."}]
    square_map = images(3, size=64)[2]  # a later square image must not seed the photo's queries
    ctx.append([ctx.text_segment(model.adapter.continuation_text(model.processor, content), [square_map])])
    with pytest.raises(ValueError, match=f"fills {count} visual tokens, not a square block"):
        ctx.append([_query_block(model, ctx, "depth")])


def test_save_and_load_keep_the_seeding(tmp_path):
    model = seeded()
    folder = model.save_pretrained(tmp_path / "m")
    backbone, processor = build_tiny_backbone("qwen2_vl", image_size=64, patch_size=8)
    loaded = SpatialModel.from_pretrained(backbone, folder, processor)
    assert loaded.config.query_source == "image" and loaded.query_seeder is not None
    inputs = model.perception_inputs(images(2, size=64), "depth")
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(**inputs).query_states["depth"], model(**inputs).query_states["depth"]
        )


@pytest.mark.parametrize("family", ["llava_onevision", "idefics3", "internvl", "mllama"])
def test_families_without_one_square_block_are_refused(family):
    model, processor = build_tiny_backbone(family)
    with pytest.raises(ValueError, match=f"query_source: 'image' needs .* got model_type '{family}'"):
        add_spatial_heads(model, processor, **{**SMALL_HEADS, "query_source": "image"})


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl", "llava", "paligemma", "gemma3"])
def test_other_square_block_families_seed_their_queries(family):
    model, processor = build_tiny_backbone(family)
    spatial = add_spatial_heads(model, processor, **{**SMALL_HEADS, "query_source": "image"})
    inputs = spatial.perception_inputs(images(2), "depth")
    embeds = _language_model_embeds(spatial, inputs)
    learned = (spatial.queries["depth"] + spatial.query_pos).detach()
    got = embeds[inputs["input_ids"] == spatial.layout.query_id].reshape(2, 4, -1)
    assert not torch.allclose(got, learned.expand_as(got).to(got.dtype))
    assert not torch.allclose(got[0], got[1])  # each row seeded by its own image
