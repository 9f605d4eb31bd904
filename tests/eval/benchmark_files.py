"""Column layouts of the published benchmark TSVs and a writer, shared by the loader and runner tests."""

import csv

SIBENCH_HEADER = ["index", "question", "answer", "type", "image_path", "input_type", "data_source"]
MMBENCH_HEADER = [
    "index",
    "question",
    "hint",
    "A",
    "B",
    "C",
    "D",
    "answer",
    "category",
    "l2-category",
    "split",
    "image",
]


def write_tsv(path, header, rows):
    """Write a tab-separated table with `header`; returns `path`."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(header)
        writer.writerows(rows)
    return path
