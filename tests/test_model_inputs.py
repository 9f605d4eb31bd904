"""SpatialModel behaviour on one family: target validation, masking, LM loss, PEFT, hub upload."""

import shutil

import pytest
import torch
from helpers import SMALL_HEADS, images, tiny_spatial

from cooper_lib import SpatialModel, add_spatial_heads, ops
from cooper_lib.backbones.tiny import build_tiny_backbone

FAMILY = "qwen2_vl"


@pytest.fixture(scope="module")
def spatial():
    return tiny_spatial(FAMILY)


@pytest.fixture(scope="module")
def depth_inputs(spatial):
    return spatial.perception_inputs(images(2), "depth")


@pytest.mark.parametrize(
    ("targets", "error", "message"),
    [
        ({"depth": torch.rand(3, 16, 16)}, ValueError, r"expected 2 maps \(one per depth query block"),
        ({"depth": torch.rand(2, 16)}, ValueError, r"expected maps of shape \[n, h, w\]"),
        ({"depth": torch.ones(2, 16, 16, dtype=torch.long)}, TypeError, "floating-point"),
        ({"segmentation": torch.zeros(2, 16, 16, dtype=torch.long)}, ValueError, "expected 0 maps"),
        ({"smell": torch.rand(2, 16, 16)}, ValueError, "aux_targets: expected keys from"),
        ({"depth": [[1.0]]}, TypeError, "expected a torch.Tensor"),
    ],
)
def test_bad_targets_are_named(spatial, depth_inputs, targets, error, message):
    with pytest.raises(error, match=message):
        spatial(**depth_inputs, aux_targets=targets)


def test_segmentation_ids_checked(spatial):
    inputs = spatial.perception_inputs(images(1), "segmentation")
    with pytest.raises(ValueError, match=r"class ids in \[0, 6\) or 255"):
        spatial(**inputs, aux_targets={"segmentation": torch.full((1, 16, 16), 7)})
    with pytest.raises(TypeError, match="integer class ids"):
        spatial(**inputs, aux_targets={"segmentation": torch.zeros(1, 16, 16)})
    ignored = torch.full((1, 16, 16), 255)
    ignored[:, :4] = 3
    assert torch.isfinite(spatial(**inputs, aux_targets={"segmentation": ignored}).loss)


def test_invalid_depth_pixels_are_masked_not_used(spatial, depth_inputs):
    target = torch.rand(2, 16, 16) * 3 + 1
    bad = torch.zeros(2, 16, 16, dtype=torch.bool)
    bad[:, :5] = True
    with torch.no_grad():
        pred = spatial(**depth_inputs, return_maps=True).maps["depth"]
    for fill in (float("nan"), float("inf"), 0.0, -2.0):
        dirty = target.masked_fill(bad, fill)
        loss = spatial(**depth_inputs, aux_targets={"depth": dirty}).aux_losses["depth"]
        # the same loss as when those pixels are simply excluded by the mask
        expected = ops.silog_loss(pred, target, ~bad, lambd=0.85)
        torch.testing.assert_close(loss, expected)


def test_predictions_are_resized_to_target_size(spatial, depth_inputs):
    out = spatial(**depth_inputs, aux_targets={"depth": torch.rand(2, 24, 20) + 1})
    assert torch.isfinite(out.loss)


def test_lm_loss_ignores_query_positions(spatial, depth_inputs):
    ids = depth_inputs["input_ids"]
    only_queries = torch.full_like(ids, -100)
    only_queries[ids == spatial.layout.query_id] = ids[ids == spatial.layout.query_id]
    out = spatial(**depth_inputs, labels=only_queries)
    assert float(out.lm_loss) == 0.0
    full = spatial(**depth_inputs, labels=ids)
    assert float(full.lm_loss) > 0.0


def test_lm_loss_matches_full_logits_cross_entropy(spatial):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How far is it?"}]}]
    text = spatial.adapter.render_chat(spatial.processor, messages)
    inputs = spatial.adapter.build_inputs(spatial.processor, [text], [images(1)])
    labels = inputs["input_ids"].masked_fill(inputs["input_ids"] == spatial.adapter.image_token_id, -100)
    ours = spatial(**inputs, labels=labels).lm_loss
    reference = spatial.backbone(**inputs, labels=labels).loss
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_perceive_returns_maps(spatial):
    depth = spatial.perceive(images(3), "depth")
    assert depth.shape == (3, 16, 16) and bool((depth > 0).all())
    seg = spatial.perceive(images(1)[0], "segmentation")
    assert seg.shape == (1, 16, 16) and seg.dtype == torch.long
    with pytest.raises(ValueError, match="modality: expected one of"):
        spatial.perceive(images(1), "normals")
    with pytest.raises(TypeError, match=r"images\[0\]: expected a PIL image"):
        spatial.perceive([3], "depth")
    with pytest.raises(ValueError, match=r"images\[0\]: 'not an image' is neither an existing file"):
        spatial.perceive(["not an image"], "depth")


def test_lora_before_attaching_trains_lora_and_heads():
    peft = pytest.importorskip("peft")
    model, processor = build_tiny_backbone(FAMILY)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    spatial = add_spatial_heads(lora, processor, **SMALL_HEADS)
    assert spatial.backbone is lora
    inputs = spatial.perception_inputs(images(2), "depth")
    spatial(**inputs, aux_targets={"depth": torch.rand(2, 16, 16) + 1}).loss.backward()
    lora_grads = [p.grad for n, p in lora.named_parameters() if "lora_B" in n]
    assert lora_grads and any(g is not None and float(g.abs().sum()) > 0 for g in lora_grads)
    assert float(spatial.queries["depth"].grad.abs().sum()) > 0


def test_lora_after_attaching_trains_lora_and_heads():
    peft = pytest.importorskip("peft")
    spatial = tiny_spatial(FAMILY)
    lora = peft.get_peft_model(spatial.backbone, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    inputs = spatial.perception_inputs(images(2), "depth")
    spatial(**inputs, aux_targets={"depth": torch.rand(2, 16, 16) + 1}).loss.backward()
    lora_grads = [p.grad for n, p in lora.named_parameters() if "lora_B" in n]
    assert lora_grads and any(g is not None and float(g.abs().sum()) > 0 for g in lora_grads)
    assert float(spatial.queries["depth"].grad.abs().sum()) > 0
    assert all(p.grad is None for n, p in lora.named_parameters() if "lora" not in n)


def test_push_to_hub_uploads_what_save_pretrained_writes(spatial, tmp_path, monkeypatch):
    import huggingface_hub

    hub = tmp_path / "hub"
    calls = {}

    class LocalApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls["repo"] = (repo_id, private, exist_ok)

        def upload_folder(self, repo_id, folder_path, commit_message):
            shutil.copytree(folder_path, hub / repo_id)
            return f"local://{repo_id}"

    monkeypatch.setattr(huggingface_hub, "HfApi", LocalApi)
    url = spatial.push_to_hub("me/heads", private=True, token="t")
    assert url == "local://me/heads" and calls["repo"] == ("me/heads", True, True)
    backbone, processor = build_tiny_backbone(FAMILY)
    loaded = SpatialModel.from_pretrained(backbone, hub / "me/heads", processor)
    assert torch.equal(loaded.queries["depth"], spatial.queries["depth"])


def test_fake_hub_matches_huggingface_hubs_signatures():
    """The local stand-in above calls HfApi the way the real client is called."""
    import inspect

    import huggingface_hub

    upload = inspect.signature(huggingface_hub.HfApi.upload_folder).parameters
    create = inspect.signature(huggingface_hub.HfApi.create_repo).parameters
    assert {"repo_id", "folder_path", "commit_message"} <= set(upload)
    assert {"repo_id", "private", "exist_ok"} <= set(create)


def test_from_pretrained_downloads_a_repo_id_through_snapshot_download(spatial, tmp_path, monkeypatch):
    import inspect

    import huggingface_hub

    real = inspect.signature(huggingface_hub.snapshot_download).parameters
    assert {"repo_id", "revision", "token", "allow_patterns"} <= set(real)
    spatial.save_pretrained(tmp_path / "snapshot")
    asked = {}

    def snapshot_download(repo_id, revision=None, token=None, allow_patterns=None):
        asked.update(repo_id=repo_id, revision=revision, token=token, allow_patterns=allow_patterns)
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    backbone, processor = build_tiny_backbone(FAMILY)
    loaded = SpatialModel.from_pretrained(backbone, "me/heads", processor, revision="v1", token="t")
    assert asked == {
        "repo_id": "me/heads",
        "revision": "v1",
        "token": "t",
        "allow_patterns": ["cooper_config.json", "*.safetensors", "*.json"],
    }
    assert torch.equal(loaded.queries["depth"], spatial.queries["depth"])
