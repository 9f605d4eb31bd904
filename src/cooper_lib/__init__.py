"""cooper-lib: COOPER's auxiliary-modality generation and adaptive interleaved reasoning for any HF MLLM."""

from cooper_lib.attach import add_spatial_heads
from cooper_lib.backbones import BackboneAdapter, adapter_for, register_adapter, supported_families
from cooper_lib.config import ModalitySpec, SpatialConfig
from cooper_lib.data.synthetic import (
    SEMANTIC_CLASSES,
    SceneConfig,
    SpatialQuestion,
    SpatialScene,
    load_dataset,
    make_qa,
    make_traces,
    render_scene,
    render_scenes,
    write_dataset,
)
from cooper_lib.eval import EvalResult, evaluate, write_report
from cooper_lib.eval.benchmarks import Benchmark, BenchmarkItem, load_benchmark
from cooper_lib.heads import DenseHead, DiscreteHead, FlowHead
from cooper_lib.modalities import (
    DepthCodec,
    ModalityCodec,
    NormalsCodec,
    SegmentationCodec,
    get_codec,
    make_grid,
    register_modality,
    to_pil,
)
from cooper_lib.model import SpatialModel, SpatialOutput
from cooper_lib.reasoning import InterleavedReasoner, Policy, ReasoningTrace, SamplingConfig, TurnFormat
from cooper_lib.tokenizers import PatchTokenizer, VQConfig, VQTokenizer, train_vq_tokenizer
from cooper_lib.training import GRPOTrainer, InterleavedSFTTrainer, Stage1Trainer, cpr_reward

__version__ = "0.1.0"

__all__ = [
    "DiscreteHead",
    "FlowHead",
    "InterleavedReasoner",
    "Policy",
    "ReasoningTrace",
    "SamplingConfig",
    "TurnFormat",
    "EvalResult",
    "evaluate",
    "write_report",
    "DepthCodec",
    "ModalityCodec",
    "NormalsCodec",
    "PatchTokenizer",
    "SegmentationCodec",
    "VQConfig",
    "VQTokenizer",
    "get_codec",
    "make_grid",
    "register_modality",
    "to_pil",
    "train_vq_tokenizer",
    "SEMANTIC_CLASSES",
    "BackboneAdapter",
    "Benchmark",
    "BenchmarkItem",
    "GRPOTrainer",
    "InterleavedSFTTrainer",
    "SceneConfig",
    "SpatialQuestion",
    "SpatialScene",
    "Stage1Trainer",
    "cpr_reward",
    "load_benchmark",
    "load_dataset",
    "make_qa",
    "make_traces",
    "render_scene",
    "render_scenes",
    "write_dataset",
    "DenseHead",
    "ModalitySpec",
    "SpatialConfig",
    "SpatialModel",
    "SpatialOutput",
    "adapter_for",
    "add_spatial_heads",
    "register_adapter",
    "supported_families",
]
