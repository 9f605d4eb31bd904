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


def test_a_kernel_failure_reaches_the_caller(monkeypatch):
    """`auto` (here forced to pick Triton, as it does on CUDA) and `triton` never fall back to torch."""
    pytest.importorskip("triton", reason="triton is not installed")
    from cooper_lib.ops import flow_matching

    def broken(*args, **kwargs):
        raise RuntimeError("kernel launch failed")

    monkeypatch.setattr(flow_matching, "_run_kernel", broken)
    pred, noise, clean = (torch.randn(2, 3, 4, requires_grad=i == 0) for i in range(3))
    with pytest.raises(RuntimeError, match="kernel launch failed"):
        flow_matching.flow_matching_loss(pred, noise, clean, backend="triton")
    monkeypatch.setattr(flow_matching, "resolve_backend", lambda backend, *tensors: "triton")
    with pytest.raises(RuntimeError, match="kernel launch failed"):
        flow_matching.flow_matching_loss(pred, noise, clean, backend="auto")


class _OnCuda:
    """Stands in for a CUDA tensor: `resolve_backend` reads only these two attributes."""

    is_cuda = True
    device = torch.device("cuda", 0)


def test_env_switch_sends_auto_to_torch_on_cuda(monkeypatch):
    monkeypatch.setattr(dispatch, "HAS_TRITON", True)
    monkeypatch.delenv(dispatch.AUTO_ENV, raising=False)
    assert dispatch.resolve_backend("auto", _OnCuda()) == "triton"
    monkeypatch.setenv(dispatch.AUTO_ENV, "auto")
    assert dispatch.resolve_backend("auto", _OnCuda()) == "triton"
    monkeypatch.setenv(dispatch.AUTO_ENV, "torch")
    assert dispatch.resolve_backend("auto", _OnCuda()) == "torch"
    assert dispatch.resolve_backend("triton", _OnCuda()) == "triton"  # asked by name: unaffected


def test_env_switch_rejects_other_values(monkeypatch):
    monkeypatch.setenv(dispatch.AUTO_ENV, "cuda")
    with pytest.raises(ValueError, match="COOPER_LIB_OPS_BACKEND: expected 'auto' or 'torch', got 'cuda'"):
        dispatch.resolve_backend("auto", torch.zeros(1))
