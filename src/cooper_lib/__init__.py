"""cooper-lib: COOPER's auxiliary-modality generation and adaptive interleaved reasoning for any HF MLLM.

The names here are the entry points, in five groups; everything else is imported from its
subpackage (`cooper_lib.heads`, `cooper_lib.modalities`, `cooper_lib.tokenizers`,
`cooper_lib.data.synthetic`, `cooper_lib.training`, `cooper_lib.eval`, ...). See
docs/architecture.md for the layers.
"""

from typing import TYPE_CHECKING

from cooper_lib.lazy import lazy_exports

if TYPE_CHECKING:
    from cooper_lib.attach import add_spatial_heads
    from cooper_lib.backbones import adapter_for, register_adapter
    from cooper_lib.config import SpatialConfig
    from cooper_lib.eval import EvalResult, evaluate, load_benchmark, write_report
    from cooper_lib.loading import load_trained_folder
    from cooper_lib.modalities import get_codec, register_modality
    from cooper_lib.model import SpatialModel
    from cooper_lib.reasoning import InterleavedReasoner, Policy, ReasoningTrace, SamplingConfig
    from cooper_lib.training import InterleavedSFTTrainer, SpatialGRPOTrainer, Stage1Trainer, cpr_reward

__version__ = "0.1.0"

__all__ = [
    # attach and model
    "SpatialConfig",
    "SpatialModel",
    "adapter_for",
    "add_spatial_heads",
    "load_trained_folder",
    "register_adapter",
    # modality registry
    "get_codec",
    "register_modality",
    # reasoning
    "InterleavedReasoner",
    "Policy",
    "ReasoningTrace",
    "SamplingConfig",
    # training entry points (their configs, whose names TRL also uses, come from cooper_lib.training)
    "InterleavedSFTTrainer",
    "SpatialGRPOTrainer",
    "Stage1Trainer",
    "cpr_reward",
    # eval entry points
    "EvalResult",
    "evaluate",
    "load_benchmark",
    "write_report",
]

#: Public name -> the module defining it (None: a submodule); imported on first access.
_EXPORTS = {
    "add_spatial_heads": "cooper_lib.attach",
    "adapter_for": "cooper_lib.backbones",
    "register_adapter": "cooper_lib.backbones",
    "SpatialConfig": "cooper_lib.config",
    "EvalResult": "cooper_lib.eval",
    "evaluate": "cooper_lib.eval",
    "load_benchmark": "cooper_lib.eval",
    "write_report": "cooper_lib.eval",
    "load_trained_folder": "cooper_lib.loading",
    "get_codec": "cooper_lib.modalities",
    "register_modality": "cooper_lib.modalities",
    "SpatialModel": "cooper_lib.model",
    "InterleavedReasoner": "cooper_lib.reasoning",
    "Policy": "cooper_lib.reasoning",
    "ReasoningTrace": "cooper_lib.reasoning",
    "SamplingConfig": "cooper_lib.reasoning",
    "InterleavedSFTTrainer": "cooper_lib.training",
    "SpatialGRPOTrainer": "cooper_lib.training",
    "Stage1Trainer": "cooper_lib.training",
    "cpr_reward": "cooper_lib.training",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
