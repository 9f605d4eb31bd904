"""Test-wide settings: offline hub, Triton interpreter, deterministic seeds.

The environment variables are set here, at import time of the conftest, so they are in place
before any test module imports transformers, huggingface_hub or triton.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRITON_INTERPRET", "1")  # benchmarks/gpu_check.sh sets 0 to run the real kernels
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tests run as two xdist workers on two cores: one torch thread each avoids OpenMP threads
# spin-waiting on each other, which made tiny-model steps tens of times slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
