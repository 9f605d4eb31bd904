"""Backend choice for the fused ops: Triton kernels or the PyTorch implementation.

One rule for every op: ``"auto"`` picks Triton when every tensor is on a CUDA device and triton
imports, otherwise PyTorch. ``"triton"`` on CPU tensors runs the kernels in Triton's interpreter
and is allowed only when ``TRITON_INTERPRET=1`` (that is how the tests exercise the kernels without
a GPU). A Triton failure is never caught here: the caller sees it, there is no silent fallback.
``COOPER_LIB_OPS_BACKEND=torch`` makes every ``"auto"`` pick PyTorch (on CUDA too): the switch for
a run the kernels fail in, without editing the code that calls the ops.
"""

from __future__ import annotations

import os
from typing import Literal

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # triton is an optional dependency (the `triton` extra)
    triton = None
    tl = None

__all__ = [
    "AUTO_ENV",
    "BACKENDS",
    "Backend",
    "HAS_TRITON",
    "interpreter_on",
    "resolve_backend",
    "tl",
    "triton",
]

Backend = Literal["auto", "triton", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "triton", "torch")
HAS_TRITON: bool = triton is not None
AUTO_ENV = "COOPER_LIB_OPS_BACKEND"
"""Environment variable read by ``"auto"``: ``auto`` (or unset) as documented, ``torch`` forces PyTorch."""


def interpreter_on() -> bool:
    """Whether ``TRITON_INTERPRET=1`` (Triton kernels run in the CPU interpreter)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(backend: str, *tensors: torch.Tensor | None) -> Literal["triton", "torch"]:
    """Return the backend an op runs on for these tensors (``None`` entries are skipped).

    Raises:
        ValueError: ``backend`` is not one of ``BACKENDS``, ``"triton"`` was asked for CPU
            tensors without ``TRITON_INTERPRET=1``, or `AUTO_ENV` holds another value than
            ``auto`` / ``torch``.
        ImportError: ``"triton"`` was asked for and triton is not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    present = [t for t in tensors if t is not None]
    on_cuda = bool(present) and all(t.is_cuda for t in present)
    if backend == "torch":
        return "torch"
    if backend == "auto":
        auto = os.environ.get(AUTO_ENV, "auto")
        if auto not in ("auto", "torch"):
            raise ValueError(f"{AUTO_ENV}: expected 'auto' or 'torch', got {auto!r}")
        return "triton" if HAS_TRITON and on_cuda and auto == "auto" else "torch"
    if not HAS_TRITON:
        raise ImportError("backend='triton' needs the triton package (pip install 'cooper-lib[triton]')")
    if not on_cuda and not interpreter_on():
        devices = sorted({str(t.device) for t in present})
        raise ValueError(
            "backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before cooper_lib.ops is "
            f"imported to run the kernels in the interpreter; got tensors on {devices}"
        )
    return "triton"
