"""cooper-lib: COOPER's auxiliary-modality generation and adaptive interleaved reasoning for any HF MLLM."""

__version__ = "0.1.0"
