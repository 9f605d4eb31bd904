"""`cooper-lib` command line: `demo`, and the subcommands each package registers.

A package that offers a command has a `cli` module with `register(subparsers)`; the parser it adds
sets `func` to the function that runs it. Those modules are imported lazily, when the CLI starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Modules whose `register(subparsers)` adds subcommands, in the order `--help` lists them.
COMMAND_MODULES = ("cooper_lib.demo", "cooper_lib.data.cli", "cooper_lib.training.cli", "cooper_lib.eval.cli",
                   "cooper_lib.experiments.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cooper-lib",
        description="COOPER's auxiliary-modality generation and interleaved reasoning for any HF MLLM.",
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cooper-lib` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


def _version() -> str:
    from cooper_lib import __version__

    return f"cooper-lib {__version__}"


if __name__ == "__main__":
    sys.exit(main())
