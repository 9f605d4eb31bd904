"""One benchmark question: its image (loaded on demand), text, options, answer and scoring type."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from cooper_lib.data.answers import ANSWER_TYPES as TEXT_ANSWER_TYPES
from cooper_lib.data.answers import answer_type, option_letters
from cooper_lib.images import open_image
from cooper_lib.modalities import available_modalities

AnswerType = Literal["choice", "yes_no", "integer", "number", "quantity", "text", "depth"]
"""How an item is scored: an answer type of `cooper_lib.data.answers` (option letter, yes/no, exact
integer, number by mean relative accuracy, length with unit, text), or a depth map (NYU v2)."""

ANSWER_TYPES: tuple[str, ...] = (*TEXT_ANSWER_TYPES, "depth")

ImageSource = Path | Callable[[], Image.Image]
"""A path to an image file, or a zero-argument callable that decodes the image when asked."""


@dataclass(frozen=True)
class BenchmarkItem:
    """One question of a benchmark.

    Attributes:
        id: unique within its benchmark; the key a runner caches predictions under.
        image: a path, or a callable decoding the image on demand (base64, parquet bytes, HDF5).
        question: the text shown to the model, composed the way the benchmark's reference
            evaluation composes it (hint, question and options where it includes them).
        answer: the ground truth: an option letter, ``"yes"``/``"no"``, a number, a length in
            centimetres (Q-SpatialBench), or ``None`` for depth items (see ``target``).
        answer_type: how the answer is scored, one of `ANSWER_TYPES`.
        choices: the option texts in letter order (empty when the options live only in the text).
        category: the benchmark's own task / category name, used for per-category figures.
        extra: further fields of the source row (pair ids, sources, original unit, ...).
        target: dense ground truth loaded on demand (NYU v2 depth in metres, 480 x 640).
    """

    id: str
    image: ImageSource
    question: str
    answer: str | float | None
    answer_type: AnswerType
    choices: tuple[str, ...] = ()
    category: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    target: Callable[[], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.map_modality is None:
            object.__setattr__(self, "answer_type", answer_type(self.answer_type))
        if not isinstance(self.image, Path) and not callable(self.image):
            raise TypeError(f"image must be a pathlib.Path or a callable, got {type(self.image).__name__}")
        if self.map_modality is not None and self.target is None:
            raise ValueError(f"item {self.id!r}: a {self.map_modality} map item needs a target loader")

    @property
    def map_modality(self) -> str | None:
        """The modality whose map the answer is (an answer type naming a registered modality: NYU's
        ``"depth"``), or None for a question answered in text."""
        return self.answer_type if self.answer_type in available_modalities() else None

    def load_image(self) -> Image.Image:
        """The item's image as an RGB PIL image."""
        if isinstance(self.image, Path):
            return open_image(self.image, f"item {self.id!r}: image")
        return self.image()

    def letters(self) -> str:
        """Allowed option letters: one per choice, or A-F when the options live only in the text."""
        return option_letters(self.choices)
