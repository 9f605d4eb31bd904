"""Packed sequences: text, images and latents of one or more samples in one row, and their attention.

A sample is a list of *splits*, each with an attention mode (BAGEL's rule):
- `causal`: a run of text tokens; each sees everything before it in the sample and itself;
- `full`: an image for understanding (`<|vision_start|>`, ViT tokens, `<|vision_end|>`) or a clean
  latent image (the same frame around VAE latent tokens); its tokens see the whole split and
  everything before it;
- `noise`: a latent image being generated (noised, t > 0); it sees itself and everything before it,
  and **no other token ever sees it** (later text does not read noise).
Samples never see each other. RoPE positions count per sample: one per text token, one shared by
all tokens of an image split. Text and ViT tokens go to the understanding expert, latent tokens to
the generation expert.

`SequenceBuilder` appends splits and `build()` returns a `PackedSequence` holding index tensors
(where each kind of token sits in the row) and `attention_mask(rows, cols)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from cooper_lib.models.cooper.config import CooperConfig
from cooper_lib.models.cooper.embeddings import grid_position_ids
from cooper_lib.models.cooper.vision import patchify

MODES = ("causal", "full", "noise")


def unpatchify(tokens: torch.Tensor, rows: int, cols: int, patch: int) -> torch.Tensor:
    """Inverse of `patchify`: `[rows cols, p p C] -> [C, rows p, cols p]`."""
    c = tokens.shape[-1] // (patch * patch)
    x = tokens.reshape(rows, cols, patch, patch, c)
    return torch.einsum("hwpqc->chpwq", x).reshape(c, rows * patch, cols * patch)


@dataclass(frozen=True)
class Text:
    """Text token ids (frame them with `<|im_start|>` / `<|im_end|>` as BAGEL's prompts do)."""

    ids: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Image:
    """An image the model reads through the ViT: `[3, H, W]` in [-1, 1]."""

    pixels: torch.Tensor


@dataclass(frozen=True, eq=False)
class Latent:
    """A clean autoencoder latent the model reads through `vae2llm`: `[16, h, w]`."""

    latent: torch.Tensor


Item = Text | Image | Latent


@dataclass
class PackedSequence:
    """One packed row of `L` tokens (shapes in brackets; index tensors point into the row).

    Attributes:
        text_ids, text_index: `[N_text]` token ids and their places.
        vit_patches, vit_pos, vit_index: `[N_vit, 3 p p]` flattened patches (pixels in [-1, 1]),
            their ids on the ViT position table, their places; `vit_lengths`: patches per image.
        latents, latent_pos, latent_index: `[N_lat, D]` clean latent tokens (zeros where they are to
            be generated), table ids, places; `latent_noised [N_lat]` bool, `latent_split [N_lat]`
            which split each belongs to; `latent_grids`: (split, rows, cols) per latent image.
        positions: `[L]` RoPE positions; with `gen [L]` generation-expert tokens, `sample [L]`
            sample id, `full_split [L]` split id for full and noise splits (-1 for text),
            `noise_split [L]` split id for noise splits (-1 elsewhere).
    """

    length: int
    text_ids: torch.Tensor
    text_index: torch.Tensor
    vit_patches: torch.Tensor
    vit_pos: torch.Tensor
    vit_index: torch.Tensor
    vit_lengths: list[int]
    latents: torch.Tensor
    latent_pos: torch.Tensor
    latent_index: torch.Tensor
    latent_noised: torch.Tensor
    latent_split: torch.Tensor
    latent_grids: list[tuple[int, int, int]]
    positions: torch.Tensor
    gen: torch.Tensor
    sample: torch.Tensor
    full_split: torch.Tensor
    noise_split: torch.Tensor

    def attention_mask(
        self, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Boolean `[len(rows), len(cols)]` (default: all tokens): may token `rows[i]` attend to `cols[j]`."""
        ar = torch.arange(self.length, device=self.positions.device)
        q = ar if rows is None else rows
        k = ar if cols is None else cols
        same_sample = self.sample[q][:, None] == self.sample[k][None, :]
        causal = q[:, None] >= k[None, :]
        fq, fk = self.full_split[q][:, None], self.full_split[k][None, :]
        same_split = (fq == fk) & (fq >= 0)
        nk = self.noise_split[k][None, :]
        reads_other_noise = (nk >= 0) & (self.noise_split[q][:, None] != nk)
        return same_sample & (causal | same_split) & ~reads_other_noise

    @property
    def noised_index(self) -> torch.Tensor:
        """Places `[L_noise]` of every token in a noise split (frame tokens included), ascending."""
        return torch.nonzero(self.noise_split >= 0).flatten()

    @property
    def context_index(self) -> torch.Tensor:
        """Places of every other token, ascending: what later denoising steps can cache."""
        return torch.nonzero(self.noise_split < 0).flatten()

    def to(self, device: torch.device | str) -> PackedSequence:
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.__dict__.items()}
        return PackedSequence(**moved)


@dataclass
class _Split:
    mode: str
    sample: int
    length: int


@dataclass
class SequenceBuilder:
    """Append samples' splits in order, then `build()`. Pixels are `[3, H, W]` in [-1, 1]; latents
    `[z, h, w]` autoencoder latents (h, w multiples of the latent patch size). Inputs are copied to
    the CPU while building (they are inputs, not differentiated); move the result with `.to(device)`."""

    config: CooperConfig
    _splits: list[_Split] = field(default_factory=list)
    _sample: int = 0
    _rope: int = 0
    _pos: list[int] = field(default_factory=list)
    _gen: list[bool] = field(default_factory=list)
    _text: list[tuple[int, int]] = field(default_factory=list)
    _vit: list[tuple[torch.Tensor, torch.Tensor, int]] = field(default_factory=list)
    _lat: list[tuple[torch.Tensor, torch.Tensor, int, bool, int, int, int]] = field(default_factory=list)

    @property
    def _cursor(self) -> int:
        return len(self._pos)

    def new_sample(self) -> SequenceBuilder:
        """Start another sample in the same row (sees nothing of the previous ones)."""
        if self._splits and self._splits[-1].sample == self._sample:
            self._sample += 1
        self._rope = 0
        return self

    def start_at(self, position: int) -> SequenceBuilder:
        """Start the row's RoPE positions at `position` instead of 0: the items built follow a
        cached context whose next position that is (`text.TextContext.extend`)."""
        if self._splits:
            raise ValueError("start_at: call it before adding anything")
        if position < 0:
            raise ValueError(f"position: expected a non-negative int, got {position}")
        self._rope = int(position)
        return self

    def skip_position(self) -> SequenceBuilder:
        """Advance the RoPE position as an image would (BAGEL's trainer does this for a dropped image)."""
        self._rope += 1
        return self

    def _add_text_token(self, token: int) -> None:
        self._text.append((int(token), self._cursor))
        self._pos.append(self._rope)
        self._gen.append(False)

    def text(self, ids: list[int] | torch.Tensor) -> SequenceBuilder:
        """A causal run of text token ids."""
        ids = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
        if not ids:
            raise ValueError("ids: expected at least one token id, got none")
        vocab = self.config.llm.vocab_size
        if not all(0 <= i < vocab for i in ids):
            raise ValueError(f"ids: expected token ids in [0, {vocab}), got {ids}")
        for token in ids:
            self._add_text_token(token)
            self._rope += 1
        self._splits.append(_Split("causal", self._sample, len(ids)))
        return self

    def _framed(self, mode: str, add_tokens) -> None:
        start = self._cursor
        self._add_text_token(self.config.vision_start_id)
        add_tokens()
        self._add_text_token(self.config.vision_end_id)
        self._rope += 1
        self._splits.append(_Split(mode, self._sample, self._cursor - start))

    def image(self, pixels: torch.Tensor) -> SequenceBuilder:
        """An image for understanding: ViT patch tokens in a full split."""
        if pixels.ndim != 3 or pixels.shape[0] != self.config.vit.num_channels:
            raise ValueError(
                f"pixels: expected [{self.config.vit.num_channels}, H, W], got {tuple(pixels.shape)}"
            )
        p, side = self.config.vit.patch_size, self.config.vit_max_num_patch_per_side
        patches = patchify(pixels.detach().cpu(), p)
        pos = grid_position_ids(pixels.shape[1] // p, pixels.shape[2] // p, side)

        def add() -> None:
            self._vit.append((patches, pos, self._cursor))
            self._pos.extend([self._rope] * len(patches))
            self._gen.extend([False] * len(patches))

        self._framed("full", add)
        return self

    def latent(
        self, latent: torch.Tensor | None = None, *, noised: bool = False, grid: tuple[int, int] | None = None
    ) -> SequenceBuilder:
        """A latent image: clean (a full split, the model reads it) or `noised` (a noise split, the
        model denoises it; its values come at run time, so `latent` may be None and `grid` =
        (rows, cols) of latent tokens gives its size)."""
        p, z = self.config.latent_patch_size, self.config.vae.z_channels
        if latent is not None:
            if latent.ndim != 3 or latent.shape[0] != z or latent.shape[1] % p or latent.shape[2] % p:
                raise ValueError(
                    f"latent: expected [{z}, h, w] with h, w multiples of {p}, got {tuple(latent.shape)}"
                )
            rows, cols = latent.shape[1] // p, latent.shape[2] // p
            tokens = patchify(latent.detach().cpu(), p)
        elif grid is not None and noised:
            rows, cols = grid
            tokens = torch.zeros(rows * cols, p * p * z)
        else:
            raise ValueError("latent: expected a tensor, or None with noised=True and grid=(rows, cols)")
        pos = grid_position_ids(rows, cols, self.config.max_latent_size)
        split = len(self._splits)

        def add() -> None:
            self._lat.append((tokens, pos, self._cursor, noised, split, rows, cols))
            self._pos.extend([self._rope] * len(tokens))
            self._gen.extend([True] * len(tokens))

        self._framed("noise" if noised else "full", add)
        return self

    def add(self, items: list[Item]) -> SequenceBuilder:
        """Append context items in order: `Text` (causal), `Image` (ViT), `Latent` (clean latent)."""
        for item in items:
            if isinstance(item, Text):
                self.text(list(item.ids))
            elif isinstance(item, Image):
                self.image(item.pixels)
            elif isinstance(item, Latent):
                self.latent(item.latent)
            else:
                raise TypeError(f"items: expected Text, Image or Latent, got {type(item).__name__}")
        return self

    def build(self) -> PackedSequence:
        """The packed row (CPU tensors; move it with `.to(device)`)."""
        if not self._splits:
            raise ValueError("SequenceBuilder: nothing was added")
        length = self._cursor
        sample = torch.cat([torch.full((s.length,), s.sample) for s in self._splits])
        full = torch.cat(
            [torch.full((s.length,), i if s.mode != "causal" else -1) for i, s in enumerate(self._splits)]
        )
        noise = torch.cat(
            [torch.full((s.length,), i if s.mode == "noise" else -1) for i, s in enumerate(self._splits)]
        )
        dim = self.config.latent_dim
        patch_dim = self.config.vit.num_channels * self.config.vit.patch_size**2

        def spans(items, width):
            if not items:
                return (
                    torch.zeros(0, width),
                    torch.zeros(0, dtype=torch.long),
                    torch.zeros(0, dtype=torch.long),
                )
            values = torch.cat([it[0] for it in items]).float()
            pos = torch.cat([it[1] for it in items])
            index = torch.cat([torch.arange(it[2], it[2] + len(it[0])) for it in items])
            return values, pos, index

        vit_patches, vit_pos, vit_index = spans(self._vit, patch_dim)
        latents, latent_pos, latent_index = spans(self._lat, dim)
        lat_counts = [len(it[0]) for it in self._lat]
        return PackedSequence(
            length=length,
            text_ids=torch.tensor([t for t, _ in self._text], dtype=torch.long),
            text_index=torch.tensor([i for _, i in self._text], dtype=torch.long),
            vit_patches=vit_patches,
            vit_pos=vit_pos,
            vit_index=vit_index,
            vit_lengths=[len(it[0]) for it in self._vit],
            latents=latents,
            latent_pos=latent_pos,
            latent_index=latent_index,
            latent_noised=torch.repeat_interleave(
                torch.tensor([it[3] for it in self._lat], dtype=torch.bool),
                torch.tensor(lat_counts, dtype=torch.long),
            ),
            latent_split=torch.repeat_interleave(
                torch.tensor([it[4] for it in self._lat], dtype=torch.long),
                torch.tensor(lat_counts, dtype=torch.long),
            ),
            latent_grids=[(it[4], it[5], it[6]) for it in self._lat],
            positions=torch.tensor(self._pos, dtype=torch.long),
            gen=torch.tensor(self._gen, dtype=torch.bool),
            sample=sample,
            full_split=full,
            noise_split=noise,
        )
