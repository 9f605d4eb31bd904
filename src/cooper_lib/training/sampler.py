"""`MixtureSampler`: deterministic, resumable record draws with a sampling weight per source.

Each optimiser step draws one *global* batch (every process draws the same, from the seed and the
step), and `shard` cuts it into the micro-batches of each process. Micro-batch ``m`` of rank ``r``
is the slice ``(m * world + r)``, so one process accumulating ``world`` micro-batches sees exactly
the samples that ``world`` processes see in one step: the two runs are the same computation.

The source of each draw is chosen by weight (numpy's generator, seeded by ``(seed, step)``); the
record within a source walks a fresh permutation of that source every epoch, so each record is seen
once per epoch of its source. The counters of those walks are the data position: `state_dict` /
`load_state_dict` carry it through a checkpoint. Written by hand because torch's
`WeightedRandomSampler` draws records (not sources) with replacement and keeps no resumable state.
"""

from __future__ import annotations

import copy
import sys
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader


class MixtureSampler:
    """Draw global batches of record indices.

    Args:
        sources: the source name of every record (records of one source share a weight).
        weights: sampling weight per source; every source in `sources` needs one, and every
            source with a positive weight needs records.
        seed: seed of the whole stream.
    """

    def __init__(self, sources: Sequence[str], weights: Mapping[str, float], seed: int = 0) -> None:
        if not len(sources):
            raise ValueError("sources: expected at least one record, got none")
        self.seed = int(seed)
        present = sorted(set(sources))
        unweighted = [s for s in present if s not in weights]
        if unweighted:
            raise ValueError(
                f"weights: no weight for sources {unweighted}; weights given for {sorted(weights)}"
            )
        empty = sorted(s for s, w in weights.items() if w > 0 and s not in present)
        if empty:
            raise ValueError(
                f"weights: sources {empty} have a positive weight but no records (have {present})"
            )
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"weights: expected non-negative weights, got {dict(weights)}")
        self.names = [s for s in present if weights[s] > 0]
        if not self.names:
            raise ValueError(
                f"weights: expected a positive weight for at least one of {present}, got {dict(weights)}"
            )
        total = sum(weights[s] for s in self.names)
        self.probs = np.array([weights[s] / total for s in self.names])
        self.members = {s: np.array([i for i, src in enumerate(sources) if src == s]) for s in self.names}
        self.step = 0
        self.drawn = dict.fromkeys(self.names, 0)

    def next_batch(self, size: int) -> list[int]:
        """The next global batch of `size` record indices (advances the data position)."""
        if size < 1:
            raise ValueError(f"size: expected a positive batch size, got {size}")
        rng = np.random.default_rng([self.seed, self.step])
        choice = rng.choice(len(self.names), size=size, p=self.probs)
        batch = [self._next_of(self.names[c]) for c in choice]
        self.step += 1
        return batch

    def _next_of(self, source: str) -> int:
        members = self.members[source]
        k = self.drawn[source]
        epoch, offset = divmod(k, len(members))
        salt = zlib.crc32(source.encode())
        order = np.random.default_rng([self.seed, salt, epoch]).permutation(len(members))
        self.drawn[source] = k + 1
        return int(members[order[offset]])

    def state_dict(self) -> dict[str, Any]:
        """The data position (JSON-ready)."""
        return {"step": self.step, "drawn": dict(self.drawn), "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a position `state_dict` returned (same records, weights and seed)."""
        if state.get("seed") != self.seed or set(state.get("drawn", {})) != set(self.drawn):
            raise ValueError(
                f"state: written for seed {state.get('seed')} and sources {sorted(state.get('drawn', {}))}, "
                f"this sampler has seed {self.seed} and sources {sorted(self.drawn)}"
            )
        self.step = int(state["step"])
        self.drawn = {k: int(v) for k, v in state["drawn"].items()}


def shard(batch: Sequence[int], world_size: int, rank: int, micro_batches: int) -> list[list[int]]:
    """Rank `rank`'s micro-batches of a global `batch` (see the module docstring)."""
    per = len(batch) // (world_size * micro_batches)
    if per * world_size * micro_batches != len(batch) or per < 1:
        raise ValueError(
            f"batch: expected a multiple of world_size * micro_batches = {world_size * micro_batches} indices, got {len(batch)}"
        )
    if not 0 <= rank < world_size:
        raise ValueError(f"rank: expected 0 <= rank < {world_size}, got {rank}")
    return [
        list(batch[(m * world_size + rank) * per : (m * world_size + rank + 1) * per])
        for m in range(micro_batches)
    ]


class Prefetcher:
    """Micro-batches collated ahead by `DataLoader` workers while the model trains on earlier ones.

    The draws come from a copy of `sampler` at its current position, made by the `DataLoader` in
    this process (its batch sampler runs here); the workers only collate. `take` hands out the
    collated micro-batches in order and checks each against the parts the caller drew from the
    authoritative sampler, so a prefetcher that fell out of step (the sampler moved some other way,
    e.g. a resume: make a new one) is an error, never a wrong batch. Workers fork on Linux (nothing
    is pickled), also inside a process that was itself spawned (whose default would be to spawn
    them: seconds of imports per worker and stage); elsewhere records and the collator must pickle.

    Args:
        records: the training records.
        sampler: the sampler whose next draws to prefetch (copied; not advanced).
        size: global batch size of each draw.
        world_size: processes each draw is cut between (`shard`).
        rank: this process's share of each draw.
        micro_batches: micro-batches each share is cut into.
        collator: records -> a micro-batch.
        num_workers: worker processes (>= 1).
        prefetch_factor: micro-batches each worker collates ahead.
    """

    def __init__(
        self,
        records: Sequence[Any],
        sampler: MixtureSampler,
        size: int,
        world_size: int,
        rank: int,
        micro_batches: int,
        collator: Callable[[list[Any]], Any],
        num_workers: int,
        prefetch_factor: int = 2,
    ) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers: expected a positive integer, got {num_workers!r}")
        ahead = copy.deepcopy(sampler)
        self._drawn: deque[list[int]] = deque()

        def parts() -> Iterator[list[int]]:
            while True:
                for part in shard(ahead.next_batch(size), world_size, rank, micro_batches):
                    self._drawn.append(part)
                    yield part

        loader = DataLoader(
            records,
            batch_sampler=parts(),
            collate_fn=collator,
            num_workers=num_workers,
            prefetch_factor=prefetch_factor,
            multiprocessing_context="fork" if sys.platform.startswith("linux") else None,
            # its own generator: seeding the workers must not draw from torch's global one, or a
            # resumed run (whose workers start at another step) would sample other noise
            generator=torch.Generator().manual_seed(sampler.seed),
        )
        self._batches: Iterator[Any] | None = iter(loader)

    def take(self, parts: Sequence[Sequence[int]]) -> list[Any]:
        """The collated micro-batches of `parts` (the next ones drawn); RuntimeError if the
        prefetched draws differ."""
        if self._batches is None:
            raise RuntimeError("Prefetcher: closed")
        out = []
        for part in parts:
            batch = next(self._batches)
            made = self._drawn.popleft()
            if made != list(part):
                raise RuntimeError(
                    f"Prefetcher: prefetched indices {made} but the sampler drew {list(part)}; the "
                    "sampler moved without this prefetcher (make a new one after a resume)"
                )
            out.append(batch)
        return out

    def close(self) -> None:
        """Stop the workers."""
        self._batches = None
