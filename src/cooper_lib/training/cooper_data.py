"""Records -> the reference assembly's inputs, from the same records the plug-in trainers read.

- Stage-1 rows (`Stage1Example`: image, modality, true map) become `Stage1Sample`s: the image at
  the VAE's and the ViT's sizes, the modality's tool call (``<depth-estimation>Estimate ...
  </depth-estimation>``) as the instruction, and the true map drawn as its pseudo-image (the
  modality's codec: depth as Spectral colours, segmentation as palette colours) at the VAE size.
- SFT records (`SFTRecord`) become dialogues laid out as `CooperReasoner` lays out a run: the
  system prompt, each text framed ``<|im_start|> text <|im_end|>`` (learnt when ``need_loss``),
  the question's image as its VAE latent and its ViT tokens, and each tool result as ViT tokens,
  preceded, when the item carries its true map and maps are supervised, by that map's
  pseudo-image as a learnt latent (`ImageLatent`, flow matching).

Images stay pixels here (collators may run in DataLoader workers); `CooperObjective` encodes them
with the autoencoder on the model's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from cooper_lib.data.records import SFTRecord, Stage1Example
from cooper_lib.data.turns import TurnFormat
from cooper_lib.images import to_pil
from cooper_lib.modalities import get_modality
from cooper_lib.models.cooper import CooperConfig, Image, Item, Stage1Sample, Text
from cooper_lib.reasoning.cooper import COOPER_TOOLS, fit_pixels, image_sides

__all__ = ["CooperBatch", "CooperSFTCollator", "CooperStage1Collator", "ImageLatent", "map_pixels"]


@dataclass(frozen=True)
class ImageLatent:
    """An image (`[3, H, W]` in [-1, 1], sides multiples of 16) to enter the sequence as its VAE
    latent, encoded at the training step."""

    pixels: torch.Tensor


@dataclass
class CooperBatch:
    """One micro-batch for `CooperObjective`: stage-1 samples or SFT dialogues, and each's record id."""

    stage1: list[Stage1Sample] = field(default_factory=list)
    dialogues: list[list[tuple[Item | ImageLatent, bool]]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.stage1) + len(self.dialogues)


def map_pixels(modality: str, target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The true map `target` drawn as its modality's pseudo-image, `[3, *size]` in [-1, 1]
    (nearest resize: class colours and invalid pixels stay exact)."""
    rgb = get_modality(modality).codec().encode(target).float()  # [3, h, w] in [0, 1]
    if tuple(rgb.shape[-2:]) != tuple(size):
        rgb = F.interpolate(rgb[None], size=tuple(size), mode="nearest-exact")[0]
    return rgb * 2 - 1


def _check_tool(fmt: TurnFormat, modality: str, where: str) -> None:
    if modality not in fmt.tools:
        raise ValueError(
            f"{where}: modality {modality!r} has no tool tags; expected one of {sorted(fmt.tools)}"
        )


class CooperStage1Collator:
    """Stage-1 records -> a `CooperBatch` of `Stage1Sample`s.

    Args:
        config: the model's `CooperConfig` (image sizes, token ids).
        tokenizer: its text tokenizer (``encode(text, add_special_tokens=False)``).
        tags: the turn format whose tool calls are the instructions (default COOPER's).
    """

    def __init__(self, config: CooperConfig, tokenizer: Any, tags: TurnFormat | None = None) -> None:
        self.config, self.tokenizer = config, tokenizer
        self.format = tags or TurnFormat.default()
        self.sides = image_sides(config)

    def __call__(self, examples: Sequence[Stage1Example]) -> CooperBatch:
        if not examples:
            raise ValueError("examples: expected at least one record, got none")
        vae_stride, vae_max, vit_stride, vit_max = self.sides
        batch = CooperBatch()
        for e in examples:
            _check_tool(self.format, e.modality, f"record {e.id}")
            image = e.load_image()
            vae = fit_pixels(image, vae_stride, vae_max)
            ids = self.tokenizer.encode(self.format.tool_call(e.modality), add_special_tokens=False)
            target = map_pixels(e.modality, e.load_target(), tuple(vae.shape[1:]))
            batch.stage1.append(Stage1Sample(fit_pixels(image, vit_stride, vit_max), vae, target, tuple(ids)))
            batch.ids.append(e.id)
        return batch


class CooperSFTCollator:
    """SFT records -> a `CooperBatch` of dialogues (see the module docstring).

    Args:
        config: the model's `CooperConfig`.
        tokenizer: its text tokenizer.
        system_prompt: put first when a record has no system item; None uses the turn format's,
            "" puts none.
        supervise_maps: learn the true maps of tool results that carry one (flow matching).
        max_length: longest allowed dialogue in tokens (longer ones raise ValueError).
        tags: the turn format (default COOPER's, as `CooperReasoner`'s: depth and segmentation).
    """

    def __init__(
        self,
        config: CooperConfig,
        tokenizer: Any,
        system_prompt: str | None = None,
        supervise_maps: bool = True,
        max_length: int | None = None,
        tags: TurnFormat | None = None,
    ) -> None:
        self.config, self.tokenizer = config, tokenizer
        self.format = tags or TurnFormat.default(COOPER_TOOLS)
        self.system_prompt = self.format.system_prompt if system_prompt is None else system_prompt
        self.supervise_maps = supervise_maps
        self.max_length = max_length
        self.sides = image_sides(config)

    def _text(self, text: str) -> Text:
        cfg = self.config
        return Text(
            (cfg.bos_token_id, *self.tokenizer.encode(text, add_special_tokens=False), cfg.eos_token_id)
        )

    def __call__(self, records: Sequence[SFTRecord]) -> CooperBatch:
        if not records:
            raise ValueError("records: expected at least one record, got none")
        batch = CooperBatch()
        for record in records:
            dialogue = self.dialogue(record)
            if self.max_length is not None and (n := self.tokens(dialogue)) > self.max_length:
                raise ValueError(f"record {record.id}: {n} tokens, longer than max_length={self.max_length}")
            batch.dialogues.append(dialogue)
            batch.ids.append(record.id)
        return batch

    def dialogue(self, record: SFTRecord) -> list[tuple[Item | ImageLatent, bool]]:
        """The record's (item, learnt) pairs."""
        vae_stride, vae_max, vit_stride, vit_max = self.sides
        out: list[tuple[Item | ImageLatent, bool]] = []
        if self.system_prompt and "system" not in record.roles():
            out.append((self._text(self.system_prompt), False))
        seen_image = False
        for index, item in enumerate(record.items):
            if item.type == "text":
                out.append((self._text(item.value), bool(item.need_loss)))
                continue
            image = to_pil(item.value, f"record {record.id}: item {index}", base_dir=record.base_dir)
            vit = fit_pixels(image, vit_stride, vit_max)
            modality = self._tool_result(record, index)
            if modality is None:
                if (
                    not seen_image
                ):  # the question's image: VAE latent and ViT tokens, as the reasoner reads it
                    out.append((ImageLatent(fit_pixels(image, vae_stride, vae_max)), False))
                out.append((Image(vit), False))
                seen_image = True
                continue
            if self.supervise_maps and item.target is not None:
                size = tuple(fit_pixels(image, vae_stride, vae_max).shape[1:])
                out.append((ImageLatent(map_pixels(modality, record.load_target(item), size)), True))
            out.append((Image(vit), False))
        if not any(flag for _, flag in out):
            raise ValueError(f"record {record.id}: no item is flagged need_loss and no map is supervised")
        return out

    def _tool_result(self, record: SFTRecord, index: int) -> str | None:
        """The modality of image item `index` when it answers a tool call: named by the item, or
        by the closing tool tag ending the text before it."""
        item = record.items[index]
        before = record.items[index - 1] if index > 0 else None
        modality = item.modality
        if modality is None and before is not None and before.type == "text":
            modality = self.format.closing_tool(before.value)
        if modality is not None:
            _check_tool(self.format, modality, f"record {record.id}: item {index}")
        return modality

    def tokens(self, dialogue: Sequence[tuple[Item | ImageLatent, bool]]) -> int:
        """Tokens of a dialogue: text, and each image's ViT or latent tokens with two frame tokens."""
        cfg = self.config
        total = 0
        for item, _ in dialogue:
            if isinstance(item, Text):
                total += len(item.ids)
            elif isinstance(item, Image):
                p = cfg.vit.patch_size
                total += 2 + (item.pixels.shape[1] // p) * (item.pixels.shape[2] // p)
            else:
                p = cfg.latent_downsample * cfg.latent_patch_size
                total += 2 + (item.pixels.shape[1] // p) * (item.pixels.shape[2] // p)
        return total
