"""`BackboneAdapter`: one object that knows where the parts of a Hugging Face MLLM are.

Everything architecture-specific in cooper-lib goes through an adapter, so the heads, the
reasoner and the trainers never branch on `model_type`. The base class implements the generic
accessors that transformers v5 gives every `*ForConditionalGeneration` model (`.model`,
`get_input_embeddings`, `get_output_embeddings`, `config.get_text_config()`); a family adapter
overrides only what its architecture does differently (the visual-token grid, extra inputs,
and for contexts continued from the KV cache how a new segment's positions and masks follow the
cached ones: the ``continuation_*`` methods, used by the interleaved reasoner).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from packaging.version import Version
from PIL import Image
from torch import nn

from cooper_lib.backbones.continuation import (
    ContinuationState,
    Inputs,
    counted_positions,
    strip_leading_bos,
)

#: Text standing for an assistant message while `continuation_text` renders the chat template.
_TURN_SENTINEL = "<|cooper-lib:assistant-turn|>"

#: The chat template used when a processor ships none (tiny test processors, PaliGemma).
#: `{IMAGE}` is replaced by the family's image placeholder before rendering. Newlines are Jinja
#: expressions because transformers renders templates with ``trim_blocks``, which eats a newline
#: written right after a block tag.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] }}: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{IMAGE}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if not (loop.last and continue_final_message is defined and continue_final_message) %}{{ '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


class BackboneNotSupportedError(TypeError):
    """Raised when no adapter can find the parts cooper-lib needs in a model."""


@dataclass(frozen=True)
class VisualLayout:
    """How one image appears in the token sequence.

    Attributes:
        num_tokens: image-token positions (``input_ids == image_token_id``) the image fills.
        grid: (rows, cols) of the row-major block of those positions that covers the whole image.
        grid_offset: index, among the image's `num_tokens` positions, where that block starts
            (non-zero when tiles come first and a whole-image view last, e.g. InternVL's thumbnail).
    """

    num_tokens: int
    grid: tuple[int, int]
    grid_offset: int = 0


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the transformers model under a PEFT wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base) and type(model).__name__.startswith("Peft"):
        return get_base()
    return model


def transformers_version() -> str:
    """The release of the transformers the model came from: the imported package's own
    ``__version__`` (an adapter only exists for a loaded model), which a copy on ``PYTHONPATH`` or a
    vendored one without installed metadata has too."""
    import transformers

    return transformers.__version__


class BackboneAdapter:
    """Generic accessors for a transformers MLLM; family adapters override the differences.

    Args:
        model: a loaded `*ForConditionalGeneration` / `AutoModelForImageTextToText` model,
            optionally wrapped by PEFT.
    """

    family: ClassVar[str] = "generic"
    #: `config.model_type` values this adapter serves.
    model_types: ClassVar[tuple[str, ...]] = ()
    #: Model-input keys the family's processor must produce for an image batch.
    required_inputs: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask", "pixel_values")
    #: What `visual_layout().grid` means for this family (the supported-backbones table shows it).
    layout_notes: ClassVar[str] = "square grid when the token count is a perfect square, else one row"
    #: Each image's visual tokens reach the language model as one row-major block of its square
    #: patch grid (``SpatialConfig.query_source="image"`` pools that block into query seeds).
    square_image_block: ClassVar[bool] = False
    #: Continued contexts: model-input key -> axis along which a context's images stack
    #: (0: images flattened over the batch; 1: one row per sample, images along dimension 1).
    image_input_axes: ClassVar[dict[str, int]] = {"pixel_values": 0}
    #: Continued contexts: processor outputs the model must not receive.
    continuation_drop_keys: ClassVar[tuple[str, ...]] = ()
    #: Oldest transformers release the family works with here, and what goes wrong before it
    #: (None: the package's own floor, ``transformers>=5.17``).
    min_transformers: ClassVar[tuple[str, str] | None] = None

    def __init__(self, model: nn.Module) -> None:
        self.model = unwrap_model(model)
        if self.min_transformers is not None:
            needed, why = self.min_transformers
            found = transformers_version()
            if Version(found) < Version(needed):
                raise BackboneNotSupportedError(
                    f"{self.family}: needs transformers>={needed}, found {found}: {why}."
                )
        missing = self.missing_parts()
        if missing:
            raise BackboneNotSupportedError(self._unsupported_message(missing))

    # ----------------------------------------------------------------- model side
    @property
    def config(self) -> Any:
        """The model's (top-level, multimodal) transformers config."""
        return self.model.config

    @property
    def model_type(self) -> str:
        """The config's `model_type` (the class name when it has none)."""
        return getattr(self.config, "model_type", type(self.model).__name__)

    @property
    def text_config(self) -> Any:
        """The language model's config (`get_text_config()`)."""
        return self.config.get_text_config()

    @property
    def hidden_size(self) -> int:
        """H, the language model's hidden size: the width of the query states."""
        return int(self.text_config.hidden_size)

    def input_embeddings(self) -> nn.Embedding:
        """The token embedding table the query hook sits on."""
        return self.model.get_input_embeddings()

    def output_embeddings(self) -> nn.Module:
        """The lm_head (possibly tied to the input embeddings)."""
        return self.model.get_output_embeddings()

    @property
    def tied_embeddings(self) -> bool:
        """Whether lm_head shares its weight tensor with the input embeddings."""
        return self.output_embeddings().weight is self.input_embeddings().weight

    @property
    def logit_softcap(self) -> float | None:
        """Final-logit soft-capping of the LM head (Gemma-style), or None."""
        value = getattr(self.text_config, "final_logit_softcapping", None)
        return float(value) if value else None

    def decoder(self) -> nn.Module:
        """The base model (vision + projector + LM, without lm_head) returning `last_hidden_state`."""
        return self.model.model

    def language_model(self) -> nn.Module:
        """The text decoder stack."""
        return self.decoder().language_model

    def decoder_layers(self) -> nn.ModuleList:
        """The language model's transformer layers, in order."""
        return self.language_model().layers

    def vision_tower(self) -> nn.Module | None:
        """The image encoder (frozen in stage 1 by default), or None when none is found."""
        base = self.decoder()
        for name in ("vision_tower", "visual", "vision_model"):
            if isinstance(getattr(base, name, None), nn.Module):
                return getattr(base, name)
        return None

    @property
    def image_token_id(self) -> int:
        """The placeholder token id the processor expands into an image's visual tokens."""
        for name in ("image_token_id", "image_token_index"):
            value = getattr(self.config, name, None)
            if value is not None:
                return int(value)
        raise BackboneNotSupportedError(
            f"model_type={self.model_type!r}: config has neither image_token_id nor image_token_index"
        )

    def hidden_states(self, **inputs: Any) -> torch.Tensor:
        """Last hidden states [B, T, H] from the base model; full-vocabulary logits are never computed."""
        inputs = {k: v for k, v in inputs.items() if k not in ("labels", "use_cache", "return_dict")}
        out = self.decoder()(**inputs, use_cache=False, return_dict=True)
        return out.last_hidden_state

    def resize_embeddings(self, num_tokens: int) -> None:
        """Grow input (and untied output) embeddings to `num_tokens` rows; new rows are set by the caller."""
        self.model.resize_token_embeddings(num_tokens, mean_resizing=False)

    # ------------------------------------------------------------- processor side
    @staticmethod
    def tokenizer(processor: Any) -> Any:
        """The text tokenizer of a processor (or the tokenizer itself)."""
        return getattr(processor, "tokenizer", processor)

    def image_placeholder(self, processor: Any) -> str:
        """Text that the family's processor expands into an image's visual tokens."""
        token = getattr(processor, "image_token", None)
        if not isinstance(token, str):
            raise BackboneNotSupportedError(
                f"processor {type(processor).__name__} has no string attribute 'image_token'; "
                f"the {self.family!r} adapter cannot place images in text"
            )
        return token

    def chat_template(self, processor: Any) -> str:
        """The processor's chat template, or a plain fallback with the family's image placeholder."""
        template = getattr(processor, "chat_template", None)
        if isinstance(template, str) and template:
            return template
        return FALLBACK_CHAT_TEMPLATE.replace("{IMAGE}", self.image_placeholder(processor))

    def render_chat(
        self,
        processor: Any,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
    ) -> str:
        """Render HF-style chat messages to prompt text with the processor's (or a fallback) template."""
        return processor.apply_chat_template(
            list(messages),
            chat_template=self.chat_template(processor),
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
        )

    def build_inputs(
        self,
        processor: Any,
        texts: Sequence[str],
        images: Sequence[Sequence[Image.Image]] | None = None,
        **processor_kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """Tokenise prompts and preprocess their images with the backbone's own processor.

        Args:
            processor: the backbone's processor.
            texts: one prompt per sample, image placeholders already in place.
            images: per sample, the images in the order their placeholders appear.
        Returns:
            the model inputs, including the family's extra keys (see `required_inputs`).
        """
        kwargs: dict[str, Any] = {"text": list(texts), "return_tensors": "pt", "padding": True}
        if images is not None and any(len(imgs) for imgs in images):
            kwargs["images"] = [list(imgs) for imgs in images]
        kwargs.update(processor_kwargs)
        batch = dict(processor(**kwargs))
        if "images" in kwargs:
            missing = [k for k in self.required_inputs if k not in batch]
            if missing:
                raise ValueError(
                    f"processor {type(processor).__name__} did not produce {missing} that "
                    f"{self.family!r} models need; pass the processor that belongs to this backbone"
                )
        return batch

    # ------------------------------------------------------- continued (KV-cached) contexts
    def continuation_text(
        self, processor: Any, content: Sequence[Mapping[str, Any]], *, role: str = "user"
    ) -> str:
        """Chat text that ends the assistant turn in progress, adds a `role` message with `content`
        (HF-style parts: ``{"type": "image"}``, ``{"type": "text", "text": ...}``) and opens the
        next assistant turn: the template's own text between two assistant turns, rendered around
        a sentinel assistant message.

        Raises:
            ValueError: when the template moves the message's images elsewhere (they must stay in
                the message for the text to be appended to a context).
        """
        messages = [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": _TURN_SENTINEL},
            {"role": role, "content": list(content)},
        ]
        rendered = self.render_chat(processor, messages, add_generation_prompt=True)
        if rendered.count(_TURN_SENTINEL) != 1:
            raise ValueError(
                f"processor: its chat template does not render assistant messages verbatim; the "
                f"{self.family!r} adapter cannot continue a conversation from it"
            )
        text = rendered.split(_TURN_SENTINEL, 1)[1]
        wanted = sum(1 for part in content if part.get("type") == "image")
        found = text.count(self.image_placeholder(processor))
        if found != wanted:
            raise ValueError(
                f"processor: its chat template put {found} of the message's {wanted} image(s) after the "
                f"previous assistant turn; expected images to stay in their message"
            )
        return text

    def prompt_inputs(self, processor: Any, text: str, images: Sequence[Image.Image]) -> Inputs:
        """Model inputs (batch of one) of a context's first segment, with the processor's special tokens."""
        batch = self.build_inputs(processor, [text], [list(images)] if images else None)
        return {
            k: v
            for k, v in batch.items()
            if isinstance(v, torch.Tensor) and k not in self.continuation_drop_keys
        }

    def segment_inputs(self, processor: Any, text: str, images: Sequence[Image.Image] = ()) -> Inputs:
        """Model inputs (batch of one) of a segment appended to a context: no special tokens."""
        batch = self.build_inputs(
            processor, [text], [list(images)] if images else None, add_special_tokens=False
        )
        batch = {
            k: v
            for k, v in batch.items()
            if isinstance(v, torch.Tensor) and k not in self.continuation_drop_keys
        }
        return strip_leading_bos(batch, self.tokenizer(processor), text)

    def continuation_positions(
        self, state: ContinuationState, rows: Sequence[Inputs | None], length: int
    ) -> torch.Tensor:
        """Position ids of one step: each row's segment (None: nothing) left-padded to `length`.

        The base rule counts tokens, so padding holes never shift positions. Advances `state`.
        """
        return counted_positions(state, rows, length)

    def continuation_inputs(
        self, state: ContinuationState, rows: Sequence[Inputs | None], length: int
    ) -> dict[str, Any]:
        """Family inputs of one step besides ids, mask, positions and images (none in the base)."""
        return {}

    def context_inputs(self, input_ids: torch.Tensor, segments: Sequence[Inputs]) -> dict[str, Any]:
        """Family inputs of a whole context run in one call (a re-prefill), from its segments."""
        return {}

    def visual_layout(self, processor: Any, image_size: tuple[int, int]) -> VisualLayout:
        """Token count and grid of one image of `image_size` (height, width), measured through the processor."""
        count = self.count_visual_tokens(processor, image_size)
        side = int(round(count**0.5))
        grid = (side, side) if side * side == count else (1, count)
        return VisualLayout(count, grid)

    def count_visual_tokens(self, processor: Any, image_size: tuple[int, int]) -> int:
        """Image-token positions that one image of `image_size` (height, width) fills in `input_ids`."""
        batch = self._single_image_inputs(processor, image_size)
        return int((batch["input_ids"] == self.image_token_id).sum())

    def _single_image_inputs(self, processor: Any, image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Model inputs of a one-turn chat holding a single grey image of `image_size` (height, width)."""
        height, width = image_size
        if height < 1 or width < 1:
            raise ValueError(f"image_size: expected positive (height, width), got {image_size!r}")
        image = Image.new("RGB", (width, height), (127, 127, 127))
        text = self.render_chat(
            processor, [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}]
        )
        return self.build_inputs(processor, [text], [[image]])

    def check_processor(self, processor: Any) -> None:
        """Raise ValueError when `processor` evidently belongs to another model."""
        tokenizer = self.tokenizer(processor)
        rows = self.input_embeddings().num_embeddings
        if len(tokenizer) > rows:
            raise ValueError(
                f"processor: its tokenizer has {len(tokenizer)} tokens but the model's input embeddings "
                f"have {rows} rows; expected the processor that belongs to this {self.model_type!r} model"
            )
        token = getattr(processor, "image_token", None)
        if isinstance(token, str):
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id != self.image_token_id:
                raise ValueError(
                    f"processor: its image token {token!r} has id {token_id}, but the model expects "
                    f"image_token_id={self.image_token_id}; expected the processor that belongs to this "
                    f"{self.model_type!r} model"
                )

    def _check_processor_value(self, processor: Any, attribute: str, model_value: Any) -> None:
        """Raise ValueError when the processor's dotted `attribute` (e.g. a patch size) is not `model_value`."""
        value = processor
        for part in attribute.split("."):
            value = getattr(value, part, None)
        if value != model_value:
            raise ValueError(
                f"processor: its {attribute} is {value!r} but this {self.model_type!r} model expects "
                f"{model_value!r}; expected the processor that belongs to this model"
            )

    # ----------------------------------------------------------------- checks
    def missing_parts(self) -> list[str]:
        """Names of the parts this adapter could not find (empty when the model is usable)."""
        missing = []
        checks = {
            "config.get_text_config().hidden_size": lambda: self.hidden_size,
            "get_input_embeddings()": self.input_embeddings,
            "get_output_embeddings() (lm_head)": self.output_embeddings,
            "model.model (base model without lm_head)": self.decoder,
            "image_token_id / image_token_index in config": lambda: self.image_token_id,
        }
        for name, probe in checks.items():
            try:
                if probe() is None:
                    missing.append(name)
            except (AttributeError, TypeError, NotImplementedError, BackboneNotSupportedError):
                missing.append(name)
        return missing

    def _unsupported_message(self, missing: list[str]) -> str:
        return (
            f"cannot attach spatial heads to model_type={self.model_type!r} "
            f"({type(self.model).__name__}): could not find {', '.join(missing)}."
        )
