"""The usage example of docs/reference-cooper.md runs (tiny preset, character tokenizer)."""

from pathlib import Path

from cooper_tiny import CharTokenizer, tiny_model

PAGE = Path(__file__).resolve().parents[3] / "docs" / "reference-cooper.md"


def _example() -> str:
    section = PAGE.read_text().split("## Running it through the library", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```python\n")[1:]
    assert len(blocks) == 2, "expected the loading block and the usage block"
    return blocks[1].split("```", 1)[0]


def test_usage_example_runs(capsys):
    exec(compile(_example(), str(PAGE), "exec"), {"model": tiny_model(), "tokenizer": CharTokenizer()})
    out = capsys.readouterr().out
    assert "['text', 'tool_call', 'map', 'image', 'text', 'tool_call', 'map', 'image', 'text']" in out
    assert "synthetic" in out and "text_only" in out  # the evaluation table
    sft = float(out.split("SFT loss ")[1].split()[0])
    grpo = float(out.split("GRPO loss ")[1].split()[0])
    assert sft > 0 and abs(grpo) < 1e3
