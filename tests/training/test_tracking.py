import importlib.util
import json

import pytest
import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from PIL import Image
from test_grpo import make_config as grpo_config
from training_setup import model_config, optim_config, run_config

from cooper_lib.reasoning.policy import PerceiveFirstPolicy
from cooper_lib.training.config import RunConfig, SFTConfig, Stage1Config, config_arguments
from cooper_lib.training.grpo import SpatialGRPOTrainer
from cooper_lib.training.sft import InterleavedSFTTrainer
from cooper_lib.training.stage1 import Stage1Trainer
from cooper_lib.training.tracking import (
    TRACKERS,
    Sample,
    flat_config,
    log_samples,
    report_to_names,
    resolve_report_to,
    sft_prompt,
)
from cooper_lib.training.weights import build_model


class RecordingTracker(GeneralTracker):
    """A custom accelerate tracker that keeps what it is given."""

    name = "recording"
    requires_logging_directory = False

    def __init__(self):
        super().__init__()
        self.config, self.scalars, self.texts, self.images, self.finished = None, {}, {}, {}, False

    @property
    def tracker(self):
        return self

    def store_init_configuration(self, values):
        self.config = dict(values)

    def log(self, values, step=None, **kwargs):
        for key, value in values.items():
            target = self.texts if isinstance(value, str) else self.scalars
            target.setdefault(key, {})[step] = value

    def log_images(self, values, step=None, **kwargs):
        for key, images in values.items():
            self.images.setdefault(key, {})[step] = images

    def finish(self):
        self.finished = True


def stage1_config(synthetic, out, **run) -> Stage1Config:
    records = str(synthetic["stage1"] / "records.jsonl")
    return Stage1Config(
        model=model_config(),
        optim=optim_config(),
        run=run_config(out, **{"max_steps": 2, "eval_every": 2, "log_every": 1, **run}),
        data=[records],
        eval_data=[records],
        eval_samples=2,
    )


def test_stage1_sends_scalars_config_and_map_grids_to_the_trackers(synthetic, tmp_path):
    torch.manual_seed(0)
    tracker = RecordingTracker()
    config = stage1_config(synthetic, tmp_path)
    trainer = Stage1Trainer(
        build_model(config.model), config, accelerator=Accelerator(cpu=True, log_with=[tracker])
    )
    result = trainer.train()

    assert tracker.config["optim.lr"] == 2e-3 and tracker.config["run.max_steps"] == 2
    assert set(tracker.scalars["loss"]) == {1, 2}
    assert tracker.scalars["loss"][2] == pytest.approx(result.history[1]["loss"])
    assert 2 in tracker.scalars["eval/loss"] and 1 not in tracker.scalars["eval/loss"]
    # two held-out records, one input / target / prediction grid each, at the evaluation step
    grids = {key: steps for key, steps in tracker.images.items() if key.startswith("samples/eval-")}
    assert len(grids) == 2 and all(set(steps) == {2} for steps in grids.values())
    picture = next(iter(grids.values()))[2][0]
    assert picture.ndim == 3 and picture.shape[2] == 3 and picture.shape[1] > picture.shape[0]
    assert set(tracker.texts) == {"samples/eval-0", "samples/eval-1"}
    folder = tmp_path / "samples" / "step-2"
    assert sorted(p.name for p in folder.glob("*.txt")) == ["eval-0.txt", "eval-1.txt"]
    assert len(list(folder.glob("eval-*-*.png"))) == 2
    assert tracker.finished and not trainer.accelerator.trackers
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 2  # log.jsonl as before


def test_grpo_logs_rollouts_with_their_generated_maps(synthetic, tmp_path):
    torch.manual_seed(0)
    tracker = RecordingTracker()
    config = grpo_config(
        synthetic, tmp_path, max_turns=2, run={"max_steps": 2, "log_every": 2, "log_samples": 1}
    )
    trainer = SpatialGRPOTrainer(
        build_model(config.model), config, accelerator=Accelerator(cpu=True, log_with=[tracker])
    )
    trainer.reasoner.policy = PerceiveFirstPolicy(("depth",))  # every rollout inserts a depth map
    trainer.train()

    assert set(tracker.scalars["reward"]) == {2}  # log_every=2: step 2 only
    assert set(tracker.images) == {"samples/rollout-0/trace", "samples/rollout-0/map-0-depth"}
    assert (
        "reward" in tracker.texts["samples/rollout-0"][2]
        and "[depth map]" in tracker.texts["samples/rollout-0"][2]
    )
    folder = tmp_path / "samples" / "step-2"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["rollout-0-map-0-depth.png", "rollout-0-trace.png", "rollout-0.html", "rollout-0.txt"]
    assert Image.open(folder / "rollout-0-map-0-depth.png").size[0] > 1
    assert not (tmp_path / "samples" / "step-1").exists()


class RecordingWriter:
    def __init__(self):
        self.images, self.texts = [], []

    def add_image(self, tag, image, step, dataformats):
        self.images.append((tag, image.shape, step, dataformats))

    def add_text(self, tag, text, step):
        self.texts.append((tag, text, step))

    def flush(self):
        pass


class TensorBoardLike(RecordingTracker):
    """Stands in for accelerate's TensorBoard tracker (tensorboard is not a test dependency)."""

    name = "tensorboard"

    def __init__(self):
        super().__init__()
        self.writer = RecordingWriter()

    @property
    def tracker(self):
        return self.writer


def test_tensorboard_gets_images_through_add_image_and_text_through_add_text(tmp_path):
    tracker = TensorBoardLike()
    accelerator = Accelerator(cpu=True, log_with=[tracker])
    accelerator.init_trackers("test")
    sample = Sample("eval-0", "Q: how far?\nA: 3 m", {"depth": Image.new("RGB", (20, 10))})
    folder = log_samples(accelerator, [sample], 7, tmp_path)
    assert tracker.writer.images == [("samples/eval-0/depth", (10, 20, 3), 7, "HWC")]
    assert tracker.writer.texts[0][0] == "samples/eval-0" and "how far?" in tracker.writer.texts[0][1]
    assert folder == tmp_path / "samples" / "step-7" and (folder / "eval-0-depth.png").is_file()


def test_report_to_accepts_transformers_values_and_names_the_accepted_ones():
    assert report_to_names("none") == [] and report_to_names(["none"]) == []
    assert report_to_names("all") == list(TRACKERS)
    assert report_to_names(["wandb", "tensorboard", "wandb"]) == ["wandb", "tensorboard"]
    with pytest.raises(
        ValueError, match=r"run.report_to: expected none, all, tensorboard, wandb, mlflow.*'tensorbord'"
    ):
        Stage1Config(run=RunConfig(report_to="tensorbord"))
    with pytest.raises(ValueError, match="run.report_to"):
        Stage1Config(run=RunConfig(report_to=["wandb", "neptune"]))
    assert all(n in TRACKERS for n in resolve_report_to("all"))


@pytest.mark.parametrize("name", ["wandb", "mlflow", "tensorboard"])
def test_a_tracker_whose_package_is_missing_is_an_error_naming_report_to(name, synthetic, tmp_path):
    if name in resolve_report_to("all"):
        pytest.skip(f"{name} is installed")
    with pytest.raises(
        ValueError, match=rf"run.report_to: '{name}' needs the {name} package.*pip install {name}"
    ):
        resolve_report_to([name])
    config = stage1_config(synthetic, tmp_path, report_to=name)
    with pytest.raises(ValueError, match="run.report_to"):
        Stage1Trainer(build_model(config.model), config)


def test_report_to_with_an_accelerator_passed_in_is_an_error(synthetic, tmp_path, monkeypatch):
    monkeypatch.setattr("cooper_lib.training.tracking._installed", lambda name: True)
    config = stage1_config(synthetic, tmp_path, report_to="tensorboard")
    with pytest.raises(ValueError, match="run.report_to.*log_with"):
        Stage1Trainer(build_model(config.model), config, accelerator=Accelerator(cpu=True))


def test_old_configs_with_tensorboard_read_as_report_to():
    installed = any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))
    with pytest.warns(FutureWarning, match="run.tensorboard: deprecated"):
        config = Stage1Config.from_dict({"run": {"tensorboard": True, "max_steps": 3}})
    assert config.run.report_to == ("tensorboard" if installed else "none") and config.run.max_steps == 3
    with pytest.warns(FutureWarning):
        assert Stage1Config.from_dict({"run": {"tensorboard": False}}).run.report_to == "none"
    with pytest.raises(ValueError, match="give only report_to"):
        Stage1Config.from_dict({"run": {"tensorboard": False, "report_to": "wandb"}})
    assert "tensorboard" not in Stage1Config().to_dict()["run"]


def test_report_to_flag_takes_one_or_more_trackers():
    import argparse

    parser = argparse.ArgumentParser()
    config_arguments(parser, Stage1Config)
    assert vars(parser.parse_args(["--run.report_to", "wandb", "mlflow"]))["run.report_to"] == [
        "wandb",
        "mlflow",
    ]
    assert Stage1Config.from_dict({"run": {"report_to": ["wandb", "mlflow"]}}).run.report_to == [
        "wandb",
        "mlflow",
    ]


def test_flat_config_holds_only_tracker_types():
    flat = flat_config(Stage1Config(data=["a.jsonl"]).to_dict())
    assert flat["optim.lr"] == 5e-6 and flat["run.report_to"] == "none"
    assert flat["data"] == json.dumps(["a.jsonl"]) and flat["optim.betas"] == "[0.9, 0.95]"
    assert all(v is None or isinstance(v, (bool, int, float, str)) for v in flat.values())


def test_sft_evaluations_log_greedy_traces_of_the_held_out_prompts(synthetic, tmp_path):
    torch.manual_seed(0)
    tracker = RecordingTracker()
    records = str(synthetic["sft"] / "records.jsonl")
    config = SFTConfig(
        model=model_config(),
        optim=optim_config(),
        run=run_config(tmp_path, max_steps=1, eval_every=1, log_samples=1),
        data=[records],
        eval_data=[records],
        eval_samples=1,
        sample_max_new_tokens=4,
        num_workers=0,
    )
    trainer = InterleavedSFTTrainer(
        build_model(config.model), config, accelerator=Accelerator(cpu=True, log_with=[tracker])
    )
    image, question, system = sft_prompt(trainer.eval_records[0])
    assert question.startswith(trainer.eval_records[0].meta["question"])  # the user text, no system prompt
    assert system.startswith("You are") and image.size[0] > 1
    trainer.train()
    text = tracker.texts["samples/eval-0"][1]
    assert text.startswith(f"Q: {question}") and "reference: " in text
    assert "samples/eval-0/trace" in tracker.images
    assert (tmp_path / "samples" / "step-1" / "eval-0.html").is_file()


def test_a_checkpoint_written_with_run_tensorboard_resumes_without_a_config_change(tmp_path):
    from cooper_lib.training.checkpoint import changed_settings

    saved = Stage1Config().to_dict()
    del saved["run"]["report_to"]
    saved["run"]["tensorboard"] = True  # what checkpoints recorded before run.report_to
    now = Stage1Config.from_dict({"run": {"report_to": "tensorboard"}})
    assert changed_settings(saved, now.to_dict()) == {}
