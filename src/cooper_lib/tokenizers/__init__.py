"""Auxiliary-modality tokenizers: pseudo-images <-> token sequences a generation head produces.

``PatchTokenizer`` gives continuous tokens (pixel patches, or patches of a user autoencoder's
latent, COOPER-style); ``VQTokenizer`` gives discrete codes from a small trainable VQ-VAE.
"""

from cooper_lib.tokenizers.factory import TOKENIZER_TYPES, build_tokenizer, load_tokenizer
from cooper_lib.tokenizers.patch import PatchTokenizer
from cooper_lib.tokenizers.quantizer import QuantizerOutput, VectorQuantizer
from cooper_lib.tokenizers.train_vq import VQTrainResult, train_vq_tokenizer
from cooper_lib.tokenizers.vq import VQConfig, VQOutput, VQTokenizer

__all__ = [
    "TOKENIZER_TYPES",
    "PatchTokenizer",
    "QuantizerOutput",
    "VQConfig",
    "VQOutput",
    "VQTokenizer",
    "VQTrainResult",
    "VectorQuantizer",
    "build_tokenizer",
    "load_tokenizer",
    "train_vq_tokenizer",
]
