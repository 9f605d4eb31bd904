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
