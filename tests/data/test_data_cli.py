import argparse
import json

from cooper_lib.data.cli import register


def test_data_synth_writes_a_dataset(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "ds"
    args = parser.parse_args(
        [
            "data",
            "synth",
            "--out",
            str(out),
            "--n",
            "3",
            "--stage",
            "grpo",
            "--size",
            "32",
            "--questions",
            "2",
        ]
    )
    assert args.func(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["stage"], manifest["n"], manifest["config"]["width"]) == ("grpo", 3, 32)
    assert "wrote 3 train scenes" in capsys.readouterr().out
