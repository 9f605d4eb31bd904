"""`TextStopper`: decode a turn token by token and stop when its text completes a stop string.

Tags such as ``</answer>`` are plain text, so a model may write them in several sub-word tokens
(``</``, ``answer``, ``>``); matching token ids would miss them. The stopper decodes the turn
incrementally (each token's text is the difference between decoding a short window with and
without it, so byte-level pieces of one character and SentencePiece's leading spaces come out
right) and looks for the stop strings in the text that the newest piece completed. The same
pieces feed the streaming callback. Written by hand: transformers' `StopStringCriteria` says *that*
a string was hit, not which one or where, and gives no text pieces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["TextStopper"]

_INCOMPLETE = "\ufffd"  # what decoding yields for the first bytes of a multi-byte character


class TextStopper:
    """Incremental decoder of one turn with stop strings.

    Args:
        tokenizer: the backbone's tokenizer.
        stop_strings: texts that end the turn.

    Attributes:
        text: the turn's text so far.
        matched: the stop string that ended the turn (the one ending earliest), or None.
    """

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str]) -> None:
        if any(not isinstance(s, str) or not s for s in stop_strings):
            raise ValueError(f"stop_strings: expected non-empty strings, got {list(stop_strings)!r}")
        self.tokenizer = tokenizer
        self.stop_strings = tuple(stop_strings)
        self._longest = max((len(s) for s in self.stop_strings), default=0)
        self.ids: list[int] = []
        self.text = ""
        self.matched: str | None = None
        self._prefix = 0  # first token of the decoding window
        self._read = 0  # tokens whose text is already in `text`

    def push(self, token_id: int) -> str:
        """Add one token; return the new text it completes ("" while a character is incomplete)."""
        self.ids.append(int(token_id))
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if len(after) <= len(before) or after.endswith(_INCOMPLETE):
            return ""
        piece = after[len(before) :]
        self._prefix, self._read = self._read, len(self.ids)
        start = max(0, len(self.text) - self._longest + 1)
        self.text += piece
        if self.matched is None:
            self.matched = self._first_match(start)
        return piece

    def _first_match(self, start: int) -> str | None:
        """The stop string whose first occurrence at or after `start` ends earliest."""
        best: tuple[int, str] | None = None
        for stop in self.stop_strings:
            at = self.text.find(stop, start)
            if at >= 0 and (best is None or at + len(stop) < best[0]):
                best = (at + len(stop), stop)
        return None if best is None else best[1]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
