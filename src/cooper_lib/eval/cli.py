"""`cooper-lib eval run ...` (evaluate a model on a benchmark) and `cooper-lib eval report ...`
(compare finished runs side by side)."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from cooper_lib.eval.runner import DEPTH_MAP_POLICY, POLICIES

OUTSIDE_ROOT_BENCHMARKS = ("cvbench", "qspatial", "sibench")
"""The benchmarks whose tables name image files, confined to --data unless --allow-outside-root."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `eval run` and `eval report` to the main parser's subcommands."""
    from cooper_lib.eval.benchmarks import BENCHMARK_LOADERS

    evaluation = subparsers.add_parser("eval", help="evaluate models on spatial benchmarks and report runs")
    commands = evaluation.add_subparsers(dest="eval_command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="answer a benchmark's questions with interleaved reasoning and score them (resumable)",
        description="Evaluate a model folder (or a tiny test backbone) on a local benchmark copy. "
        "Finished items go to --output as they finish; rerunning the command resumes.",
    )
    run.add_argument("--benchmark", required=True, choices=sorted(BENCHMARK_LOADERS), help="benchmark name")
    run.add_argument(
        "--data",
        type=Path,
        default=None,
        help="benchmark folder or file (synthetic: optional, renders scenes)",
    )
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        type=Path,
        help="model folder written by a cooper-lib trainer, by SpatialModel.save_pretrained (with --backbone), "
        "or a reference-model release folder (BAGEL / COOPER weights, CooperModel.save_pretrained)",
    )
    source.add_argument(
        "--family", help="tiny random backbone family with fresh heads, seeded (for smoke tests)"
    )
    run.add_argument(
        "--backbone",
        default=None,
        help="for a save_pretrained --model folder: the backbone's hub id, local folder or tiny:<family>",
    )
    run.add_argument(
        "--policy",
        choices=POLICIES,
        default=None,
        help="tool policy (default adaptive; nyuv2 scores the depth head's maps and takes none)",
    )
    run.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSONL cache (default ./<benchmark>-<policy>-<model>.jsonl, <model> the --model folder's "
        "name and a digest of its path, or tiny-<family>)",
    )
    run.add_argument("--limit", type=int, default=None, help="evaluate only the first N items")
    run.add_argument("--batch-size", type=int, default=8, help="items per batch (default 8)")
    run.add_argument("--max-new-tokens", type=int, default=512, help="tokens per turn (default 512)")
    run.add_argument(
        "--n", type=int, default=16, help="synthetic without --data: scenes to render (default 16)"
    )
    run.add_argument("--seed", type=int, default=0, help="synthetic without --data: dataset seed (default 0)")
    run.add_argument("--json", type=Path, default=None, help="also write the metrics and tool use as JSON")
    run.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="read image paths that lead out of the --data folder (`..`, absolute paths); "
        f"for {', '.join(OUTSIDE_ROOT_BENCHMARKS)}",
    )
    run.set_defaults(func=run_eval)
    report = commands.add_parser(
        "report",
        help="compare finished runs: markdown table and PNG bar charts",
        description="Write report.md, scores.png and tool_use.png comparing the given run caches.",
    )
    report.add_argument("runs", nargs="+", type=Path, help="JSONL caches written by `eval run`")
    report.add_argument("--out", type=Path, required=True, help="folder for the report")
    report.set_defaults(func=run_report)


def _cooper_reasoner(args: argparse.Namespace, policy: str | None):
    """A `CooperReasoner` on the reference-model release folder ``--model`` (and its tokenizer)."""
    from cooper_lib.models.cooper import CooperModel, load_tokenizer
    from cooper_lib.reasoning.cooper import CooperReasoner

    if policy is None:
        raise ValueError(
            f"--benchmark {args.benchmark}: scores the depth maps of a SpatialModel's heads; evaluate the "
            "reference model (a release folder) on a question benchmark"
        )
    model = CooperModel.from_pretrained(args.model).eval()
    return CooperReasoner(
        model, load_tokenizer(args.model), policy=policy, max_new_tokens_per_turn=args.max_new_tokens
    )


def _model(args: argparse.Namespace):
    """The SpatialModel: a trained folder rebuilt on its recorded backbone, or a tiny one."""
    if args.model is not None:
        from cooper_lib.config import CONFIG_NAME
        from cooper_lib.loading import TRAINABLE_NAME, load_backbone, load_trained_folder
        from cooper_lib.model import SpatialModel

        if not args.model.is_dir():
            raise FileNotFoundError(f"--model: no model folder at {args.model}")
        if (args.model / TRAINABLE_NAME).is_file():
            return load_trained_folder(args.model)
        if not (args.model / CONFIG_NAME).is_file():
            raise FileNotFoundError(
                f"--model: {args.model} holds neither {TRAINABLE_NAME} (a trainer's folder) nor {CONFIG_NAME} "
                "(a save_pretrained folder)"
            )
        if args.backbone is None:
            raise ValueError(
                f"--backbone is required: {args.model} is a save_pretrained folder of heads only"
            )
        backbone, processor = load_backbone(args.backbone)
        return SpatialModel.from_pretrained(backbone, args.model, processor)
    import torch

    from cooper_lib.attach import add_spatial_heads
    from cooper_lib.backbones.tiny import build_tiny_backbone

    backbone, processor = build_tiny_backbone(args.family)
    torch.manual_seed(0)  # the same fresh heads every run, so a rerun resumes its own cache
    return add_spatial_heads(backbone, processor)


def model_label(args: argparse.Namespace) -> str:
    """The model part of the default output name: ``tiny-<family>``, or the --model folder's name
    and the first 8 hex digits of the SHA-1 of its resolved path (two runs' ``final`` folders differ)."""
    if args.model is None:
        return f"tiny-{args.family}"
    folder = args.model.resolve()
    return f"{folder.name}-{hashlib.sha1(str(folder).encode()).hexdigest()[:8]}"


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate, print the per-category table, and say where the predictions went."""
    from cooper_lib.eval.benchmarks import load_benchmark
    from cooper_lib.eval.runner import evaluate

    if args.data is None and args.benchmark != "synthetic":
        raise ValueError(f"--data is required for --benchmark {args.benchmark}")
    kwargs = {"n": args.n, "seed": args.seed} if args.benchmark == "synthetic" and args.data is None else {}
    if args.allow_outside_root:
        if args.benchmark not in OUTSIDE_ROOT_BENCHMARKS:
            raise ValueError(
                f"--allow-outside-root: applies to --benchmark {', '.join(OUTSIDE_ROOT_BENCHMARKS)} "
                f"(their tables name image files), got {args.benchmark}"
            )
        kwargs["allow_outside_root"] = True
    benchmark = load_benchmark(args.benchmark, args.data, **kwargs)
    policy = args.policy or (None if args.benchmark == "nyuv2" else "adaptive")
    output = args.output or Path(f"{args.benchmark}-{policy or DEPTH_MAP_POLICY}-{model_label(args)}.jsonl")
    reference = args.model is not None and (args.model / "llm_config.json").is_file()  # a release folder
    result = evaluate(
        _cooper_reasoner(args, policy) if reference else _model(args),
        benchmark,
        output=output,
        batch_size=args.batch_size,
        policy=policy,
        limit=args.limit,
        max_new_tokens=None if reference else args.max_new_tokens,
    )
    print(result.table())
    print(f"\n{result.computed} items done now, predictions in {output}")
    if args.json is not None:
        summary = {"benchmark": result.benchmark, "policy": result.policy, "metrics": result.metrics}
        args.json.write_text(json.dumps({**summary, "tool_use": result.tool_use}, indent=2) + "\n")
    return 0


def run_report(args: argparse.Namespace) -> int:
    """Write the comparison report of the given run caches."""
    from cooper_lib.eval.report import write_report
    from cooper_lib.eval.runner import load_result

    path = write_report([load_result(run) for run in args.runs], args.out)
    print(f"wrote {path}")
    return 0
