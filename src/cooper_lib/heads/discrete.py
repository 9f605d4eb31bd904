"""`DiscreteHead` (`head="discrete"`): query hidden states -> VQ codes -> a map.

The map is drawn as the modality's RGB pseudo-image (its codec) and represented by the code grid
of a trained, frozen `VQTokenizer` (stage 0: `cooper_lib.tokenizers.train_vq_tokenizer`). The
head predicts every code of the grid from the K query states in one pass and decodes the codes
with the tokenizer and the codec.

Where the codes come from: a small output head on the query positions, not an extended LLM
vocabulary. Each query state is projected to the codes of its cell of the code grid (K must
divide the grid: rows and cols of the code grid multiples of the query grid; K equal to the
number of codes maps one query to one code), a few transformer blocks (timm's ViT `Block`) let
the code positions see each other, and a linear layer gives logits over the codebook only.

Trade-off against codes generated as new vocabulary tokens by the LLM itself:
    - here: one backbone pass and one head pass per map, whatever the grid size; the vocabulary,
      embeddings and `lm_head` stay as they are; "only codes, exactly the grid length" holds by
      construction (the logits cover the codebook and there is one position per code), so no
      logits processor is needed; it plugs into `SpatialModel`'s query mechanism unchanged.
    - extended vocabulary: codes are sampled autoregressively (N decoding steps per map, each
      code conditioned on the previous ones, which can give more coherent maps), the codes enter
      the context as tokens the rest of the reasoning can attend to, but the vocabulary grows by
      the codebook size (embedding and `lm_head` rows to train), and generation needs a logits
      processor restricted to code ids and a forced length.
The codes here are predicted independently given the query states (a non-autoregressive model);
the mixing blocks are what keeps neighbouring codes consistent.

Training: cross-entropy of the code logits against the tokenizer's codes of the target through
`ops.linear_cross_entropy` (no logits kept), each code weighted by the share of valid pixels in
its cell (see `cooper_lib.heads.maps`).

Options (`head_options`, see `cooper_lib.heads.options`; defaults in `DISCRETE_OPTIONS`):
    tokenizer (required): a folder written by `VQTokenizer.save_pretrained` (a trained tokenizer),
        or its config dict (fresh weights, which loading a saved `SpatialModel` overwrites).
    codec: keyword arguments of the modality's codec (`cooper_lib.modalities.get_codec`).
    width, blocks, num_heads, mlp_ratio: size of the code mixer.
    label_smoothing: of the cross-entropy.
    temperature: 0 picks the most likely code (default); above 0 samples codes at that temperature.
    seed: noise seed for sampling at temperature > 0 (None: the global generator).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from einops import rearrange
from torch import nn

from cooper_lib import ops
from cooper_lib.heads.base import PerceptionHead, register_head
from cooper_lib.heads.maps import image_to_map, target_images, token_weights
from cooper_lib.heads.options import check_width, head_arguments, resolve_options, tokenizer_from_option
from cooper_lib.modalities import Modality, ModalityCodec, get_modality
from cooper_lib.tokenizers import VQTokenizer

if TYPE_CHECKING:
    from cooper_lib.config import SpatialConfig

IGNORE_INDEX = -100

#: Every option of the discrete head and its default.
DISCRETE_OPTIONS: dict[str, Any] = {
    "tokenizer": None,
    "codec": None,
    "width": 256,
    "blocks": 2,
    "num_heads": 4,
    "mlp_ratio": 4.0,
    "label_smoothing": 0.0,
    "temperature": 0.0,
    "seed": 0,
}

#: Options `DiscreteHead.generate` accepts per call.
SAMPLING_OPTIONS = ("temperature", "seed")


class DiscreteHead(PerceptionHead):
    """Predict the VQ code grid of a map from query states [n, K, H].

    Args:
        hidden_size: backbone hidden size H.
        query_grid: (rows, cols) of the K queries; must divide the tokenizer's code grid.
        modality: the `Modality` (or its registered name) the head produces maps of.
        output_size: (h, w) of the produced map.
        codec: the modality's codec (map <-> RGB pseudo-image).
        tokenizer: a trained `VQTokenizer` over 3-channel images; kept frozen, in eval mode.
        width: width of the code mixer.
        blocks: transformer blocks of the code mixer (0: no mixing).
        num_heads: attention heads of the code mixer.
        mlp_ratio: MLP hidden size / width in the code mixer.
        label_smoothing: cross-entropy label smoothing.
        temperature: default sampling temperature (0: the most likely code).
        seed: default sampling seed (None: the global generator).
    """

    def __init__(
        self,
        hidden_size: int,
        query_grid: tuple[int, int],
        modality: Modality | str,
        output_size: tuple[int, int],
        codec: ModalityCodec,
        tokenizer: VQTokenizer,
        *,
        width: int = 256,
        blocks: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        label_smoothing: float = 0.0,
        temperature: float = 0.0,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        if not isinstance(tokenizer, VQTokenizer) or tokenizer.config.channels != 3:
            raise ValueError(
                f"tokenizer: expected a VQTokenizer over 3-channel pseudo-images, got {tokenizer!r}"
            )
        rows, cols = tokenizer.grid
        if rows % query_grid[0] or cols % query_grid[1]:
            raise ValueError(
                f"query_grid: {tuple(query_grid)} must divide the tokenizer's {rows} x {cols} code grid "
                "(choose query_grid so that every query owns a whole block of codes)"
            )
        check_width(width, num_heads)
        self.modality = modality if isinstance(modality, Modality) else get_modality(modality)
        self.output_size = tuple(output_size)
        self.query_grid = tuple(query_grid)
        self.block = (rows // query_grid[0], cols // query_grid[1])
        self.codec = codec
        self.label_smoothing = label_smoothing
        self.defaults = {"temperature": temperature, "seed": seed}
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        self.norm = nn.LayerNorm(hidden_size)
        self.expand = nn.Linear(hidden_size, self.block[0] * self.block[1] * width)
        from timm.layers import build_sincos2d_pos_embed  # timm is imported when a head is built
        from timm.models.vision_transformer import Block

        self.register_buffer(
            "code_pos", build_sincos2d_pos_embed([rows, cols], dim=width)[None], persistent=False
        )
        self.blocks = nn.ModuleList(
            [Block(width, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True) for _ in range(blocks)]
        )
        self.out_norm = nn.LayerNorm(width)
        self.logits = nn.Linear(width, tokenizer.codebook_size)

    @classmethod
    def from_config(cls, config: SpatialConfig, modality: str, hidden_size: int) -> DiscreteHead:
        """Build from `config.head_options` (see the module docstring for the options)."""
        opts = resolve_options(config, modality, "discrete", DISCRETE_OPTIONS)
        tokenizer = tokenizer_from_option(config, modality, opts["tokenizer"], "vq")
        if tokenizer is None:
            raise ValueError(
                f"head_options: the 'discrete' head of {modality!r} needs a 'tokenizer': the folder of a "
                "VQTokenizer trained on this modality's pseudo-images (train_vq_tokenizer, then save_pretrained)"
            )
        options = head_arguments(config, modality, opts, "label_smoothing", "temperature", "seed")
        return cls(hidden_size, config.query_grid, tokenizer=tokenizer, **options)

    def train(self, mode: bool = True) -> DiscreteHead:
        """Switch the head's own layers; the tokenizer stays frozen in eval mode."""
        super().train(mode)
        self.tokenizer.eval()
        return self

    def code_features(self, queries: torch.Tensor) -> torch.Tensor:
        """Features [n, N, width] of the N code positions (row-major over the code grid)."""
        rows, cols = self.query_grid
        if queries.ndim != 3 or queries.shape[1] != rows * cols:
            raise ValueError(f"queries: expected [n, {rows * cols}, H], got {tuple(queries.shape)}")
        x = self.expand(self.norm(queries.to(self.expand.weight.dtype)))
        x = rearrange(
            x, "n (r c) (br bc w) -> n (r br c bc) w", r=rows, c=cols, br=self.block[0], bc=self.block[1]
        )
        x = x + self.code_pos
        for block in self.blocks:
            x = block(x)
        return self.out_norm(x)

    def loss(self, queries: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted cross-entropy of the code logits against the target's codes."""
        side = self.tokenizer.config.image_size
        image, valid = target_images(self.codec, self.modality, target, (side, side))
        codes = self.tokenizer.encode(image.to(queries.device)).flatten(1)
        weights = token_weights(valid.to(queries.device), self.tokenizer.grid)
        labels = codes.masked_fill(weights == 0, IGNORE_INDEX)
        return ops.linear_cross_entropy(
            self.code_features(queries),
            self.logits.weight,
            labels,
            bias=self.logits.bias,
            label_smoothing=self.label_smoothing,
            token_weights=weights.to(self.logits.weight.dtype),
        )

    def sample_codes(self, queries: torch.Tensor, **options: Any) -> torch.Tensor:
        """Codes [n, rows, cols] of the tokenizer's grid, one per position (under inference mode).

        Options: `temperature` (0: most likely code) and `seed`, defaults from `head_options`.
        """
        unknown = sorted(set(options) - set(SAMPLING_OPTIONS))
        if unknown:
            raise TypeError(
                f"generate: unknown option(s) {unknown}; expected some of {list(SAMPLING_OPTIONS)}"
            )
        temperature = options.get("temperature", self.defaults["temperature"])
        seed = options.get("seed", self.defaults["seed"])
        if temperature < 0:
            raise ValueError(f"temperature: expected a value >= 0, got {temperature}")
        with torch.inference_mode():
            logits = self.logits(self.code_features(queries)).float()
            if temperature == 0:
                codes = logits.argmax(dim=-1)
            else:
                generator = None if seed is None else torch.Generator().manual_seed(int(seed))
                # Drawn on the CPU, so a seed gives the same codes on every device.
                probs = torch.softmax(logits / temperature, dim=-1).flatten(0, 1).cpu()
                codes = (
                    torch.multinomial(probs, 1, generator=generator)
                    .reshape(logits.shape[:-1])
                    .to(logits.device)
                )
        return codes.reshape(-1, *self.tokenizer.grid).clone()

    def generate(self, queries: torch.Tensor, **options: Any) -> torch.Tensor:
        """Maps for query states [n, K, H]: depth [n, h, w] in the codec's units (NaN where the
        decoded pixel is nearer the codec's invalid colour), segmentation class ids [n, h, w], or
        unit normals [n, 3, h, w]. Options: `temperature`, `seed` (see `sample_codes`)."""
        codes = self.sample_codes(queries, **options)
        with torch.inference_mode():
            maps = image_to_map(self.codec, self.modality, self.tokenizer.decode(codes), self.output_size)
        return maps.clone()


register_head("discrete", DiscreteHead.from_config)
