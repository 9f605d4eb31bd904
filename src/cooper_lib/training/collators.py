"""Collators: records -> the model inputs, labels and auxiliary targets of one micro-batch.

`Stage1Collator` asks for one map per image (`SpatialModel.perception_inputs`: the image, COOPER's
tagged instruction, a query block) and stacks the target maps per modality. `SFTCollator` renders
an interleaved record as a chat through the backbone's own template and processor, and labels
exactly the tokens of the text items marked `need_loss`: each such text is tokenised on its own
and found, token for token, in the rendered sequence (an error names the record when the chat
template's context changes its tokens, instead of labelling the wrong positions). The backbone's
end-of-turn token (the special token its chat template writes after an assistant message,
`<|im_end|>` for Qwen) is labelled too where it directly follows such a text, as COOPER labels
``text_ids + [eos]``: the model learns to end its turn. A tool call is followed by its query block
instead (the reasoner stops on the closing tag), so no end-of-turn token is labelled after it. A tool call
followed by its map gets the query block right after the closing tool tag, as the reasoner lays
it out at inference; when the map item carries its true map, that map supervises the head there
(other blocks of the batch get an all-invalid map, which every head loss leaves out).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cooper_lib.config import SpatialConfig
from cooper_lib.data.records import SFTRecord, Stage1Example
from cooper_lib.data.turns import TurnFormat
from cooper_lib.images import to_pil
from cooper_lib.model import IGNORE_INDEX, SpatialModel


def resize_map(target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a map [H, W] or [C, H, W] (class ids and invalid depth stay exact)."""
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    squeeze = target.ndim == 2
    x = target[None, None] if squeeze else target[None]
    out = F.interpolate(x.double(), size=tuple(size), mode="nearest-exact")[0]
    out = out[0] if squeeze else out
    return out.to(target.dtype)


def _stack_targets(
    pairs: Sequence[tuple[str, torch.Tensor | None]], size: tuple[int, int], config: SpatialConfig
) -> dict[str, torch.Tensor]:
    """Per modality, the resized targets stacked in block order. A None target (a query block
    without a true map) becomes an all-invalid map (`Modality.blank_target`: NaN, or the ignore id),
    which the head losses leave out; a modality with no true map at all gets no targets."""
    grouped: dict[str, list[torch.Tensor | None]] = {}
    for modality, target in pairs:
        grouped.setdefault(modality, []).append(None if target is None else resize_map(target, size))
    stacked = {}
    for modality, targets in grouped.items():
        real = next((t for t in targets if t is not None), None)
        if real is None:
            continue
        blank = config.modality(modality).blank_target(real)
        stacked[modality] = torch.stack([blank if t is None else t for t in targets])
    return stacked


def _check_modality(model: SpatialModel, modality: str, where: str) -> None:
    if modality not in model.config.modalities:
        raise ValueError(
            f"{where}: modality {modality!r} has no head; the model has {list(model.config.modalities)}"
        )


class Stage1Collator:
    """Stage-1 micro-batches: perception prompts, targets per modality, optional tag labels.

    Args:
        model: the `SpatialModel` (its processor, adapter and layout build the prompts).
        target_size: (h, w) the targets are resized to; default the heads' output size.
        lm_loss_on_tag: label the tagged instruction so the LM loss trains it too.
    """

    def __init__(
        self, model: SpatialModel, target_size: tuple[int, int] | None = None, lm_loss_on_tag: bool = False
    ) -> None:
        self.model = model
        self.target_size = tuple(target_size or model.config.output_size)
        self.lm_loss_on_tag = lm_loss_on_tag

    def __call__(self, examples: Sequence[Stage1Example]) -> dict[str, Any]:
        if not examples:
            raise ValueError("examples: expected at least one record, got none")
        for example in examples:
            _check_modality(self.model, example.modality, f"record {example.id}")
        inputs = self.model.perception_inputs(
            [e.load_image() for e in examples], [e.modality for e in examples]
        )
        batch: dict[str, Any] = dict(inputs)
        batch["aux_targets"] = _stack_targets(
            [(e.modality, e.load_target()) for e in examples], self.target_size, self.model.config
        )
        if self.lm_loss_on_tag:
            batch["labels"] = self.tag_labels(inputs["input_ids"])
        return batch

    def tag_labels(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Labels on the span from the first to the last tag token of each row (the tagged instruction)."""
        is_tag = torch.isin(input_ids, self.model.layout.tag_ids.to(input_ids.device))
        seen = is_tag.long().cumsum(dim=1)
        inside = (seen > 0) & (seen < seen[:, -1:]) | is_tag
        return input_ids.masked_fill(~inside, IGNORE_INDEX)


class SFTCollator:
    """Interleaved SFT micro-batches: rendered chats, exact labels, targets of supervised maps.

    Args:
        model: the `SpatialModel`.
        system_prompt: put first when a record has no system item; None uses the turn format's
            (`cooper_lib.data.turns.SYSTEM_PROMPT`), "" puts none.
        supervise_maps: train the heads on the true maps that follow tool calls (the query blocks
            after tool calls are there either way).
        target_size: (h, w) targets are resized to; default the heads' output size.
        max_length: longest allowed tokenised record (longer ones raise ValueError).
    """

    def __init__(
        self,
        model: SpatialModel,
        system_prompt: str | None = None,
        supervise_maps: bool = True,
        target_size: tuple[int, int] | None = None,
        max_length: int | None = None,
    ) -> None:
        self.model = model
        self.format = TurnFormat.from_config(model.config)
        self.system_prompt = self.format.system_prompt if system_prompt is None else system_prompt
        self.supervise_maps = supervise_maps
        self.target_size = tuple(target_size or model.config.output_size)
        self.max_length = max_length
        self.tokenizer = model.adapter.tokenizer(model.processor)
        self.end_of_turn_id = self._end_of_turn_id()

    def __call__(self, records: Sequence[SFTRecord]) -> dict[str, Any]:
        if not records:
            raise ValueError("records: expected at least one record, got none")
        texts, images, pieces, targets = [], [], [], []
        for record in records:
            messages, record_images, loss_pieces, record_targets = self.render(record)
            if not loss_pieces and all(target is None for _, target in record_targets):
                raise ValueError(
                    f"record {record.id}: no loss-bearing text and no supervised map (supervise_maps="
                    f"{self.supervise_maps}); it would train nothing"
                )
            texts.append(self.model.adapter.render_chat(self.model.processor, messages))
            images.append(record_images)
            pieces.append(loss_pieces)
            targets += record_targets
        inputs = self.model.adapter.build_inputs(self.model.processor, texts, images if any(images) else None)
        ids = inputs["input_ids"]
        if self.max_length is not None and int(inputs["attention_mask"].sum(dim=1).max()) > self.max_length:
            lengths = inputs["attention_mask"].sum(dim=1).tolist()
            too_long = [r.id for r, n in zip(records, lengths, strict=True) if n > self.max_length]
            raise ValueError(
                f"records {too_long}: longer than max_length={self.max_length} tokens ({lengths})"
            )
        labels = torch.full_like(ids, IGNORE_INDEX)
        for row, (record, row_pieces) in enumerate(zip(records, pieces, strict=True)):
            self._label_row(ids[row], labels[row], row_pieces, record.id)
        batch: dict[str, Any] = {**inputs, "labels": labels}
        stacked = _stack_targets(targets, self.target_size, self.model.config)
        if stacked:
            batch["aux_targets"] = stacked
        return batch

    def render(
        self, record: SFTRecord
    ) -> tuple[list[dict], list[Any], list[tuple[str, bool]], list[tuple[str, torch.Tensor]]]:
        """Chat messages, images in order, the loss-bearing text pieces (text, whether it ends its
        item), and supervised (modality, map) pairs."""
        roles = record.roles()
        messages: list[dict[str, Any]] = []
        images, pieces, targets = [], [], []
        if self.system_prompt and "system" not in roles:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        for index, (item, role) in enumerate(zip(record.items, roles, strict=True)):
            chat_role = "user" if role == "tool" else role
            if not messages or messages[-1]["role"] != chat_role:
                messages.append({"role": chat_role, "content": []})
            content = messages[-1]["content"]
            if item.type == "image":
                images.append(
                    to_pil(item.value, f"record {record.id}: item {index}", base_dir=record.base_dir)
                )
                content.append({"type": "image"})
                continue
            text = item.value
            call = self._tool_call(record, index)
            if call is not None:
                modality, target = call
                before, after = self._split_after_close_tag(text, modality, record.id)
                if item.need_loss:
                    parts = [p for p in (before, after) if p]
                    pieces += [(p, i == len(parts) - 1) for i, p in enumerate(parts)]
                targets.append((modality, target))
                text = before + self.model.layout.query_text() + after
            elif item.need_loss:
                pieces.append((text, True))
            content.append({"type": "text", "text": text})
        return messages, images, pieces, targets

    def _tool_call(self, record: SFTRecord, index: int) -> tuple[str, torch.Tensor | None] | None:
        """(modality, true map or None) when text item `index` is a tool call answered by the image
        after it: the image names its modality, or the text ends with a closing tool tag of the
        model (COOPER's tool turns end there). The true map is given when the image item carries
        one and `supervise_maps` is on."""
        if index + 1 >= len(record.items) or record.items[index + 1].type != "image":
            return None
        following = record.items[index + 1]
        modality = following.modality or self.format.closing_tool(record.items[index].value)
        if modality is None:
            return None  # an image after ordinary text (the question's picture, say)
        _check_modality(self.model, modality, f"record {record.id}: item {index + 1}")
        supervised = self.supervise_maps and following.target is not None
        return modality, record.load_target(following) if supervised else None

    def _split_after_close_tag(self, text: str, modality: str, record_id: str) -> tuple[str, str]:
        close = self.format.tools[modality][1]
        cut = text.rfind(close)
        if cut < 0:
            raise ValueError(
                f"record {record_id}: a {modality} map follows a turn without its closing tag {close!r}; "
                "expected the tool call to end the turn"
            )
        cut += len(close)
        return text[:cut], text[cut:]

    def _end_of_turn_id(self) -> int | None:
        """The special token the chat template writes right after an assistant message's text
        (``<|im_end|>`` for Qwen, ``<end_of_turn>`` for Gemma), or None when it writes none there
        (a template that ends messages with plain text, like the fallback of template-less
        processors: nothing extra is labelled then)."""
        probe = "Probe."
        messages = [
            {"role": "user", "content": [{"type": "text", "text": "Hi."}]},
            {"role": "assistant", "content": [{"type": "text", "text": probe}]},
        ]
        rendered = self.model.adapter.render_chat(self.model.processor, messages)
        sequence = np.array(self.tokenizer(rendered, add_special_tokens=False)["input_ids"])
        pattern = np.array(self.tokenizer(probe, add_special_tokens=False)["input_ids"], dtype=sequence.dtype)
        at = find_subsequence(sequence, pattern)
        if at < 0:
            raise ValueError(
                f"model: the chat template changes the tokens of an assistant message {probe!r}; cannot find "
                "its end-of-turn token"
            )
        after = at + len(pattern)
        if after >= len(sequence):
            return None
        token = int(sequence[after])
        special = set(self.tokenizer.all_special_ids) | set(self.tokenizer.get_added_vocab().values())
        return token if token in special else None

    def _label_row(
        self, ids: torch.Tensor, labels: torch.Tensor, pieces: Sequence[tuple[str, bool]], record_id: str
    ) -> None:
        """Set `labels` to `ids` on each piece's tokens, found in order, and on the end-of-turn
        token right after a piece that ends its item."""
        sequence = ids.cpu().numpy()
        start = 0
        for piece, ends_item in pieces:
            pattern = np.array(
                self.tokenizer(piece, add_special_tokens=False)["input_ids"], dtype=sequence.dtype
            )
            at = find_subsequence(sequence, pattern, start)
            if at < 0:
                raise ValueError(
                    f"record {record_id}: the tokens of the loss-bearing text {piece[:60]!r} do not appear "
                    "unchanged in the rendered chat (the template's context merged them with neighbours)"
                )
            labels[at : at + len(pattern)] = ids[at : at + len(pattern)]
            start = at + len(pattern)
            if ends_item and start < len(sequence) and sequence[start] == self.end_of_turn_id:
                labels[start] = ids[start]
                start += 1


def find_subsequence(sequence: np.ndarray, pattern: np.ndarray, start: int = 0) -> int:
    """First index >= `start` where `pattern` occurs in `sequence`, or -1."""
    if len(pattern) == 0:
        raise ValueError("pattern: expected at least one token, got none")
    if len(sequence) - start < len(pattern):
        return -1
    windows = np.lib.stride_tricks.sliding_window_view(sequence[start:], len(pattern))
    hits = np.flatnonzero((windows == pattern).all(axis=1))
    return int(hits[0]) + start if len(hits) else -1
