import json

import pytest
import torch
from cooper_layout import flux_ae_shapes, official_shapes, random_tensors, write_release
from safetensors.torch import save_file

from cooper_lib.models.cooper import CooperModel, preset

TINY_IDS = {"bos_token_id": 1, "eos_token_id": 2, "vision_start_id": 3, "vision_end_id": 4}
TINY_AE = {"vae": {"norm_groups": 4}}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    cfg = preset("tiny")
    folder = tmp_path_factory.mktemp("release")
    main = random_tensors(official_shapes(cfg), cfg)
    ae = random_tensors(flux_ae_shapes(cfg), cfg, seed=1)
    write_release(folder, cfg, main=main, ae=ae)
    return folder, main, ae


def _load(folder, **kw):
    return CooperModel.from_pretrained(folder, **TINY_IDS, **TINY_AE, **kw)


def test_release_folder_loads_key_for_key(release):
    folder, main, ae = release
    model = _load(folder)
    state = model.state_dict()
    tables = {"vit_pos_embed.pos_embed", "latent_pos_embed.pos_embed"}
    assert set(state) == (set(main) - tables) | {f"vae.{k}" for k in ae}
    for key, value in main.items():
        if key not in tables:
            assert state[key].dtype == torch.bfloat16, key  # no cast unless asked
            assert torch.equal(state[key], value), key
    for key, value in ae.items():
        assert torch.equal(state[f"vae.{key}"], value.float()), key
    # read off the files: 3 ViT layers in vit_config.json -> 2 used; table sides from the shapes
    assert model.config.vit.num_hidden_layers == 2
    assert model.config.vit_max_num_patch_per_side == 16 and model.config.max_latent_size == 8
    assert model.config.vae.channel_multipliers == (1, 2, 2, 2)
    assert all(not t.is_meta for t in list(model.parameters()) + list(model.buffers()))


def test_loaded_model_runs_and_casts(release):
    from cooper_lib.models.cooper import SequenceBuilder

    model = _load(release[0], dtype=torch.float32)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    seq = (
        SequenceBuilder(model.config)
        .text([1, 5, 6])
        .image(torch.zeros(3, 8, 8))
        .latent(torch.randn(16, 2, 2), noised=True)
        .build()
    )
    loss = model.stage1_loss(seq, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


def test_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    model = CooperModel(preset("tiny"))
    model.save_pretrained(tmp_path, max_shard_bytes=100_000)
    assert (tmp_path / "ema.safetensors.index.json").is_file()
    assert json.loads((tmp_path / "vit_config.json").read_text())["num_hidden_layers"] == 3  # release rule
    loaded = CooperModel.from_pretrained(tmp_path)
    assert loaded.config == model.config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _broken_release(tmp_path, edit_main=None, edit_ae=None):
    cfg = preset("tiny")
    main = random_tensors(official_shapes(cfg), cfg)
    ae = random_tensors(flux_ae_shapes(cfg), cfg, seed=1)
    if edit_main:
        edit_main(main)
    if edit_ae:
        edit_ae(ae)
    write_release(tmp_path, cfg, main=main, ae=ae)
    return tmp_path


def test_wrong_shape_names_the_key(tmp_path):
    key = "language_model.model.layers.1.self_attn.k_proj_moe_gen.weight"
    folder = _broken_release(tmp_path, edit_main=lambda m: m.__setitem__(key, torch.zeros(16, 64)))
    with pytest.raises(ValueError, match=f"{key}.*shape \\[16, 64\\], expected \\[32, 64\\]"):
        _load(folder)


def test_missing_key_names_the_key(tmp_path):
    key = "language_model.model.layers.0.mlp_moe_gen.up_proj.weight"
    folder = _broken_release(tmp_path, edit_main=lambda m: m.pop(key))
    with pytest.raises(ValueError, match=f"missing 1 key.*{key}"):
        _load(folder)


def test_missing_autoencoder_key_names_the_key(tmp_path):
    key = "decoder.up.2.block.1.conv2.bias"
    folder = _broken_release(tmp_path, edit_ae=lambda a: a.pop(key))
    with pytest.raises(ValueError, match=f"ae.safetensors: missing 1 key.*{key}"):
        _load(folder)


def test_unexpected_key_names_the_key(tmp_path):
    folder = _broken_release(
        tmp_path, edit_main=lambda m: m.__setitem__("language_model.extra.weight", torch.zeros(2))
    )
    with pytest.raises(ValueError, match="unexpected key 'language_model.extra.weight'"):
        _load(folder)


def test_a_wrong_position_table_is_refused(tmp_path):
    folder = _broken_release(
        tmp_path, edit_main=lambda m: m.__setitem__("latent_pos_embed.pos_embed", torch.zeros(64, 64))
    )
    with pytest.raises(ValueError, match="latent_pos_embed.pos_embed.*sin-cos"):
        _load(folder)


def test_position_tables_are_optional(tmp_path):
    def drop(m):
        m.pop("vit_pos_embed.pos_embed")
        m.pop("latent_pos_embed.pos_embed")

    model = _load(_broken_release(tmp_path, edit_main=drop))
    assert model.config.max_latent_size == 64  # not recorded anywhere: BAGEL's constant


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="ema.safetensors"):
        CooperModel.from_pretrained(tmp_path)
    save_file({"x": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="ae.safetensors"):
        CooperModel.from_pretrained(tmp_path)


def test_7b_preset_matches_the_release_layout_and_published_counts():
    cfg = preset("bagel-7b-mot")
    with torch.device("meta"):
        model = CooperModel(cfg)
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    official = official_shapes(cfg)
    tables = {k: official.pop(k) for k in ("vit_pos_embed.pos_embed", "latent_pos_embed.pos_embed")}
    assert {k: v for k, v in state.items() if not k.startswith("vae.")} == official
    assert {k.removeprefix("vae."): v for k, v in state.items() if k.startswith("vae.")} == flux_ae_shapes(
        cfg
    )
    assert tables == {"vit_pos_embed.pos_embed": (4900, 3584), "latent_pos_embed.pos_embed": (4096, 3584)}
    # published: 1,223 tensors = 23 + 28 x 28 (LLM layers) + 16 x 26 (ViT layers); 14,607,260,128 params
    assert len(official) + len(tables) == 1223 == 23 + 28 * 28 + 16 * 26
    assert model.num_parameters() == 14_607_260_128
    assert model.num_parameters("text_token") == 7_615_623_680
    assert model.num_parameters("autoencoder") == 83_819_683
    assert len(flux_ae_shapes(cfg)) == 244
