import pytest

from cooper_lib.models.cooper import AutoencoderConfig, CooperConfig, LLMConfig, preset
from cooper_lib.models.cooper.presets import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(tmp_path, name):
    cfg = preset(name)
    cfg.save(tmp_path / "c.json")
    assert CooperConfig.load(tmp_path / "c.json") == cfg


def test_7b_preset_has_the_released_shapes():
    cfg = preset("bagel-7b-mot")
    llm, vit = cfg.llm, cfg.vit
    assert (llm.hidden_size, llm.num_hidden_layers, llm.num_attention_heads, llm.num_key_value_heads) == (
        3584,
        28,
        28,
        4,
    )
    assert (llm.head_dim, llm.intermediate_size, llm.vocab_size) == (128, 18944, 152064)
    assert (
        vit.hidden_size,
        vit.num_hidden_layers,
        vit.patch_size,
        vit.intermediate_size,
        vit.num_attention_heads,
    ) == (1152, 26, 14, 4304, 16)
    assert (cfg.latent_patch_size, cfg.max_latent_size, cfg.vit_max_num_patch_per_side) == (2, 64, 70)
    assert (cfg.latent_dim, cfg.latent_downsample, cfg.timestep_shift) == (64, 16, 3.0)
    assert (cfg.vae.z_channels, cfg.vae.downsample, cfg.vae.scale_factor, cfg.vae.shift_factor) == (
        16,
        8,
        0.3611,
        0.1159,
    )
    assert cfg.connector_act == "gelu_pytorch_tanh"


def test_errors_name_the_field():
    with pytest.raises(ValueError, match="name: expected one of"):
        preset("bagel-14b")
    with pytest.raises(ValueError, match="unknown fields \\['depth'\\]"):
        CooperConfig.from_dict({"llm": {"depth": 3}})
    with pytest.raises(ValueError, match="num_key_value_heads"):
        LLMConfig(num_attention_heads=28, num_key_value_heads=5)
    with pytest.raises(ValueError, match="bos_token_id"):
        CooperConfig(
            llm=LLMConfig(vocab_size=100, hidden_size=64, num_attention_heads=4, num_key_value_heads=2)
        )
    with pytest.raises(ValueError, match="norm_groups"):
        AutoencoderConfig(base_channels=8)
