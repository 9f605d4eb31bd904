import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch

from cooper_lib.training.sampler import MixtureSampler, Prefetcher, shard


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


@pytest.mark.parametrize("workers", [1, 2])
def test_prefetcher_collates_the_sampler_draws_ahead_in_workers(workers):
    records = [10 * i for i in range(12)]
    sampler = MixtureSampler(["a"] * 6 + ["b"] * 6, {"a": 1.0, "b": 3.0}, seed=4)
    prefetcher = Prefetcher(records, sampler, 4, 2, 1, 2, _collate_with_pid, workers)
    for _ in range(5):
        parts = shard(sampler.next_batch(4), 2, 1, 2)
        batches = prefetcher.take(parts)
        assert [b["x"].tolist() for b in batches] == [[records[i] for i in p] for p in parts]
        assert all(b["pid"] != os.getpid() for b in batches)  # collated by the workers
    prefetcher.close()


def test_prefetcher_out_of_step_with_the_sampler_is_an_error():
    sampler = MixtureSampler(["a"] * 8, {"a": 1.0}, seed=0)
    prefetcher = Prefetcher(list(range(8)), sampler, 2, 1, 0, 1, _collate_with_pid, 1)
    sampler.next_batch(2)  # a draw the prefetcher never saw (as after a resume)
    with pytest.raises(RuntimeError, match="prefetched indices"):
        prefetcher.take(shard(sampler.next_batch(2), 1, 0, 1))
    prefetcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        prefetcher.take([[0, 1]])
    with pytest.raises(ValueError, match="num_workers"):
        Prefetcher([1], sampler, 1, 1, 0, 1, _collate_with_pid, 0)


_MARK = "as imported"


def _collate_mark(records):
    return _MARK


def _prefetch_after_setting_the_mark(_):
    """In a spawned process: set a global, then collate in a worker; a forked worker sees the
    global as set, a spawned one re-imports this module and sees it as imported."""
    global _MARK
    _MARK = "set at run time"
    sampler = MixtureSampler(["a"] * 4, {"a": 1.0}, seed=0)
    prefetcher = Prefetcher(list(range(4)), sampler, 2, 1, 0, 1, _collate_mark, 1)
    try:
        return prefetcher.take(shard(sampler.next_batch(2), 1, 0, 1))[0]
    finally:
        prefetcher.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers fork on Linux only")
def test_prefetcher_workers_fork_inside_a_spawned_process():
    # table1's seeds train in spawned processes; spawned workers cost seconds of imports per stage
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(_prefetch_after_setting_the_mark, None).result() == "set at run time"
