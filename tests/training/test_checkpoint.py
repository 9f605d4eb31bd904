import random

import numpy as np
import pytest
import torch

from cooper_lib.training import checkpoint as ckpt


def test_atomic_write_list_and_prune(tmp_path):
    for step in (1, 2, 3):
        final = ckpt.checkpoint_dir(tmp_path, step)
        tmp = ckpt.begin_atomic(final)
        (tmp / "x.json").write_text("{}")
        ckpt.save_json(tmp / ckpt.STATE_NAME, {"step": step})
        ckpt.commit_atomic(tmp, final)
    unfinished = ckpt.begin_atomic(ckpt.checkpoint_dir(tmp_path, 4))
    (unfinished / "x.json").write_text("{")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "step-00000001",
        "step-00000002",
        "step-00000003",
    ]
    with pytest.raises(FileExistsError):
        ckpt.begin_atomic(ckpt.checkpoint_dir(tmp_path, 3))
    removed = ckpt.prune(tmp_path, keep=2)
    assert {p.name for p in removed} == {"step-00000001", ".step-00000004.tmp"}
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000003"
    assert ckpt.latest_checkpoint(tmp_path / "nothing") is None


def test_commit_replaces_an_existing_folder(tmp_path):
    final = tmp_path / "final"
    for value in ("old", "new"):
        tmp = ckpt.begin_atomic(final, replace=True)
        (tmp / "v.txt").write_text(value)
        ckpt.commit_atomic(tmp, final)
    assert (final / "v.txt").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_optimizer_state_round_trip(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    names = {0: "weight", 1: "bias"}
    raw = optimizer.state_dict()
    state = {
        "state": {names[i]: s for i, s in raw["state"].items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in raw["param_groups"]],
    }
    ckpt.save_optimizer(tmp_path, state)
    loaded = ckpt.load_optimizer(tmp_path)
    assert loaded["param_groups"] == state["param_groups"] and loaded["param_groups"][0]["betas"] == (
        0.8,
        0.9,
    )
    for name in ("weight", "bias"):
        assert all(
            torch.equal(loaded["state"][name][k], state["state"][name][k]) for k in state["state"][name]
        )
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))


def test_rng_round_trip(tmp_path):
    ckpt.save_rng(tmp_path, 0)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.load_rng(tmp_path, 0)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]
    with pytest.raises(FileNotFoundError, match="fewer processes"):
        ckpt.load_rng(tmp_path, 1)


def swap_killed_between_renames(tmp_path, monkeypatch):
    """`final/` holds "old"; a save of "new" is killed after the old folder went aside."""
    final = tmp_path / "final"
    tmp = ckpt.begin_atomic(final)
    (tmp / "v.txt").write_text("old")
    ckpt.commit_atomic(tmp, final)
    tmp = ckpt.begin_atomic(final, replace=True)
    (tmp / "v.txt").write_text("new")
    real_replace, calls = ckpt.os.replace, []

    def killed_on_second_rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies between the two renames
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", killed_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        ckpt.commit_atomic(tmp, final)
    monkeypatch.undo()
    assert not final.exists() and ckpt.old_dir_for(final).is_dir() and tmp.is_dir()
    return final


def test_recover_finishes_a_swap_killed_between_renames(tmp_path, monkeypatch):
    final = swap_killed_between_renames(tmp_path, monkeypatch)
    assert ckpt.recover_atomic(final) == ckpt.temp_dir_for(final)
    assert (final / "v.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    assert ckpt.recover_atomic(final) is None  # nothing left to do


def test_recover_puts_the_old_folder_back_without_a_new_one(tmp_path, monkeypatch):
    final = swap_killed_between_renames(tmp_path, monkeypatch)
    ckpt.abort_atomic(ckpt.temp_dir_for(final))
    assert ckpt.recover_atomic(final) == ckpt.old_dir_for(final)
    assert (final / "v.txt").read_text() == "old"


def test_the_next_save_recovers_before_it_starts(tmp_path, monkeypatch):
    final = swap_killed_between_renames(tmp_path, monkeypatch)
    tmp = ckpt.begin_atomic(final, replace=True)  # would have deleted the complete temp folder
    assert (final / "v.txt").read_text() == "new" and not any(tmp.iterdir())
    (tmp / "v.txt").write_text("newer")
    ckpt.commit_atomic(tmp, final)
    assert (final / "v.txt").read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_changed_settings_lists_what_differs_and_skips_free_keys():
    saved = {"optim": {"lr": 1e-5, "betas": [0.9, 0.95]}, "run": {"log_every": 10, "seed": 0}, "data": ["a"]}
    now = {"optim": {"lr": 2e-5, "betas": (0.9, 0.95)}, "run": {"log_every": 1, "seed": 0}, "data": ["a"]}
    assert ckpt.changed_settings(saved, now) == {"optim.lr": (1e-5, 2e-5)}
    assert ckpt.changed_settings(saved, {**now, "data": ["b"], "new_key": 1})["data"] == (["a"], ["b"])
