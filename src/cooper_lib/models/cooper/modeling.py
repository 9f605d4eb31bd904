"""`CooperModel`: BAGEL-7B-MoT's architecture, the model COOPER fine-tunes, on stock transformers blocks.

    text ids ──────────── embed_tokens ───────────────────────────────┐
    image [3,H,W] ─ patches ─ SigLIP ─ connector ─ + vit_pos_embed ───┤  one packed row [L, H]
    latent [16,h,w] ─ 2x2 tokens [.,64] ─ vae2llm ─ + time_embedder(t) ┤  (packing.py: masks,
                                           + latent_pos_embed ────────┘   RoPE positions, experts)
                     │
        Qwen2 decoder, every layer two experts (und: text + ViT tokens, gen: latent tokens),
        one shared attention over the row (mot.py)
                     │
        lm_head(hidden) -> text logits          llm2vae(hidden) -> velocity [., 64] of latent tokens

The FLUX autoencoder (`vae`, autoencoder.py) turns images into the 16-channel latents and back.
Generation is rectified flow in the latent tokens (`x_t = (1 - t) x0 + t eps`, velocity
`eps - x0`), sampled by `sampler.py`; stage-1 training is `stage1_loss`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cooper_lib.heads.sampler import shift_timesteps
from cooper_lib.models.cooper.autoencoder import Autoencoder
from cooper_lib.models.cooper.checkpoint import read_release, save_release
from cooper_lib.models.cooper.config import CooperConfig
from cooper_lib.models.cooper.embeddings import Connector, PositionTable, TimestepEmbedder
from cooper_lib.models.cooper.mot import KV, MoTLanguageModel
from cooper_lib.models.cooper.packing import PackedSequence
from cooper_lib.models.cooper.vision import PackedSiglip
from cooper_lib.ops import flow_matching_loss


@dataclass
class PrefixCache:
    """Keys and values of a sequence's context tokens (`index`, ascending), one pair per layer."""

    index: torch.Tensor
    kv: list[KV]


class CooperModel(nn.Module):
    """The unified model: `language_model` (MoT Qwen2), `vit_model` (SigLIP), `connector`,
    `time_embedder`, `vae2llm`, `llm2vae`, two fixed position tables, and the autoencoder `vae`.

    Parameter names are BAGEL's, so a released checkpoint loads key for key (`from_pretrained`).
    """

    def __init__(self, config: CooperConfig):
        super().__init__()
        self.config = config
        h = config.llm.hidden_size
        self.language_model = MoTLanguageModel(config.llm)
        self.vit_model = PackedSiglip(config.vit, config.vit_max_num_patch_per_side)
        self.connector = Connector(config.vit.hidden_size, h, config.connector_act)
        self.vit_pos_embed = PositionTable(config.vit_max_num_patch_per_side, h)
        self.time_embedder = TimestepEmbedder(h)
        self.vae2llm = nn.Linear(config.latent_dim, h)
        self.llm2vae = nn.Linear(h, config.latent_dim)
        self.latent_pos_embed = PositionTable(config.max_latent_size, h)
        self.vae = Autoencoder(config.vae)

    # ---- embedding the packed row ---------------------------------------------------------------

    def _latent_embed(self, tokens: torch.Tensor, t: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return (
            self.vae2llm(tokens.to(self.vae2llm.weight.dtype))
            + self.time_embedder(t)
            + self.latent_pos_embed(pos)
        )

    def embed(
        self, seq: PackedSequence, x_t: torch.Tensor | None = None, t: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Input embeddings `[L, H]`; `x_t [N_noised, D]` and `t [N_noised]` fill the noised latent
        tokens (zeros and t = 0 when not given, as for a prefill that will not read them)."""
        n_noised = int(seq.latent_noised.sum())
        if x_t is not None and (
            t is None or x_t.shape != (n_noised, self.config.latent_dim) or t.shape != (n_noised,)
        ):
            raise ValueError(
                f"x_t, t: expected [{n_noised}, {self.config.latent_dim}] and [{n_noised}] (the noised latent "
                f"tokens), got {tuple(x_t.shape)} and {None if t is None else tuple(t.shape)}"
            )
        emb = self.language_model.model.embed_tokens
        x = emb.weight.new_zeros(seq.length, self.config.llm.hidden_size)
        x[seq.text_index] = emb(seq.text_ids)
        if seq.vit_lengths:
            feats = self.vit_model(seq.vit_patches, seq.vit_pos, seq.vit_lengths)  # [N_vit, vit_hidden]
            x[seq.vit_index] = (self.connector(feats) + self.vit_pos_embed(seq.vit_pos)).to(x.dtype)
        if len(seq.latent_index):
            tokens = seq.latents.clone()
            times = torch.zeros(len(tokens), device=tokens.device)
            if x_t is not None:
                tokens[seq.latent_noised] = x_t.to(tokens.dtype)
                times[seq.latent_noised] = t.to(times.dtype)
            x[seq.latent_index] = self._latent_embed(tokens, times, seq.latent_pos).to(x.dtype)
        return x

    def embed_noised(
        self, seq: PackedSequence, rows: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """Embeddings `[len(rows), H]` of the noise-split tokens at places `rows` (frame tokens and
        latents); `x_t [N_noised, D]`, `t [N_noised]` cover every noised latent token of `seq`."""
        rank = torch.full((seq.length,), -1, dtype=torch.long, device=rows.device)
        rank[rows] = torch.arange(len(rows), device=rows.device)
        emb = self.language_model.model.embed_tokens
        x = emb.weight.new_zeros(len(rows), self.config.llm.hidden_size)
        frame = rank[seq.text_index] >= 0
        x[rank[seq.text_index[frame]]] = emb(seq.text_ids[frame])
        places = seq.latent_index[seq.latent_noised]
        keep = rank[places] >= 0
        lat = self._latent_embed(x_t[keep], t[keep], seq.latent_pos[seq.latent_noised][keep])
        x[rank[places[keep]]] = lat.to(x.dtype)
        return x

    # ---- running the decoder ----------------------------------------------------------------------

    def forward(
        self, seq: PackedSequence, x_t: torch.Tensor | None = None, t: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Final hidden states `[L, H]` of the whole packed row (training and checks)."""
        x = self.embed(seq, x_t, t)
        hidden, _ = self.language_model.model(x, seq.positions, seq.gen, seq.attention_mask())
        return hidden

    def prefill(self, seq: PackedSequence) -> PrefixCache:
        """Run the context tokens once; no context token reads a noise split, so this is exact."""
        ctx = seq.context_index
        x = self.embed(seq)[ctx]
        _, kv = self.language_model.model(x, seq.positions[ctx], seq.gen[ctx], seq.attention_mask(ctx, ctx))
        return PrefixCache(ctx, kv)

    def velocity(
        self,
        seq: PackedSequence,
        cache: PrefixCache,
        x_t: torch.Tensor,
        t: torch.Tensor,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted velocity `[n, D]` of the noised latent tokens placed in `rows` (default: all
        noise splits), in their order in the row, given the cached context."""
        rows = seq.noised_index if rows is None else rows
        x = self.embed_noised(seq, rows, x_t, t)
        mask = seq.attention_mask(rows, torch.cat([cache.index, rows]))
        hidden, _ = self.language_model.model(x, seq.positions[rows], seq.gen[rows], mask, cache.kv)
        return self.llm2vae(hidden[seq.gen[rows]])

    def text_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.language_model.lm_head(hidden)

    # ---- stage 1 ------------------------------------------------------------------------------------

    def noise_latents(
        self, seq: PackedSequence, *, shift: float = 1.0, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noised inputs of `seq`'s noise splits (their clean latents as targets): per split
        `t = shift(sigmoid(n))`, `n ~ N(0, 1)`; `x_t = (1 - t) x0 + t eps`. Returns
        `(x_t, t, eps, x0)`, `[N, D]`, `[N]`, `[N, D]`, `[N, D]` over the noised latent tokens."""
        noised = seq.latent_noised
        if not bool(noised.any()):
            raise ValueError("seq: expected at least one noised latent split to train on, got none")
        clean = seq.latents[noised].float()  # [N, D]
        splits, which = torch.unique(seq.latent_split[noised], return_inverse=True)
        n = torch.randn(len(splits), generator=generator, device=clean.device)
        t = shift_timesteps(torch.sigmoid(n), shift)[which]  # [N]
        noise = torch.randn(clean.shape, generator=generator, device=clean.device)
        return (1 - t[:, None]) * clean + t[:, None] * noise, t, noise, clean

    def velocity_loss(
        self, seq: PackedSequence, hidden: torch.Tensor, noise: torch.Tensor, clean: torch.Tensor
    ) -> torch.Tensor:
        """MSE of the velocity predicted from `hidden [L, H]` at the noised latent tokens against
        `eps - x0`, mean over latent dims, then over tokens."""
        pred = self.llm2vae(hidden[seq.latent_index[seq.latent_noised]]).float()
        return flow_matching_loss(pred, noise, clean)

    def stage1_loss(
        self, seq: PackedSequence, *, shift: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """COOPER's stage-1 objective on the noise splits of `seq` (`noise_latents`, then
        `velocity_loss`: target `eps - x0`)."""
        x_t, t, noise, clean = self.noise_latents(seq, shift=shift, generator=generator)
        return self.velocity_loss(seq, self.forward(seq, x_t, t), noise, clean)

    # ---- sizes and files ---------------------------------------------------------------------------

    def num_parameters(self, part: str = "checkpoint") -> int:
        """Parameter count of `"checkpoint"` (the main file: everything but the autoencoder, the two
        position tables included as stored), `"text_token"` (what a text token uses: the
        understanding expert, embeddings, final norm, lm_head) or `"autoencoder"`."""
        if part == "autoencoder":
            return sum(p.numel() for p in self.vae.parameters())
        if part == "checkpoint":
            tables = self.vit_pos_embed.pos_embed.numel() + self.latent_pos_embed.pos_embed.numel()
            return sum(p.numel() for n, p in self.named_parameters() if not n.startswith("vae.")) + tables
        if part == "text_token":
            return sum(p.numel() for n, p in self.language_model.named_parameters() if "moe_gen" not in n)
        raise ValueError(f"part: expected 'checkpoint', 'text_token' or 'autoencoder', got {part!r}")

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
        weights: str | None = None,
        **overrides,
    ) -> CooperModel:
        """Load a BAGEL / COOPER release folder (arguments as `checkpoint.read_release`)."""
        return read_release(cls, folder, dtype=dtype, device=device, weights=weights, **overrides)

    def save_pretrained(
        self,
        folder: str | Path,
        *,
        max_shard_bytes: int | None = None,
        state: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """Write the release layout (see `checkpoint.save_release`; `state` replaces the named weights)."""
        save_release(self, folder, max_shard_bytes=max_shard_bytes, state=state)
