"""Image-seeded perception queries (`SpatialConfig.query_source="image"`).

A query block starts from the learned queries (the input-embedding hook puts them in). With image
seeding each query also gets its cell of the row's first image: that image's visual tokens as the
language model receives them (after the projector), a square block average-pooled to the query
grid. The addition is made in a forward pre-hook on the language model, the first place where the
visual tokens are in the embeddings. Learned queries have to learn, through attention, to gather
the image; on the Table 1 experiment's tiny backbone they drew the training scenes' average depth
map after thousands of steps, where seeded queries drew what the vision tower sees
(benchmarks/query_route.py).

A KV-cached context runs a query block after its photo has left the call: within `remember`, each
row keeps the seeds of its first image from the call that held it (`KVContext` opens it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class QuerySeeder:
    """Forward pre-hook (``with_kwargs=True``) on the language model adding image seeds to the
    query positions of ``inputs_embeds``.

    Args:
        image_token_id: the placeholder id of visual tokens in ``input_ids``.
        query_id: the perception query token id.
        query_grid: (rows, cols) the image's block is pooled to.
    """

    def __init__(self, image_token_id: int, query_id: int, query_grid: tuple[int, int]) -> None:
        self.image_token_id = image_token_id
        self.query_id = query_id
        self.query_grid = tuple(query_grid)
        self.step_ids: torch.Tensor | None = None
        self.memory: dict[int, torch.Tensor | ValueError] | None = None

    def note_ids(self, input_ids: torch.Tensor) -> None:
        """The token ids of the call under way (the input-embedding hook passes them on)."""
        self.step_ids = input_ids

    @contextmanager
    def remember(self, memory: dict[int, torch.Tensor | ValueError]) -> Iterator[None]:
        """Within the block, rows keep their first image's seeds in `memory` (row -> [K, H])
        across calls, and a query block in a call without that image uses them."""
        self.memory = memory
        try:
            yield
        finally:
            self.memory = None

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict] | None:
        ids, self.step_ids = self.step_ids, None
        embeds = kwargs.get("inputs_embeds")
        if ids is None:
            return None
        queries = ids == self.query_id
        if embeds is None or tuple(embeds.shape[:2]) != tuple(ids.shape):
            if bool(queries.any()):
                raise ValueError(
                    "query_source='image': the language model was called without inputs_embeds of the "
                    f"input_ids' shape {tuple(ids.shape)}; this backbone cannot seed queries, set query_source='learned'"
                )
            return None
        if not bool(queries.any()) and self.memory is None:
            return None
        seeded = None
        k = self.query_grid[0] * self.query_grid[1]
        for row in range(ids.shape[0]):
            where = queries[row].nonzero().flatten()
            if not where.numel() and self.memory is None:
                continue
            seeds = self._row_seeds(row, ids[row], embeds[row])
            if not where.numel():
                continue
            if isinstance(seeds, ValueError):
                raise seeds
            if seeds is None:
                raise ValueError(
                    f"query_source='image': row {row} holds a query block with no image before it to seed "
                    "from; give the image in the same call (or within a KVContext)"
                )
            seeded = embeds.clone() if seeded is None else seeded
            ranks = torch.arange(where.numel(), device=where.device) % k
            seeded[row, where] = seeded[row, where] + seeds[ranks].to(seeded.dtype)
        if seeded is None:
            return None
        return args, {**kwargs, "inputs_embeds": seeded}

    def _row_seeds(
        self, row: int, ids: torch.Tensor, embeds: torch.Tensor
    ) -> torch.Tensor | ValueError | None:
        """[K, H] seeds of `row`'s first image: remembered, else pooled from this call. None: no
        image yet; a ValueError (raised only if a query block needs the seeds): not a square block."""
        if self.memory is not None and row in self.memory:
            return self.memory[row]
        found = (ids == self.image_token_id).nonzero().flatten()
        if not found.numel():
            return None
        positions = found.tolist()
        start = positions[0]
        count = next((i for i, p in enumerate(positions) if p != start + i), len(positions))  # first run
        side = math.isqrt(count)
        if side * side == count:
            block = embeds[start : start + count].reshape(side, side, -1).permute(2, 0, 1)
            seeds = F.adaptive_avg_pool2d(block.float(), self.query_grid).flatten(1).transpose(0, 1)
        else:
            seeds = ValueError(
                f"query_source='image': the first image of row {row} fills {count} visual tokens, not a "
                "square block; this backbone's images cannot seed queries, set query_source='learned'"
            )
        if self.memory is not None:
            self.memory[row] = seeds
        return seeds
