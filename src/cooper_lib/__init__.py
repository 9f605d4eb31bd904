"""cooper-lib: COOPER's auxiliary-modality generation and adaptive interleaved reasoning for any HF MLLM.

The names here are the entry points, in five groups; everything else is imported from its
subpackage (`cooper_lib.heads`, `cooper_lib.modalities`, `cooper_lib.tokenizers`,
`cooper_lib.data.synthetic`, `cooper_lib.training`, `cooper_lib.eval`, ...). See
docs/architecture.md for the layers.
"""

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
