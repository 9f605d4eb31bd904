"""Adapter for PaliGemma (1 and 2): SigLIP image tokens in front of a Gemma prefix-LM.

PaliGemma's processor rewrites every prompt that comes with images: it puts the BOS token right
after the last `<image>` placeholder and appends ``"\\n"``, the separator between PaliGemma's
*prefix* (images and prompt, attended bidirectionally) and its *suffix* (the text it is trained
to produce, attended causally). The adapter fits its prompts to that layout:

- its fallback chat template puts every image first and joins the messages' texts with ``"\\n"``,
  so the processor's BOS lands between images and text and its trailing ``"\\n"`` is the
  generation prompt (``add_generation_prompt`` needs nothing more);
- `build_inputs` drops the processor's backward-compatibility `labels` and `token_type_ids`
  unless a ``suffix=`` is passed. Without a suffix the labels are all -100 and the token types
  all 0, which would make the *whole* sequence one bidirectional prefix: a prompt that holds its
  own targets (teacher forcing) would let every position see the tokens it must predict. So
  without a suffix the model attends causally everywhere; with ``suffix=`` the processor's
  prefix-LM layout (bidirectional prefix, causal suffix, labels on the suffix) is kept as is;
- text without images (a continuation segment) goes to the tokenizer, since PaliGemma's
  processor refuses text without images.

PaliGemma has no interleaved-image format: the processor's BOS always follows the *last* image
placeholder, so an image placed mid-text (e.g. a generated map inserted into a reasoning trace)
gets a BOS after it; the fallback template avoids that by moving every image to the front.

A continued context (the reasoner inserting a generated map) therefore uses its own layout:
`continuation_text` is ``"\\n" + image placeholders + text + "\\n"`` (the template's message
separator, and the processor's prompt end), and `segment_inputs` expands each placeholder to the
image's ``image_seq_length`` tokens in place, with no BOS, instead of calling the processor.

PaliGemma 2's Gemma 2 decoder soft-caps the logits; the generic `logit_softcap` reads the cap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image

from cooper_lib.backbones.base import BackboneAdapter, BackboneNotSupportedError, VisualLayout
from cooper_lib.backbones.continuation import Inputs
from cooper_lib.backbones.registry import register_adapter

#: Fallback template: every image of the conversation first, then the messages' texts joined by "\n".
#: `{IMAGE}` is replaced by the processor's image token.
PALIGEMMA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['content'] is not string %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{IMAGE}{% endif %}{% endfor %}"
    "{% endif %}{% endfor %}"
    "{% for message in messages %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if not loop.last %}{{ '\\n' }}{% endif %}"
    "{% endfor %}"
)


@register_adapter
class PaliGemmaAdapter(BackboneAdapter):
    """PaliGemma: square grid of SigLIP patches, prefix-LM prompts (see the module doc)."""

    family = "paligemma"
    model_types = ("paligemma",)
    square_image_block = True
    layout_notes = "(rows, cols) = SigLIP patch grid (image size // patch size), the same for every image"
    min_transformers = (
        "5.23",
        "before it the text model attends bidirectionally without token types "
        "(use_bidirectional_attention), so the adapter's causal prompts see the tokens they predict",
    )

    @property
    def grid_side(self) -> int:
        """Side of the square patch grid an image becomes (SigLIP image size // patch size)."""
        vision = self.config.vision_config
        return vision.image_size // vision.patch_size

    def chat_template(self, processor: Any) -> str:
        """The processor's template, else a PaliGemma-style prefix template (the processor ships none)."""
        template = getattr(processor, "chat_template", None)
        if isinstance(template, str) and template:
            return template
        return PALIGEMMA_CHAT_TEMPLATE.replace("{IMAGE}", self.image_placeholder(processor))

    def build_inputs(
        self,
        processor: Any,
        texts: Sequence[str],
        images: Sequence[Sequence[Image.Image]] | None = None,
        **processor_kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """Model inputs in PaliGemma's layout; ``suffix=`` keeps the prefix-LM masks (see the module doc)."""
        if images is None or not any(len(imgs) for imgs in images):
            tokenizer = self.tokenizer(processor)
            kwargs: dict[str, Any] = {"return_tensors": "pt", "padding": True, **processor_kwargs}
            return dict(tokenizer(list(texts), **kwargs))
        batch = super().build_inputs(processor, texts, images, **processor_kwargs)
        if processor_kwargs.get("suffix") is None:
            batch.pop("labels", None)
            batch.pop("token_type_ids", None)
        return batch

    def continuation_text(
        self, processor: Any, content: Sequence[Mapping[str, Any]], *, role: str = "user"
    ) -> str:
        """``"\\n"``, the message's images, its texts, ``"\\n"`` (see the module doc; `role` is not shown)."""
        placeholder = self.image_placeholder(processor)
        images = "".join(placeholder for part in content if part.get("type") == "image")
        texts = "".join(part["text"] for part in content if part.get("type") == "text")
        return f"\n{images}{texts}\n"

    def segment_inputs(self, processor: Any, text: str, images: Sequence[Image.Image] = ()) -> Inputs:
        """Tokens of `text` with each image placeholder expanded in place (no BOS), and the images' pixels."""
        placeholder = self.image_placeholder(processor)
        if text.count(placeholder) != len(images):
            raise ValueError(
                f"text: expected {len(images)} image placeholder(s) {placeholder!r}, got {text.count(placeholder)}"
            )
        expanded = text.replace(placeholder, placeholder * int(processor.image_seq_length))
        batch = dict(self.tokenizer(processor)([expanded], add_special_tokens=False, return_tensors="pt"))
        if images:
            batch["pixel_values"] = processor.image_processor(list(images), return_tensors="pt")[
                "pixel_values"
            ]
        return batch

    def visual_layout(self, processor: Any, image_size: tuple[int, int]) -> VisualLayout:
        """``side * side`` tokens on a square grid, whatever the image size (the processor resizes it)."""
        count = self.count_visual_tokens(processor, image_size)
        side = self.grid_side
        if count != side * side:
            raise BackboneNotSupportedError(
                f"{self.family!r}: the processor gave {count} image tokens, the vision tower makes "
                f"{side}x{side}={side * side}"
            )
        return VisualLayout(count, (side, side))

    def check_processor(self, processor: Any) -> None:
        """The generic checks, plus the processor's `image_seq_length` against the vision tower's patches."""
        super().check_processor(processor)
        self._check_processor_value(processor, "image_seq_length", self.grid_side**2)
