"""Column layouts of the published benchmark TSVs, Q-SpatialBench's prompt files, and writers, shared by
the loader and runner tests."""

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


# Q-SpatialBench's prompt files, byte for byte as in prompt_templates/ of
# github.com/andrewliao11/Q-Spatial-Bench-code (neither ends with a newline).
QSPATIAL_SYSTEM_PROMPT = (
    "You will be provided with a question and a 2D image. The question involves measuring the precise "
    "distance in 3D space through a 2D image. You will answer the question by providing a numeric answer "
    'consisting of a scalar and a distance unit in the format of """\\scalar{scalar} '
    '\\distance_unit{distance unit}""" at the end of your response.'
)
QSPATIAL_TEMPLATE = (
    "Question: {{ question }}\nLet's thinkg step by step and start by finding good reference objects or "
    "object parts in the image."
)


def write_qspatial_prompts(folder, system=QSPATIAL_SYSTEM_PROMPT, template=QSPATIAL_TEMPLATE):
    """Write ``system_prompt.txt`` and ``spatial_prompt_single.txt`` into `folder`; returns `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "system_prompt.txt").write_text(system)
    (folder / "spatial_prompt_single.txt").write_text(template)
    return folder
