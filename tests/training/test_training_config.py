import argparse
import dataclasses
import json

import pytest

from cooper_lib.training.config import (
    GRPOConfig,
    SFTConfig,
    Stage1Config,
    apply_overrides,
    attribute_summaries,
    config_arguments,
    read_config_file,
)


@pytest.mark.parametrize("cls", [Stage1Config, SFTConfig, GRPOConfig])
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_configs_round_trip_through_yaml_and_json(cls, suffix, tmp_path):
    config = cls()
    config.run.max_steps = 7
    config.model.spatial = {"modalities": ["depth"], "query_grid": [2, 2]}
    path = config.save(tmp_path / f"c{suffix}")
    assert cls.load(path) == config
    assert cls.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_stage_defaults_follow_coopers_recipes():
    s1, sft, grpo = Stage1Config(), SFTConfig(), GRPOConfig()
    assert s1.optim.lr == 5e-6 and s1.optim.betas == (0.9, 0.95) and s1.optim.eps == 1e-15
    assert s1.optim.warmup_steps == 500 and s1.run.max_steps == 6000 and s1.optim.grad_clip == 1.0
    assert s1.run.ema_decay == 0.995 and s1.mixture == {"depth": 0.5, "segmentation": 0.5}
    assert s1.model.freeze_vision and s1.model.llm == "full"
    assert sft.run.max_steps == 600 and sft.optim.lr == 5e-6
    assert grpo.num_generations == 8 and grpo.kl_beta == 0.0 and grpo.clip_eps == 0.2
    assert grpo.optim.lr == 3e-6 and grpo.optim.scheduler == "cosine" and grpo.adv_eps == 1e-4
    assert grpo.temperature == 1.0 and grpo.max_turns == 3 and grpo.exploration_threshold == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"optim": {"lr": -1}}, "optim.lr"),
        ({"model": {"llm": "half"}}, "model.llm"),
        ({"run": {"mixed_precision": "fp8"}}, "run.mixed_precision"),
        ({"mixture": {"depth": -1.0}}, "mixture"),
        ({"colour": "red"}, "unknown fields"),
        ({"run": {"max_steps": 2.5}}, "expected int"),
        ({"model": {"freeze_vision": "yes"}}, "true or false"),
        ({"target_size": [4]}, "expected 2 values"),
    ],
)
def test_bad_values_raise_with_the_field_name(data, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Stage1Config.from_dict(data)


def test_a_partial_section_keeps_the_stage_defaults():
    config = GRPOConfig.from_dict({"optim": {"lr": 1e-5}, "reward_weights": {"format": 0.5}})
    assert config.optim.lr == 1e-5 and config.optim.scheduler == "cosine" and config.optim.warmup_steps == 0
    assert config.reward_weights == {"format": 0.5}  # plain mappings are replaced, not merged
    assert Stage1Config.from_dict({"run": {"batch_size": 8}}).run.ema_decay == 0.995


def test_grpo_validation():
    with pytest.raises(ValueError, match="num_generations"):
        GRPOConfig(num_generations=1)
    with pytest.raises(ValueError, match="judge_url"):
        GRPOConfig(judge="openai")
    with pytest.raises(ValueError, match="reward_weights"):
        GRPOConfig(reward_weights={"style": 1.0})


def test_a_field_without_help_takes_the_first_sentence_of_its_documented_attribute():
    @dataclasses.dataclass
    class Documented:
        """A config.

        Attributes:
            steps: how many steps, e.g. 3. Longer text
                that goes on.
            rate: the ``rate``,
                over two lines (i.e. wrapped). And more.

        Returns nothing.
        """

        steps: int = 3
        rate: float = 0.5
        undocumented: int = 0

    assert attribute_summaries(Documented) == {
        "steps": "how many steps, e.g. 3.",
        "rate": "the `rate`, over two lines (i.e. wrapped).",
    }
    parser = argparse.ArgumentParser()
    config_arguments(parser, Documented)
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["steps"] == "how many steps, e.g. 3. (default: 3)"
    assert helps["undocumented"] == " (default: 0)"
    assert attribute_summaries(GRPOConfig) == {}


def test_every_field_is_a_flag_and_flags_override_the_file(tmp_path):
    parser = argparse.ArgumentParser()
    config_arguments(parser, GRPOConfig)
    flags = {a.dest for a in parser._actions if a.dest != "help"}
    expected = {f"{s}.{k}" for s in ("model", "optim", "run") for k in GRPOConfig().to_dict()[s]}
    expected |= {k for k in GRPOConfig().to_dict() if k not in ("model", "optim", "run")}
    assert flags == expected
    path = GRPOConfig(num_generations=4).save(tmp_path / "g.yaml")
    args = parser.parse_args(
        [
            "--optim.lr",
            "1e-5",
            "--no-run.progress_bar",
            "--reward_weights",
            '{"format": 0.5}',
            "--judge_url",
            "none",
        ]
    )
    config = GRPOConfig.from_dict(apply_overrides(read_config_file(path), vars(args)))
    assert config.num_generations == 4  # from the file
    assert (
        config.optim.lr == 1e-5
        and config.run.progress_bar is False
        and config.reward_weights == {"format": 0.5}
    )
    assert config.judge_url is None


def test_read_config_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_config_file(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        read_config_file(tmp_path / "list.yaml")


def test_none_disables_an_optional_field_in_yaml(tmp_path):
    path = tmp_path / "stage1.yaml"
    path.write_text("run:\n  ema_decay: none\noptim:\n  grad_clip: null\n")
    config = Stage1Config.load(path)
    assert config.run.ema_decay is None and config.optim.grad_clip is None
    with pytest.raises(TypeError, match="run.lr|run.max_steps"):
        Stage1Config.from_dict({"run": {"max_steps": "none"}})  # not optional: still an error
