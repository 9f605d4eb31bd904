"""Backend resolution rules."""

import pytest
import torch

from cooper_lib.ops import dispatch


def test_auto_on_cpu_is_torch():
    assert dispatch.resolve_backend("auto", torch.zeros(1), None) == "torch"


def test_torch_is_always_torch():
    assert dispatch.resolve_backend("torch", torch.zeros(1)) == "torch"


def test_unknown_backend_raises():
    with pytest.raises(ValueError, match="backend must be one of"):
        dispatch.resolve_backend("cuda", torch.zeros(1))


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    pytest.importorskip("triton", reason="triton is not installed")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert dispatch.resolve_backend("triton", torch.zeros(1)) == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        dispatch.resolve_backend("triton", torch.zeros(1))


def test_triton_without_triton_raises(monkeypatch):
    monkeypatch.setattr(dispatch, "HAS_TRITON", False)
    with pytest.raises(ImportError, match="triton"):
        dispatch.resolve_backend("triton", torch.zeros(1))
    assert dispatch.resolve_backend("auto", torch.zeros(1)) == "torch"
