"""`cooper-lib data ...` commands: `data synth` writes a synthetic dataset for one stage."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `data synth` to the main parser's subcommands."""
    from cooper_lib.data.synthetic.qa import ANSWER_STYLES
    from cooper_lib.data.synthetic.writer import STAGES

    data = subparsers.add_parser("data", help="make and inspect datasets")
    commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    synth = commands.add_parser(
        "synth",
        help="render a synthetic spatial dataset (images, exact depth/segmentation, questions, traces)",
        description="Render N procedural scenes and write them with the records of one training stage.",
    )
    synth.add_argument("--out", required=True, help="dataset folder to write")
    synth.add_argument("--n", type=int, required=True, help="number of scenes")
    synth.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    synth.add_argument("--stage", choices=STAGES, default="sft", help="records to write (default sft)")
    synth.add_argument(
        "--split",
        choices=("train", "test"),
        default=None,
        help="scene seeds: test scenes are never train scenes (default: test for --stage eval, else train)",
    )
    synth.add_argument("--size", type=int, default=64, help="image width and height in pixels (default 64)")
    synth.add_argument("--max-objects", type=int, default=6, help="most objects per scene, 1-8 (default 6)")
    synth.add_argument(
        "--questions", type=int, default=4, help="questions per scene for sft/grpo/eval (default 4)"
    )
    synth.add_argument(
        "--per-category",
        type=int,
        default=1,
        help="questions drawn per category and scene before --questions caps them, e.g. one "
        "distance question per object (default 1)",
    )
    synth.add_argument(
        "--tool-ratio", type=float, default=0.5, help="share of tool-using SFT traces (default 0.5)"
    )
    synth.add_argument(
        "--answer-style",
        choices=ANSWER_STYLES,
        default="full",
        help="full: reasoned answers, numbers in m or cm; short: the boxed answer alone, numbers "
        "in metres with one decimal; short_text: as short, choice questions answered with the "
        "option's text (default full)",
    )
    synth.add_argument(
        "--categories",
        nargs="+",
        default=None,
        metavar="CATEGORY",
        help="question categories to ask (default all of cooper_lib.data.synthetic.CATEGORIES)",
    )
    synth.add_argument(
        "--answer-types",
        nargs="+",
        type=_answer_types_item,
        default=None,
        metavar="CATEGORY=TYPE[,TYPE]",
        help="per category, the answer types to ask, e.g. relative_depth=yes_no "
        "distance_camera=number,choice (default every form; types: choice, yes_no, integer, number, "
        "quantity, text)",
    )
    synth.add_argument(
        "--depth-display-range",
        nargs=2,
        type=float,
        default=None,
        metavar=("NEAR", "FAR"),
        help="metres the sft traces' depth maps spread over the Spectral colours (default 0.001 20); "
        "train on them a model with the same depth_display_range",
    )
    synth.add_argument(
        "--no-caption-distances",
        dest="caption_distances",
        action="store_false",
        help="caption stage: name the objects nearest first without their distances",
    )
    synth.add_argument(
        "--caption-maps",
        action="store_true",
        help="caption stage: also write, per scene, its depth map and a caption that reads the "
        "distances off it (the map shown where an interleaved trace shows a tool's map)",
    )
    synth.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    synth.set_defaults(func=run_synth)


def _answer_types_item(text: str) -> tuple[str, tuple[str, ...]]:
    """One ``CATEGORY=TYPE[,TYPE]`` of ``--answer-types`` as ``(category, types)``; the names are
    checked by `write_dataset` (`check_answer_types`), which names what it expected."""
    category, sep, types = text.partition("=")
    if not sep or not category or not types:
        raise argparse.ArgumentTypeError(
            f"expected CATEGORY=TYPE[,TYPE], e.g. relative_depth=yes_no, got {text!r}"
        )
    return category, tuple(t for t in types.split(",") if t)


def run_synth(args: argparse.Namespace) -> int:
    """Write the dataset described by the parsed `data synth` arguments; print where it went."""
    from cooper_lib.data.synthetic import SceneConfig, read_manifest, write_dataset

    config = SceneConfig(width=args.size, height=args.size, max_objects=args.max_objects)
    root = write_dataset(
        args.out,
        args.n,
        seed=args.seed,
        stage=args.stage,
        config=config,
        questions_per_scene=args.questions,
        per_category=args.per_category,
        tool_ratio=args.tool_ratio,
        progress=True,
        overwrite=args.overwrite,
        split=args.split,
        answer_style=args.answer_style,
        categories=args.categories,
        answer_types=dict(args.answer_types or ()),
        depth_display_range=args.depth_display_range and tuple(args.depth_display_range),
        caption_distances=args.caption_distances,
        caption_maps=args.caption_maps,
    )
    manifest = read_manifest(root)
    print(
        f"wrote {manifest['n']} {manifest['split']} scenes and {manifest['records']} {manifest['stage']} "
        f"records to {root}"
    )
    return 0
