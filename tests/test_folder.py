"""The model folder: what save_pretrained writes for heads-only, LoRA and full-backbone models, the
one-call loader (disk and a stubbed hub), atomic saves, NaN checks, old layouts, the model card."""

import json
import shutil

import pytest
import torch
from helpers import SMALL_HEADS, images
from safetensors.torch import load_file, save_file

from cooper_lib import SpatialModel, add_spatial_heads, folder
from cooper_lib.loading import inject_lora, load_backbone

SPEC = "tiny:qwen2_5_vl"  # tied embeddings, like the real Qwen2.5-VL


def _spatial(**kwargs) -> SpatialModel:
    backbone, processor = load_backbone(SPEC)
    return add_spatial_heads(backbone, processor, modalities=("depth",), **{**SMALL_HEADS, **kwargs})


def _perturb(params) -> None:
    with torch.no_grad():
        for param in params:
            param.add_(torch.randn_like(param) * 0.05)


def _depth(model: SpatialModel) -> torch.Tensor:
    inputs = model.perception_inputs(images(2), "depth")
    return model.eval()(**inputs, return_maps=True).maps["depth"]


def _assert_same_weights(a: SpatialModel, b: SpatialModel) -> None:
    theirs = dict(b.named_parameters())
    for name, param in a.named_parameters():
        assert torch.equal(param, theirs[name]), name


def test_backbone_is_frozen_after_attaching_but_the_added_rows_train():
    model = _spatial()
    embed = model.adapter.input_embeddings().weight
    frozen = [p for n, p in model.backbone.named_parameters() if p is not embed]
    assert frozen and not any(p.requires_grad for p in frozen)
    inputs = model.perception_inputs(images(2), "depth")
    labels = inputs["input_ids"].clone()
    model(**inputs, labels=labels, aux_targets={"depth": torch.rand(2, 16, 16) + 1}).loss.backward()
    rows = torch.zeros(embed.shape[0], dtype=torch.bool)
    rows[model.added_token_ids] = True
    assert float(embed.grad[~rows].abs().sum()) == 0 and float(embed.grad[rows].abs().sum()) > 0
    assert all(p.requires_grad for p in _spatial(train_backbone=True).backbone.parameters())


def test_heads_only_folder_reloads_in_one_call_without_backbone_weights(tmp_path):
    model = _spatial()
    _perturb(model.heads.parameters())
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "base_model.json", "cooper_config.json", "spatial_heads.safetensors",
    ]  # fmt: skip
    assert json.loads((tmp_path / "base_model.json").read_text())["base_model"] == SPEC
    loaded = SpatialModel.from_pretrained(tmp_path)
    _assert_same_weights(model, loaded)
    assert torch.equal(_depth(loaded), _depth(model))


def test_trained_backbone_is_saved_and_reloaded_exactly(tmp_path):
    model = _spatial(train_backbone=True)
    _perturb(model.parameters())
    model.set_backbone_trainable(False)  # frozen again after training: still saved
    model.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "backbone.safetensors"))
    assert len(saved) == len(dict(model.backbone.named_parameters()))  # the tied matrix once
    loaded = SpatialModel.from_pretrained(tmp_path)
    _assert_same_weights(model, loaded)
    assert torch.equal(_depth(loaded), _depth(model))


def test_weight_decay_on_the_row_masked_embeddings_is_not_lost(tmp_path):
    """AdamW's default weight decay shrinks every row of a row-masked matrix: the save notices."""
    model = _spatial()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    inputs = model.perception_inputs(images(2), "depth")
    model(**inputs, aux_targets={"depth": torch.rand(2, 16, 16) + 1}).loss.backward()
    optimizer.step()
    model.save_pretrained(tmp_path)
    assert "model.language_model.embed_tokens.weight" in load_file(str(tmp_path / "backbone.safetensors"))
    _assert_same_weights(model, SpatialModel.from_pretrained(tmp_path))

    fresh = _spatial()
    optimizer = torch.optim.AdamW(
        [p for p in fresh.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0
    )
    fresh(**inputs, aux_targets={"depth": torch.rand(2, 16, 16) + 1}).loss.backward()
    optimizer.step()
    fresh.save_pretrained(tmp_path / "no_decay")
    assert not (tmp_path / "no_decay" / "backbone.safetensors").exists()


def test_lora_is_saved_as_a_peft_adapter_that_peft_itself_loads(tmp_path):
    peft = pytest.importorskip("peft")
    model = _spatial()
    inject_lora(model, {"r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"]})
    _perturb(p for n, p in model.backbone.named_parameters() if "lora_B" in n)
    model.save_pretrained(tmp_path)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    assert not (tmp_path / "backbone.safetensors").exists()
    assert json.loads((tmp_path / "adapter_config.json").read_text())["base_model_name_or_path"] == SPEC

    loaded = SpatialModel.from_pretrained(tmp_path)
    _assert_same_weights(model, loaded)
    assert torch.equal(_depth(loaded), _depth(model))

    plain, _ = load_backbone(SPEC)
    plain.resize_token_embeddings(model.adapter.input_embeddings().weight.shape[0])
    with_peft = peft.PeftModel.from_pretrained(plain, str(tmp_path))
    ours = {n.replace(".default", ""): p for n, p in model.backbone.named_parameters() if "lora_" in n}
    theirs = {
        n.removeprefix("base_model.model.").replace(".default", ""): p
        for n, p in with_peft.named_parameters()
        if "lora_" in n
    }
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_peft_wrapped_backbone_saves_through_peft(tmp_path):
    peft = pytest.importorskip("peft")
    backbone, processor = load_backbone(SPEC)
    wrapped = peft.get_peft_model(backbone, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    model = add_spatial_heads(wrapped, processor, modalities=("depth",), **SMALL_HEADS)
    assert any(p.requires_grad for n, p in wrapped.named_parameters() if "lora_" in n)
    _perturb(p for n, p in wrapped.named_parameters() if "lora_B" in n)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file()
    assert torch.equal(_depth(SpatialModel.from_pretrained(tmp_path)), _depth(model))


def test_one_call_loader_reads_a_hub_repo(tmp_path, monkeypatch):
    import huggingface_hub

    model = _spatial()
    inject_lora(model, {"r": 2, "target_modules": ["q_proj"]})
    _perturb(p for n, p in model.named_parameters() if p.requires_grad)
    model.save_pretrained(tmp_path / "repo")
    asked = {}

    def snapshot_download(repo_id, revision=None, token=None, allow_patterns=None):
        asked.update(repo_id=repo_id, revision=revision)
        target = tmp_path / "cache" / repo_id
        shutil.copytree(tmp_path / "repo", target)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    loaded = SpatialModel.from_pretrained("me/spatial", revision="v1")
    assert asked == {"repo_id": "me/spatial", "revision": "v1"}
    _assert_same_weights(model, loaded)


@pytest.mark.parametrize("where", ["path", "absolute", "relative"])
def test_a_missing_folder_is_named_not_sent_to_the_hub(tmp_path, monkeypatch, where):
    import huggingface_hub

    def snapshot_download(*args, **kwargs):
        raise AssertionError("a path reached the hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.chdir(tmp_path)
    missing = {
        "path": tmp_path / "gone",
        "absolute": str(tmp_path / "gone"),
        "relative": "./runs/gone/final",
    }[where]
    with pytest.raises(
        FileNotFoundError, match=r"expected a model folder or a hub repo id .*gone.*no folder"
    ):
        SpatialModel.from_pretrained(missing)


def test_an_interrupted_save_leaves_the_earlier_save_loadable(tmp_path, monkeypatch):
    model = _spatial(train_backbone=True)
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "notes.txt").write_text("kept")
    before = _depth(model)
    _perturb(model.parameters())
    real = folder.save_tensors
    writes = []

    def dying_save(tensors, path):
        writes.append(path.name)
        if len(writes) == 2:  # the heads are written, the backbone weights are not
            raise KeyboardInterrupt("killed while saving")
        real(tensors, path)

    monkeypatch.setattr(folder, "save_tensors", dying_save)
    with pytest.raises(KeyboardInterrupt):
        model.save_pretrained(tmp_path / "m")
    monkeypatch.setattr(folder, "save_tensors", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folder left
    assert torch.equal(_depth(SpatialModel.from_pretrained(tmp_path / "m")), before)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "notes.txt").read_text() == "kept"
    assert torch.equal(_depth(SpatialModel.from_pretrained(tmp_path / "m")), _depth(model))


@pytest.mark.parametrize("file", ["spatial_heads.safetensors", "backbone.safetensors"])
def test_non_finite_weights_are_named(tmp_path, file):
    model = _spatial(train_backbone=True)
    model.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / file))
    name = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(tmp_path / file))
    with pytest.raises(ValueError, match=rf"{file}: tensor '{name}' holds 1 NaN or infinite"):
        SpatialModel.from_pretrained(tmp_path)


def test_old_folders_still_load(tmp_path):
    """Folders from before base_model.json and PEFT adapters: heads only, and a trainer's LoRA folder."""
    model = _spatial()
    lora = {"r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "target_modules": ["q_proj"]}
    inject_lora(model, lora)
    _perturb(p for n, p in model.named_parameters() if p.requires_grad)
    old = tmp_path / "old"
    old.mkdir()
    model.config.save(old)
    save_file(model.addition_state_dict(), str(old / "spatial_heads.safetensors"))
    private = {n: p.detach().contiguous() for n, p in model.backbone.named_parameters() if "lora_" in n}
    save_file(private, str(old / "backbone.safetensors"))
    info = {
        "format": 1,
        "backbone": SPEC,
        "dtype": "float32",
        "llm": "lora",
        "freeze_vision": True,
        "lora": lora,
    }
    (old / "trainable.json").write_text(json.dumps(info))
    _assert_same_weights(model, SpatialModel.from_pretrained(old))

    (old / "trainable.json").unlink()
    (old / "backbone.safetensors").unlink()  # a heads-only folder: no record of the backbone
    with pytest.raises(ValueError, match="records no base model"):
        SpatialModel.from_pretrained(old)
    backbone, processor = load_backbone(SPEC)
    loaded = SpatialModel.from_pretrained(backbone, old, processor)
    assert torch.equal(loaded.queries["depth"], model.queries["depth"])


def test_push_to_hub_writes_a_model_card(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import ModelCard

    model = _spatial()
    model.backbone.config._name_or_path = "Qwen/Qwen2.5-VL-3B-Instruct"

    class LocalApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False):
            pass

        def upload_folder(self, repo_id, folder_path, commit_message):
            shutil.copytree(folder_path, tmp_path / repo_id)
            return f"local://{repo_id}"

    monkeypatch.setattr(huggingface_hub, "HfApi", LocalApi)
    model.push_to_hub("me/spatial")
    card = ModelCard.load(tmp_path / "me/spatial" / "README.md")
    assert card.data.base_model == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert card.data.library_name == "cooper-lib" and "depth" in card.data.tags
    assert 'SpatialModel.from_pretrained("me/spatial")' in card.text
