"""Peak resident memory of a block of code on Linux, measured by the kernel (not estimated).

Writing "5" to /proc/self/clear_refs resets the process's high-water mark (VmHWM); reading VmHWM
after the block gives the true peak RSS while it ran. CPU tensors live in ordinary process memory,
so this is the honest CPU counterpart of `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import gc
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line; peak-memory measurement needs Linux")


class PeakRSS:
    """`with PeakRSS() as peak: ...` then `peak.delta_mib`: peak RSS during the block minus RSS at entry."""

    def __enter__(self) -> PeakRSS:
        gc.collect()
        _CLEAR_REFS.write_text("5")
        self.start_kib = _status_kib("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak_kib = _status_kib("VmHWM")

    @property
    def delta_mib(self) -> float:
        return (self.peak_kib - self.start_kib) / 1024
