"""Op tests on a chosen device: ``COOPER_TEST_DEVICE=cuda`` (as ``benchmarks/gpu_check.sh`` sets)
makes every tensor a test creates without a device land there, so the same tests check the real
Triton kernels on a GPU. Unset, the tests run on CPU (Triton in its interpreter)."""

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _test_device():
    device = os.environ.get("COOPER_TEST_DEVICE")
    if not device:
        yield
        return
    previous = torch.get_default_device()
    torch.set_default_device(device)
    try:
        yield
    finally:
        torch.set_default_device(previous)
