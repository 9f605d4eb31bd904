"""Answer balance of the synthetic questions: per category, the share of the most common answer.

Draws questions over `--n` scenes exactly as ``write_dataset(.., stage="eval")`` does (one
`AnswerBalance` across the dataset, ``questions_per_scene`` per scene) and prints, for the yes/no
and count answers of each category, how many there are, the most common answer and its share, and
the answers seen. ``--no-balance`` draws each scene on its own (no dataset-wide balance).

Examples::

    python benchmarks/answer_balance.py --n 300
    python benchmarks/answer_balance.py --n 300 --no-balance
"""

from __future__ import annotations

import argparse
import random
from collections import Counter, defaultdict

from cooper_lib.data.synthetic import SceneConfig, iter_scenes, make_qa


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="scenes (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--questions", type=int, default=4, help="questions per scene (default 4)")
    parser.add_argument("--no-balance", action="store_true", help="no dataset-wide balance")
    args = parser.parse_args()
    try:
        from cooper_lib.data.synthetic.qa import AnswerBalance
    except ImportError:  # a version without dataset-wide balance
        AnswerBalance = None  # noqa: N806
    balance = None if args.no_balance or AnswerBalance is None else AnswerBalance()
    answers: dict[tuple[str, str], Counter] = defaultdict(Counter)
    config = SceneConfig(width=args.size, height=args.size)
    for scene in iter_scenes(args.n, args.seed, config):
        rng = random.Random(f"qa-{scene.seed}")
        extra = {} if balance is None else {"balance": balance}
        for q in make_qa(scene, rng, max_questions=args.questions, **extra):
            if q.answer_type in ("yes_no", "integer"):
                answers[(q.category, q.answer_type)][q.answer] += 1
    print(f"{args.n} scenes, {args.questions} questions each, balance {'off' if balance is None else 'on'}\n")
    print("| category | type | n | most common | share | answers |")
    print("| --- | --- | ---: | --- | ---: | --- |")
    for (category, kind), counts in sorted(answers.items()):
        total = sum(counts.values())
        top, k = counts.most_common(1)[0]
        spread = ", ".join(f"{a}: {c}" for a, c in sorted(counts.items()))
        print(f"| {category} | {kind} | {total} | {top} | {k / total:.0%} | {spread} |")


if __name__ == "__main__":
    main()
