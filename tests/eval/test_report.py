import pytest
from PIL import Image

from cooper_lib.eval import EvalResult, bar_chart, tool_use, write_report
from cooper_lib.eval.report import PALETTE


def _result(name, scores, tools, output=None):
    """A run on categories a/b: ``scores`` and ``tools`` per item, items alternating a, b."""
    records = [
        {"id": f"i{k}", "category": "ab"[k % 2], "tools": t, "score": {"score": s, "failed": s == 0}}
        for k, (s, t) in enumerate(zip(scores, tools, strict=True))
    ]
    per = {
        c: {"n": 2, "score": 100 * sum(scores[i] for i in range(j, 4, 2)) / 2, "failed": 0}
        for j, c in enumerate("ab")
    }
    metrics = {
        "n": 4,
        "overall": 100 * sum(scores) / 4,
        "extraction_failures": scores.count(0),
        "per_category": per,
    }
    return EvalResult(name, "adaptive", records, metrics, tool_use(records), output=output)


def test_report_compares_runs_side_by_side(tmp_path):
    first = _result(
        "synthetic", [1, 0, 1, 1], [["depth"], [], ["depth", "segmentation"], []], tmp_path / "base.jsonl"
    )
    second = _result("synthetic", [0, 0, 1, 0], [[], [], [], []], tmp_path / "base.jsonl")
    path = write_report([first, second], tmp_path / "report")
    text = path.read_text()
    assert "| base | synthetic | adaptive | 4 | 75.0 | 1 |" in text
    assert "| base-2 | synthetic | adaptive | 4 | 25.0 | 3 |" in text
    assert "| a | 100.0 | 50.0 |" in text and "| b | 50.0 | 0.0 |" in text
    assert "| all | 50.0 | 25.0 | 50.0 | 0.0 | 0.0 | 100.0 |" in text  # depth, seg, text-only per run
    for png in ("scores.png", "tool_use.png"):
        with Image.open(tmp_path / "report" / png) as image:
            assert image.width > 300 and image.height > 100
    named = write_report([first, second], tmp_path / "named", names=["ours", "base"]).read_text()
    assert "| ours | synthetic" in named
    with pytest.raises(ValueError, match="distinct names"):
        write_report([first, second], tmp_path / "x", names=["a", "a"])
    with pytest.raises(ValueError, match="at least one"):
        write_report([], tmp_path / "x")
    assert "circular" not in text


def test_report_names_mmbench_per_row_accuracy(tmp_path):
    run = _result("MMBench", [1, 0, 1, 1], [[], [], [], []], tmp_path / "mmb.jsonl")
    run.metrics.update(overall=50.0, row_accuracy=75.0)
    text = write_report([run], tmp_path / "report").read_text()
    assert "| mmb | MMBench | adaptive | 4 | 50.0 | 1 |" in text
    assert "MMBench's overall is its circular accuracy; per-row accuracy: mmb 75.0 %." in text


def test_bar_chart_draws_lengths_proportional_to_values():
    image = bar_chart(["g"], {"full": [100.0], "half": [50.0]}, title="t", plot_width=200, bar_height=10)
    pixels = image.load()
    row_full, row_half = 24 + 4, 24 + 10 + 4  # the middle of each bar
    x0 = next(x for x in range(image.width) if pixels[x, row_full] == PALETTE[0])
    full = sum(pixels[x, row_full] == PALETTE[0] for x in range(image.width))
    half = sum(pixels[x, row_half] == PALETTE[1] for x in range(x0, image.width))
    assert (full, half) == (200, 100)  # pixels x0 .. x0 + length, the first one under the y axis
    with pytest.raises(ValueError, match="expected 1 values"):
        bar_chart(["g"], {"s": [1.0, 2.0]}, title="t")
