"""The text tokenizer that goes with a `CooperModel`: Qwen2's for released weights, a character
tokenizer for the `tiny` preset (128-token vocabulary, no download), and the marker file that
records which one a model folder uses.

A release folder (BAGEL's, COOPER's, or one a cooper-lib trainer wrote from one) carries Qwen2's
tokenizer files and is read with transformers' `AutoTokenizer` (local files only). A folder written
from the `tiny` preset carries ``cooper_tokenizer.json`` naming the character tokenizer instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["TOKENIZER_MARKER", "CharTokenizer", "load_tokenizer", "save_tokenizer"]

TOKENIZER_MARKER = "cooper_tokenizer.json"
"""File naming the character tokenizer in a model folder (absent: the folder's own tokenizer files)."""


class CharTokenizer:
    """One token per printable ASCII character (ids 32-126; anything else becomes '?'); ids 0-31
    are left to special tokens (the `tiny` preset's `<|im_start|>` = 1, `<|im_end|>` = 2, ...) and
    decode to nothing. Enough for a 128-token vocabulary and CPU tests."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text` (`add_special_tokens` is accepted and ignored)."""
        return [ord(c) if 32 <= ord(c) < 127 else ord("?") for c in text]

    def decode(
        self, ids: Any, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool = False
    ) -> str:
        """The text of `ids` (special ids 0-31 and ids past 126 dropped)."""
        return "".join(chr(int(i)) for i in ids if 32 <= int(i) < 127)


def save_tokenizer(tokenizer: Any, folder: str | Path) -> None:
    """Write `tokenizer` into `folder`: the marker for a `CharTokenizer`, else the tokenizer's own
    ``save_pretrained`` files."""
    folder = Path(folder)
    if isinstance(tokenizer, CharTokenizer):
        (folder / TOKENIZER_MARKER).write_text(json.dumps({"tokenizer": "char"}) + "\n")
    elif hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(str(folder))
    else:
        raise TypeError(
            f"tokenizer: expected a CharTokenizer or a transformers tokenizer, got {type(tokenizer).__name__}"
        )


def load_tokenizer(source: str | Path) -> Any:
    """The tokenizer of a preset name or a model folder.

    ``"tiny"`` gives a `CharTokenizer`; a folder gives the one its marker names, else its own
    tokenizer files through `AutoTokenizer` (local files only). ``"bagel-7b-mot"`` has no
    tokenizer of its own: pass a release folder holding Qwen2's tokenizer files.
    """
    if str(source) == "tiny":
        return CharTokenizer()
    folder = Path(source)
    if not folder.is_dir():
        raise ValueError(
            f"source: expected 'tiny' or a model folder with tokenizer files, got {str(source)!r}"
        )
    marker = folder / TOKENIZER_MARKER
    if marker.is_file():
        kind = json.loads(marker.read_text()).get("tokenizer")
        if kind != "char":
            raise ValueError(f"{marker}: expected tokenizer 'char', got {kind!r}")
        return CharTokenizer()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(
            f"{folder}: no tokenizer files (Qwen2's tokenizer.json / vocab.json) and no {TOKENIZER_MARKER}"
        ) from err
