"""`cooper-lib experiment table1`: the miniature of COOPER's Table 1 (`run_table1`)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cooper_lib.experiments.table1 import Table1Config

#: `Table1Config` presets the command runs (each is the classmethod of that name).
PRESETS = ("full", "quick", "tokens64", "cooper_data")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``experiment`` and its ``table1`` subcommand."""
    from cooper_lib.experiments.table1.config import Table1Config
    from cooper_lib.training.config import config_arguments

    parser = subparsers.add_parser("experiment", help="run a controlled experiment")
    commands = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    table1 = commands.add_parser(
        "table1",
        help="COOPER's Table 1 in miniature on the synthetic world (resumable)",
        description=(
            "COOPER's Table 1 in miniature on the synthetic world (resumable). The settings are "
            "the preset's, then --config's, then those of the Table1Config flags given (the last "
            "wins; the defaults shown are the full preset's). A run folder's config.json is a "
            "--config: `--config OUT/config.json --out OUT` resumes it whatever made it."
        ),
    )
    table1.add_argument(
        "--seeds", type=int, default=None, help="number of seeds (default 3; 1 with the quick preset)"
    )
    table1.add_argument(
        "--seed-ids",
        type=int,
        nargs="+",
        default=None,
        metavar="SEED",
        help="the seeds themselves instead of --seeds' 0, 1, ...: `--seed-ids 2 3` adds seeds 2 and 3 to a run "
        "folder, or trains them on a second machine (the report covers the seeds of the command)",
    )
    table1.add_argument(
        "--preset",
        choices=PRESETS,
        default=None,
        help="Table1Config's preset: full (default), quick (the small CPU run), tokens64 (64 visual tokens, "
        "4,000 supervised steps; for a GPU) or cooper_data (tokens64 on COOPER's shape of data: questions on "
        "1,000 scenes, stage 1 on the maps of 4,000, 7,000 supervised steps)",
    )
    table1.add_argument("--quick", action="store_true", help="the same as --preset quick")
    table1.add_argument("--out", default="table1", help="experiment folder (default ./table1)")
    table1.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available"
    )
    table1.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="processes trained at once: each seed's base model, then each seed's arms (default: one per "
        "CPU core; 1: all in this process)",
    )
    table1.add_argument("--arms", nargs="+", default=None, help="a subset of the arms (default all)")
    table1.add_argument("--config", type=Path, default=None, help="YAML or JSON file of Table1Config fields")
    table1.add_argument(
        "--print-config", action="store_true", help="print the resolved settings as YAML and exit"
    )
    config_arguments(table1, Table1Config)
    table1.set_defaults(func=run)


def resolve_config(args: argparse.Namespace) -> tuple[str, Table1Config]:
    """The preset's name and the `Table1Config` of the preset, ``--config`` and the field flags."""
    from cooper_lib.experiments.table1 import Table1Config
    from cooper_lib.training.config import apply_overrides, read_config_file

    if args.quick and args.preset not in (None, "quick"):
        raise SystemExit(f"--quick is --preset quick; got --preset {args.preset} as well")
    preset = "quick" if args.quick else (args.preset or "full")
    data = getattr(Table1Config, preset)().to_dict()
    if args.config is not None:
        data.update(read_config_file(args.config))
    names = {f.name for f in fields(Table1Config)}
    flags = {k: v for k, v in vars(args).items() if k in names}
    return preset, Table1Config.from_dict(apply_overrides(data, flags))


def run(args: argparse.Namespace) -> int:
    """Run `run_table1` with the settings the flags name (or print them) and print the report's path."""
    from cooper_lib.experiments.table1 import run_table1

    if args.seeds is not None and args.seed_ids is not None:
        raise SystemExit(
            f"--seed-ids names the seeds, --seeds counts them; got both ({args.seed_ids}, {args.seeds})"
        )
    preset, config = resolve_config(args)
    if args.print_config:
        import yaml

        sys.stdout.write(yaml.safe_dump(config.to_dict(), sort_keys=False))
        return 0
    if args.seed_ids is not None:
        seeds: int | list[int] = args.seed_ids
    else:
        seeds = args.seeds if args.seeds is not None else (1 if preset == "quick" else 3)
    report = run_table1(
        args.out, seeds=seeds, config=config, arms=args.arms, device=args.device, jobs=args.jobs
    )
    print(f"report: {report}")
    return 0
