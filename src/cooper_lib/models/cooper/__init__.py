"""The reference COOPER assembly: BAGEL-7B-MoT's architecture with its checkpoint layout.

`CooperModel` (Qwen2 decoder with two experts per layer, SigLIP, connector, time embedder, FLUX
autoencoder) over packed sequences (`SequenceBuilder`), COOPER's in-sequence flow-matching sampler
(`generate_latent`, `generate_image`) and stage-1 rows and loss (`stage1_sequence`, `CooperModel.stage1_loss`), cached text
generation (`generate_text`), and loading of
official release folders (`CooperModel.from_pretrained`). `reasoning.cooper.CooperReasoner` runs
COOPER's interleaved reasoning on it and `training.cooper` its stage-1, SFT and GRPO steps. See
docs/reference-cooper.md.
"""

from cooper_lib.models.cooper.autoencoder import Autoencoder, autoencoder_config_from_shapes
from cooper_lib.models.cooper.checkpoint import read_release, read_weights, save_release
from cooper_lib.models.cooper.config import AutoencoderConfig, CooperConfig, LLMConfig, ViTConfig
from cooper_lib.models.cooper.modeling import CooperModel, PrefixCache
from cooper_lib.models.cooper.packing import Image, Item, Latent, PackedSequence, SequenceBuilder, Text
from cooper_lib.models.cooper.presets import PRESETS, preset
from cooper_lib.models.cooper.sampler import (
    EVAL_SAMPLING,
    ROLLOUT_SAMPLING,
    CooperSampling,
    combine_guidance,
    generate_image,
    generate_latent,
    guidance_contexts,
)
from cooper_lib.models.cooper.stage1 import NO_DROPOUT, ConditionDropout, Stage1Sample, stage1_sequence
from cooper_lib.models.cooper.text import TextContext, generate_text
from cooper_lib.models.cooper.tokenizer import CharTokenizer, load_tokenizer, save_tokenizer

__all__ = [
    "EVAL_SAMPLING",
    "NO_DROPOUT",
    "PRESETS",
    "ROLLOUT_SAMPLING",
    "Autoencoder",
    "CharTokenizer",
    "AutoencoderConfig",
    "ConditionDropout",
    "CooperConfig",
    "CooperModel",
    "CooperSampling",
    "Image",
    "Item",
    "LLMConfig",
    "Latent",
    "PackedSequence",
    "PrefixCache",
    "SequenceBuilder",
    "Stage1Sample",
    "Text",
    "TextContext",
    "ViTConfig",
    "autoencoder_config_from_shapes",
    "combine_guidance",
    "generate_image",
    "generate_latent",
    "generate_text",
    "guidance_contexts",
    "load_tokenizer",
    "preset",
    "read_release",
    "read_weights",
    "save_release",
    "save_tokenizer",
    "stage1_sequence",
]
