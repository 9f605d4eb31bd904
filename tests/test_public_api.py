import importlib.util

import pytest

import cooper_lib

#: Trainer names of TRL (checked by name: TRL is not a dependency).
TRL_NAMES = {
    "GRPOTrainer",
    "SFTTrainer",
    "DPOTrainer",
    "PPOTrainer",
    "RewardTrainer",
    "GRPOConfig",
    "SFTConfig",
}


def test_public_surface_is_small_and_every_name_resolves():
    assert len(cooper_lib.__all__) <= 25
    assert len(set(cooper_lib.__all__)) == len(cooper_lib.__all__)
    for name in cooper_lib.__all__:
        assert getattr(cooper_lib, name) is not None


@pytest.mark.parametrize("library", ["datasets", "transformers", "trl"])
def test_no_top_level_name_shadows_a_library_name(library):
    if importlib.util.find_spec(library) is None:
        pytest.skip(f"{library} is not installed")
    module = importlib.import_module(library)
    assert sorted(set(cooper_lib.__all__) & set(dir(module))) == []


def test_no_top_level_name_is_a_trl_trainer_name():
    assert sorted(set(cooper_lib.__all__) & TRL_NAMES) == []
