import pytest

from cooper_lib.cli import build_parser, main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("demo", "data", "train", "eval"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--steps", "0"], "--steps: expected a positive int, got 0"),
        (["demo", "--batch-size", "1"], "--batch-size: expected at least 2"),
    ],
)
def test_demo_rejects_bad_flags(argv, message):
    with pytest.raises(SystemExit, match=message):
        main(argv)


def test_demo_flags_parse():
    args = build_parser().parse_args(["demo", "--family", "llava", "--steps", "5", "--out", "x"])
    assert (args.family, args.steps, args.out) == ("llava", 5, "x")


def test_each_command_summary_matches_its_module_parser():
    from cooper_lib.cli import COMMANDS

    full = build_parser()
    (subparsers,) = [a for a in full._actions if a.dest == "command"]
    summaries = {choice.dest: choice.help for choice in subparsers._choices_actions}
    assert summaries == {name: summary for name, (_, summary) in COMMANDS.items()}


def test_help_imports_no_command_module():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from cooper_lib.cli import build_parser\n"
        "build_parser('').format_help()\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'timm', 'cooper_lib.demo') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
