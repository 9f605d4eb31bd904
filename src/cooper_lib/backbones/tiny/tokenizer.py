"""A small byte-level BPE tokenizer trained offline, so tiny test backbones need no download.

Hand-written on purpose: the hub's tokenizers are what we must not fetch. `tokenizers` does the
training; this module only fixes the corpus and wraps the result for transformers.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

_CORPUS = """
Estimate the depth of the image and generate the depth map.
Segment the objects in the image with different colors.
Which object is closer to the camera? The red sphere is closer than the blue box.
How far is the green cylinder from the camera in meters? About 3.2 meters.
How many cones are there in the image? There are two cones.
Is the yellow box to the left of the purple sphere? Yes, it is on the left.
What is the height of the orange cylinder in centimeters? Roughly 45 cm.
Here is the result of the tool. It is not always accurate, so check it carefully.
Continue to think, then call a tool again or answer. The answer is A. The answer is B.
A B C D yes no left right above below behind in front near far one two three four five
0 1 2 3 4 5 6 7 8 9 10 100 0.5 1.5 2.5 m cm mm ft in meters centimeters feet inches
The quick brown fox jumps over the lazy dog. A chair, a table, a lamp, a sofa and a bed.
""".strip().splitlines()


def train_tiny_tokenizer(
    special_tokens: Sequence[str],
    *,
    vocab_size: int = 512,
    bos_token: str | None = None,
    eos_token: str = "<eos>",
    pad_token: str = "<pad>",
    unk_token: str | None = None,
    extra_attributes: dict[str, str] | None = None,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on a fixed corpus and wrap it as a `PreTrainedTokenizerFast`.

    Args:
        special_tokens: family tokens (image placeholders, chat markers) added as special tokens.
        vocab_size: target vocabulary size before the special tokens.
        bos_token, eos_token, pad_token, unk_token: the usual roles (added as specials).
        extra_attributes: named special tokens such as ``{"image_token": "<|image_pad|>"}``, which
            v5 processors read from the tokenizer.
    """
    roles = [t for t in (pad_token, eos_token, bos_token, unk_token) if t]
    extra = dict(extra_attributes or {})
    all_special = list(dict.fromkeys([*roles, *special_tokens, *extra.values()]))
    backend = Tokenizer(models.BPE(unk_token=unk_token))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=all_special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos_token,
        eos_token=eos_token,
        pad_token=pad_token,
        unk_token=unk_token,
        extra_special_tokens=extra or None,
    )
    return tokenizer
