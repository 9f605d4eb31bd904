"""Seconds the turn-format and answer parsers take on 128k characters of adversarial text.

Each row is one parser on one pattern repeated to ``--chars`` characters (texts that made the
earlier regular expressions backtrack quadratically). Run:
``PYTHONPATH=src python benchmarks/adversarial_parsing.py [--chars 131072] [--repeat 5]``; each
cell is the fastest of ``--repeat`` calls (the machine's other load only ever adds time).
"""

from __future__ import annotations

import argparse
import time

from cooper_lib.data.answers import AnswerKey, grade
from cooper_lib.data.extraction import extract_choice, extract_number, extract_yes_no, strip_latex
from cooper_lib.data.turns import TurnFormat

PATTERNS = {
    "boxed{": "\\boxed{",
    "<answer>": "<answer>",
    "\\text{ nested": "\\text{",
    "answer + spaces": "answer" + " " * 64,
    "digits,": "1,234,",
    "<think></think>": "<think></think>  ",
    "tool open": "<think></think><depth-estimation>",
    "between 1 and": "between 1 m and ",
    "12' spaces": "12'      ",
    "5'3\" lengths": "5'3\" ",
    "1 m - 2 m ranges": "1 m - 2 m ",
}
NESTED = {  # (opening, closing): the opening repeated, then as many closings
    "nested \\text{}": ("\\text{", "}"),
    "nested \\boxed{}": ("\\boxed{", "}"),
}


def parsers() -> dict[str, object]:
    fmt = TurnFormat.default()
    return {
        "extract_choice": lambda t: extract_choice(t, "ABCD"),
        "extract_yes_no": extract_yes_no,
        "extract_number": extract_number,
        "grade quantity": lambda t: grade(t, AnswerKey(2.0, "quantity", unit="m")),
        "TurnFormat.parse": fmt.parse,
        "is_tool_turn": fmt.is_tool_turn,
        "is_answer_turn": fmt.is_answer_turn,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chars", type=int, default=131072)
    parser.add_argument("--repeat", type=int, default=5, help="cells are the fastest of this many calls")
    args = parser.parse_args()
    names = parsers()
    print(f"| pattern | {' | '.join(names)} |")
    print(f"|---|{'---|' * len(names)}")
    texts = {label: (unit * (args.chars // len(unit) + 1))[: args.chars] for label, unit in PATTERNS.items()}
    for label, (opening, closing) in NESTED.items():
        depth = args.chars // (len(opening) + len(closing))
        texts[label] = f"<answer>{opening * depth}B{closing * depth}</answer>"
    for label, text in texts.items():
        cells = []
        for fn in names.values():
            times = []
            for _ in range(args.repeat):
                strip_latex.cache_clear()  # every call starts cold: no parser reuses earlier work
                start = time.perf_counter()
                fn(text)
                times.append(time.perf_counter() - start)
            cells.append(f"{min(times):.4f}")
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
