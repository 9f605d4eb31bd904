"""Start-up time of `import cooper_lib` and `cooper-lib --help`, against `import torch, transformers`.

Each command runs `--runs` times in a fresh Python process; the table gives the best (least
disturbed by other jobs) and the median wall time, and each row's ratio to its reference.
Targets (issue 15): `import cooper_lib` at most 1.3x `import torch, transformers`;
`cooper-lib --help` under 2 s over Python's own start.

    python benchmarks/startup.py --runs 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

#: (label, python -c code, reference label or None).
CASES = (
    ("python (no imports)", "pass", None),
    ("import torch, transformers", "import torch, transformers", None),
    ("import cooper_lib", "import cooper_lib", "import torch, transformers"),
    (
        "from cooper_lib import SpatialModel",
        "from cooper_lib import SpatialModel",
        "import torch, transformers",
    ),
    (
        "from cooper_lib import add_spatial_heads, Stage1Trainer",
        "from cooper_lib import add_spatial_heads, Stage1Trainer",
        "import torch, transformers",
    ),
    (
        "cooper-lib --help",
        "import sys; from cooper_lib.cli import main; sys.argv[1:] = ['--help']; main()",
        "python (no imports)",
    ),
    (
        "cooper-lib train --help",
        "import sys; from cooper_lib.cli import main; main(['train', '--help'])",
        "python (no imports)",
    ),
)


def wall_times(code: str, runs: int) -> list[float]:
    """Wall seconds of `python -c code` in `runs` fresh processes (SystemExit from --help is fine)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=False, stdout=subprocess.DEVNULL, env=os.environ)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command (default 5)")
    args = parser.parse_args()
    best: dict[str, float] = {}
    print(f"python {sys.version.split()[0]}, {args.runs} runs each, load average {os.getloadavg()[0]:.1f}\n")
    print("| command | best s | median s | vs reference |")
    print("| --- | --- | --- | --- |")
    for label, code, reference in CASES:
        times = wall_times(code, args.runs)
        best[label] = min(times)
        if reference is None:
            versus = ""
        elif reference == "python (no imports)":
            versus = f"+{best[label] - best[reference]:.2f} s over `python`"
        else:
            versus = f"{best[label] / best[reference]:.2f}x `{reference}`"
        print(f"| `{label}` | {best[label]:.2f} | {statistics.median(times):.2f} | {versus} |", flush=True)


if __name__ == "__main__":
    main()
