import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from training_setup import model_config, optim_config, run_config

from cooper_lib.training import checkpoint as ckpt
from cooper_lib.training.config import Stage1Config
from cooper_lib.training.grpo import SpatialGRPOTrainer
from cooper_lib.training.loop import accelerator_available
from cooper_lib.training.sft import InterleavedSFTTrainer
from cooper_lib.training.stage1 import Stage1Trainer
from cooper_lib.training.weights import build_model


def make_config(synthetic, out, **run) -> Stage1Config:
    return Stage1Config(
        # LoRA with dropout: the resumed run must restore the RNG to reproduce the dropout masks
        model=model_config(llm="lora", lora_r=4, lora_dropout=0.2),
        optim=optim_config(scheduler="cosine", warmup_steps=2),
        run=run_config(out, batch_size=2, ema_decay=0.9, **run),
        data=[str(synthetic["stage1"] / "records.jsonl")],
    )


def trainer_for(config, seed):
    torch.manual_seed(seed)  # a different initialisation: what the run needs must come from the checkpoint
    return Stage1Trainer(build_model(config.model), config)


def test_resume_continues_the_same_trajectory(synthetic, tmp_path):
    straight = trainer_for(make_config(synthetic, tmp_path / "straight", max_steps=6), seed=0).train()

    first = trainer_for(make_config(synthetic, tmp_path / "split", max_steps=6), seed=0).train(stop_at=3)
    assert first.checkpoint.name == "step-00000003" and first.final_dir is None
    resumed_trainer = trainer_for(make_config(synthetic, tmp_path / "split", max_steps=6), seed=123)
    assert resumed_trainer.step == 3
    resumed = resumed_trainer.train()

    losses = [h["loss"] for h in first.history + resumed.history]
    torch.testing.assert_close(losses, [h["loss"] for h in straight.history], rtol=1e-6, atol=1e-7)
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in straight.history[3:]]
    a = load_file(straight.final_dir / "spatial_heads.safetensors")
    b = load_file(resumed.final_dir / "spatial_heads.safetensors")
    assert all(torch.allclose(a[k], b[k], rtol=1e-6, atol=1e-7) for k in a)
    assert not (straight.final_dir / "backbone.safetensors").exists()  # LoRA only: a PEFT adapter
    a = load_file(straight.final_dir / "adapter_model.safetensors")
    b = load_file(resumed.final_dir / "adapter_model.safetensors")
    assert a and a.keys() == b.keys() and all("lora_" in k for k in a)
    assert all(torch.allclose(a[k], b[k], rtol=1e-6, atol=1e-7) for k in a)


def test_a_kill_mid_save_leaves_the_last_checkpoint_loadable(synthetic, tmp_path, monkeypatch):
    config = make_config(synthetic, tmp_path, max_steps=4, save_every=2)
    trainer = trainer_for(config, seed=0)

    calls = {"n": 0}
    real_save_optimizer = ckpt.save_optimizer

    def dies_on_second_save(directory, state):
        calls["n"] += 1
        if calls["n"] == 2:  # the step-4 save: model files are written, then the process "dies"
            raise KeyboardInterrupt
        real_save_optimizer(directory, state)

    monkeypatch.setattr(ckpt, "save_optimizer", dies_on_second_save)
    monkeypatch.setattr(ckpt, "abort_atomic", lambda tmp: None)  # a kill runs no cleanup
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    monkeypatch.undo()

    stale = ckpt.temp_dir_for(ckpt.checkpoint_dir(tmp_path, 4))
    assert (stale / "model" / "spatial_heads.safetensors").is_file()  # half-written, not renamed
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000002"]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000002"

    resumed = trainer_for(make_config(synthetic, tmp_path, max_steps=4, save_every=2), seed=5)
    assert resumed.step == 2
    result = resumed.train()
    assert [h["step"] for h in result.history] == [3.0, 4.0]
    assert not stale.exists()  # the next save swept the stale temp folder
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000002", "step-00000004"]


def test_resume_refuses_another_global_batch(synthetic, tmp_path):
    trainer_for(make_config(synthetic, tmp_path, max_steps=2), seed=0).train(stop_at=1)
    config = make_config(synthetic, tmp_path, max_steps=2)
    config.run.batch_size = 4
    with pytest.raises(ValueError, match="global batch"):
        trainer_for(config, seed=0)
    config.run.batch_size, config.run.resume = 4, "none"
    assert trainer_for(config, seed=0).step == 0


def test_log_file_evaluation_hooks_and_checkpoint_pruning(synthetic, tmp_path):
    config = make_config(synthetic, tmp_path, max_steps=4, save_every=1, keep_checkpoints=2, eval_every=2)
    seen = []

    def hook(trainer):
        seen.append((trainer.step, trainer.model.training))
        return {"custom": float(trainer.step)}

    torch.manual_seed(0)
    Stage1Trainer(build_model(config.model), config, eval_hooks=[hook]).train()
    assert seen == [(2, False), (4, False)]  # every eval_every steps, in eval mode
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines] == [1, 2, 3, 4] and all("loss" in e and "lr" in e for e in lines)
    assert [e.get("eval/custom") for e in lines] == [None, 2.0, None, 4.0]
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]
    state = json.loads((tmp_path / "checkpoints" / "step-00000004" / "state.json").read_text())
    assert state["step"] == 4 and state["data"]["sampler"]["step"] == 4 and state["global_batch_size"] == 2


KILLED_RUN = """
import os, signal, sys
import torch
from cooper_lib.training import checkpoint as ckpt
from cooper_lib.training.config import Stage1Config
from cooper_lib.training.grpo import SpatialGRPOTrainer
from cooper_lib.training.sft import InterleavedSFTTrainer
from cooper_lib.training.stage1 import Stage1Trainer
from cooper_lib.training.weights import build_model

torch.set_num_threads(1)
commit = ckpt.commit_atomic

def commit_then_die(tmp, final):
    out = commit(tmp, final)
    if final.name == "step-00000003":
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: the process is gone
    return out

ckpt.commit_atomic = commit_then_die
config = Stage1Config.load(sys.argv[1])
torch.manual_seed(0)
Stage1Trainer(build_model(config.model), config).train()
"""


def test_a_killed_process_resumes_on_the_same_trajectory(synthetic, tmp_path):
    """Train 6 steps straight vs a separate process SIGKILLed right after its step-3 checkpoint,
    then resumed: the losses and final weights match."""
    import signal
    import subprocess
    import sys

    straight = trainer_for(make_config(synthetic, tmp_path / "straight", max_steps=6), seed=0).train()
    config = make_config(synthetic, tmp_path / "killed", max_steps=6, save_every=3)
    path = config.save(tmp_path / "killed.yaml")
    done = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "killed")] == ["step-00000003"]

    resumed_trainer = trainer_for(
        make_config(synthetic, tmp_path / "killed", max_steps=6, save_every=3), seed=9
    )
    assert resumed_trainer.step == 3
    resumed = resumed_trainer.train()
    torch.testing.assert_close(
        [h["loss"] for h in resumed.history], [h["loss"] for h in straight.history[3:]], rtol=1e-6, atol=1e-7
    )
    a = load_file(straight.final_dir / "spatial_heads.safetensors")
    b = load_file(resumed.final_dir / "spatial_heads.safetensors")
    assert all(torch.allclose(a[k], b[k], rtol=1e-6, atol=1e-7) for k in a)


def test_log_lines_are_strict_json_and_trimmed_past_the_resumed_step(tmp_path):
    from cooper_lib.training.loop import log_line, trim_log

    line = log_line({"step": 1.0, "loss": float("nan"), "reward": float("inf"), "lr": 0.1})
    assert json.loads(line, parse_constant=lambda c: pytest.fail(c)) == {
        "step": 1.0, "loss": None, "reward": None, "lr": 0.1,
    }  # fmt: skip
    log = tmp_path / "log.jsonl"
    log.write_text("".join(log_line({"step": float(s)}) + "\n" for s in (1, 2, 3)) + '{"step": 4')
    assert trim_log(log, 2) == 2 and log.read_text().splitlines() == ['{"step": 1.0}', '{"step": 2.0}']
    assert trim_log(log, 2) == 0 and trim_log(tmp_path / "none.jsonl", 0) == 0


def test_resume_is_announced_and_the_log_has_no_duplicated_steps(synthetic, tmp_path, capsys):
    trainer_for(make_config(synthetic, tmp_path, max_steps=4, save_every=2), seed=0).train(stop_at=3)
    shutil.rmtree(ckpt.checkpoint_dir(tmp_path, 3))  # killed after logging step 3, before its checkpoint
    capsys.readouterr()
    resumed = trainer_for(make_config(synthetic, tmp_path, max_steps=4, save_every=2), seed=0)
    out = capsys.readouterr().out
    assert "resuming from step 2" in out and str(ckpt.checkpoint_dir(tmp_path, 2)) in out
    assert resumed.resumed_from == ckpt.checkpoint_dir(tmp_path, 2)
    resumed.train()
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines] == [1, 2, 3, 4]


def test_resume_refuses_changed_settings_unless_allowed(synthetic, tmp_path):
    trainer_for(make_config(synthetic, tmp_path, max_steps=4), seed=0).train(stop_at=1)
    config = make_config(synthetic, tmp_path, max_steps=4)
    config.optim.lr, config.run.log_every = 1e-3, 1  # log_every may change freely
    with pytest.raises(
        ValueError, match=r"optim\.lr: 0\.002 in the checkpoint, 0\.001 now.*allow_config_change"
    ):
        trainer_for(config, seed=0)
    config.run.allow_config_change = True
    trainer = trainer_for(config, seed=0)
    assert trainer.step == 1 and trainer.scheduler.base_lrs == [1e-3] * len(trainer.scheduler.base_lrs)
    factor = trainer.scheduler.lr_lambdas[0](trainer.scheduler.last_epoch)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * factor)


def test_a_trainer_finishes_a_final_swap_killed_between_renames(synthetic, tmp_path):
    final = tmp_path / "final"
    for folder, value in ((ckpt.old_dir_for(final), "old"), (ckpt.temp_dir_for(final), "new")):
        folder.mkdir(parents=True)
        (folder / "v.txt").write_text(value)
    trainer_for(make_config(synthetic, tmp_path, max_steps=2), seed=0)
    assert (final / "v.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_a_non_finite_loss_or_gradient_stops_training_before_the_update(synthetic, tmp_path):
    config = make_config(synthetic, tmp_path / "nan", max_steps=3, save_every=1)
    config.model = model_config()  # no LoRA: quicker
    trainer = Stage1Trainer(build_model(config.model), config)
    compute_loss = trainer.compute_loss

    def injected(batch):  # the second step's loss is NaN
        loss, metrics = compute_loss(batch)
        return (loss * float("nan") if trainer.step == 1 else loss), metrics

    trainer.compute_loss = injected
    with pytest.raises(
        FloatingPointError, match=r"loss: expected a finite value, got nan at step 2 .*aux/segmentation="
    ):
        trainer.train()
    assert trainer.step == 1 and not (tmp_path / "nan" / "final").exists()
    assert all(torch.isfinite(p).all() for p in trainer.spatial.parameters())
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "nan")] == ["step-00000001"]  # to resume from

    def infinite_gradient(batch):  # a finite loss whose gradient is NaN (d sqrt(u)/du at u = 0)
        loss, metrics = compute_loss(batch)
        head = next(p for p in trainer.spatial.heads.parameters() if p.requires_grad)
        return loss + torch.sqrt(head.sum() * 0.0), metrics

    trainer.compute_loss = infinite_gradient
    with pytest.raises(
        FloatingPointError, match="grad_norm: expected a finite gradient norm, got nan at step 2"
    ):
        trainer.train()
    assert all(torch.isfinite(p).all() for p in trainer.spatial.parameters())


def test_a_trainer_needs_a_spatial_model(synthetic, tmp_path):
    from cooper_lib.backbones.tiny import build_tiny_backbone

    backbone, _ = build_tiny_backbone("qwen2_vl")
    config = make_config(synthetic, tmp_path / "raw")
    for trainer, stage_config in (
        (Stage1Trainer, config),
        (InterleavedSFTTrainer, None),
        (SpatialGRPOTrainer, None),
    ):
        with pytest.raises(
            TypeError,
            match="model: expected a SpatialModel or a CooperModel, got Qwen2VLForConditionalGeneration",
        ):
            trainer(backbone, stage_config)


def test_accelerator_probe_works_without_torch_accelerator(monkeypatch):
    """torch 2.4 and 2.5 (which the package allows) have no `torch.accelerator`."""
    monkeypatch.delattr(torch, "accelerator", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert accelerator_available() is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert accelerator_available() is True
