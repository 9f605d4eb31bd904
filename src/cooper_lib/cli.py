"""`cooper-lib` command line: `demo`, and the subcommands each package registers.

A package that offers a command has a `cli` module with `register(subparsers)`; the parser it adds
sets `func` to the function that runs it. Only the module of the command being run is imported
(they import torch and transformers); the others appear in `--help` by their one-line summary, so
`cooper-lib --help` starts in well under a second.

User errors (`USER_ERRORS`: a bad value or type, a missing or existing file, an unsupported
backbone, a non-finite training loss) print as one ``error: ...`` line on stderr with exit status 2,
like argparse's own usage errors; ``--debug`` (anywhere on the command line) shows the traceback
instead. A hint to pass a keyword (``pass overwrite=True``) is printed as the flag (``pass --overwrite``).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence

#: Subcommand -> (module whose `register(subparsers)` adds it, the summary its parser has), in the
#: order `--help` lists them (tests/test_cli.py checks each summary against its module's parser).
COMMANDS = {
    "demo": ("cooper_lib.demo", "train dense depth/segmentation heads on a tiny backbone (CPU)"),
    "data": ("cooper_lib.data.cli", "make and inspect datasets"),
    "train": ("cooper_lib.training.cli", "train a SpatialModel or CooperModel: stage1, sft or grpo"),
    "eval": ("cooper_lib.eval.cli", "evaluate models on spatial benchmarks and report runs"),
    "experiment": ("cooper_lib.experiments.cli", "run a controlled experiment"),
}
#: Errors that are the user's to fix: printed as one line, not a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    FloatingPointError,
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `cooper-lib` parser; with `command`, only that command's module is imported and the
    others are listed by their summary (`main` passes the command on its command line)."""
    parser = argparse.ArgumentParser(
        prog="cooper-lib",
        description="COOPER's auxiliary-modality generation and interleaved reasoning for any HF MLLM.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, summary) in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(module).register(subparsers)
        else:
            subparsers.add_parser(name, help=summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cooper-lib` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    # the top-level parser has no option taking a value, so the first word is the command
    command = next((arg for arg in argv if not arg.startswith("-")), "")
    parser = build_parser(command)
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except USER_ERRORS as err:
        if debug:
            raise
        print(f"error: {error_line(err)}", file=sys.stderr)
        return 2
    return int(result or 0)


def error_line(err: BaseException) -> str:
    """`err` as the one line the CLI prints: its message on one line, keyword hints as flags."""
    message = " ".join(str(err).split()) or type(err).__name__
    return re.sub(r"\b(\w+)=True\b", lambda m: "--" + m.group(1).replace("_", "-"), message)


def _version() -> str:
    from cooper_lib import __version__

    return f"cooper-lib {__version__}"


if __name__ == "__main__":
    sys.exit(main())
