import os

import pytest
import torch

from cooper_lib.training.sampler import MixtureSampler, collate, shard


def test_weights_set_the_mixture_and_each_epoch_visits_every_record():
    sources = ["depth"] * 10 + ["seg"] * 30
    sampler = MixtureSampler(sources, {"depth": 0.25, "seg": 0.75}, seed=3)
    drawn = [i for _ in range(100) for i in sampler.next_batch(8)]
    share = sum(sources[i] == "depth" for i in drawn) / len(drawn)
    assert share == pytest.approx(0.25, abs=0.04)
    depth = [i for i in drawn if sources[i] == "depth"]
    assert sorted(depth[:10]) == list(range(10))  # one full epoch of the source before any repeat
    assert sorted(depth[10:20]) == list(range(10))


def test_state_round_trip_resumes_the_stream():
    sources = ["a"] * 5 + ["b"] * 7
    one = MixtureSampler(sources, {"a": 1, "b": 2}, seed=0)
    straight = [one.next_batch(4) for _ in range(6)]
    two = MixtureSampler(sources, {"a": 1, "b": 2}, seed=0)
    first = [two.next_batch(4) for _ in range(3)]
    state = two.state_dict()
    three = MixtureSampler(sources, {"a": 1, "b": 2}, seed=0)
    three.load_state_dict(state)
    assert first + [three.next_batch(4) for _ in range(3)] == straight
    with pytest.raises(ValueError, match="seed"):
        MixtureSampler(sources, {"a": 1, "b": 2}, seed=1).load_state_dict(state)


def test_zero_weight_sources_are_never_drawn_and_bad_weights_raise():
    sampler = MixtureSampler(["a", "b"], {"a": 1.0, "b": 0.0})
    assert set(sampler.next_batch(20)) == {0}
    with pytest.raises(ValueError, match="no weight"):
        MixtureSampler(["a", "c"], {"a": 1.0})
    with pytest.raises(ValueError, match="no records"):
        MixtureSampler(["a"], {"a": 1.0, "z": 1.0})
    with pytest.raises(ValueError, match="positive weight"):
        MixtureSampler(["a"], {"a": 0.0})


def test_shard_gives_processes_the_micro_batches_one_process_accumulates():
    batch = list(range(8))
    assert shard(batch, 1, 0, 2) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert shard(batch, 2, 0, 1) == [[0, 1, 2, 3]] and shard(batch, 2, 1, 1) == [[4, 5, 6, 7]]
    assert shard(batch, 2, 1, 2) == [[2, 3], [6, 7]]
    with pytest.raises(ValueError, match="multiple"):
        shard(batch, 3, 0, 1)


def _collate_with_pid(records):
    return {"x": torch.tensor(records), "pid": os.getpid()}


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_collate_in_workers(workers):
    records = [10 * i for i in range(8)]
    parts = [[3, 1], [0, 7], [5, 5]]
    batches = collate(records, parts, _collate_with_pid, workers)
    assert [b["x"].tolist() for b in batches] == [[30, 10], [0, 70], [50, 50]]
    # one worker could only collate the parts one after the other: this process does it, unforked
    assert all((b["pid"] != os.getpid()) == (workers > 1) for b in batches)


def test_collate_one_part_in_process():
    (batch,) = collate(list(range(4)), [[2, 3]], _collate_with_pid, 2)
    assert batch["x"].tolist() == [2, 3] and batch["pid"] == os.getpid()


def test_collate_rejects_bad_workers():
    with pytest.raises(ValueError, match="num_workers"):
        collate([1], [[0]], _collate_with_pid, -1)
