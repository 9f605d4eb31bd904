"""Experiment tracking through accelerate's trackers (``run.report_to``), and sample logging.

``run.report_to`` mirrors transformers' ``TrainingArguments.report_to``: ``"none"`` (the default,
as in transformers 5), one of `TRACKERS`, a list of them, or ``"all"`` (every one of them that is
installed). The trainer builds its `Accelerator` with ``log_with=`` those names and
``project_dir=run.output_dir`` (TensorBoard writes under ``output_dir/tb/<run.project>``), starts
them with the flat config as hyperparameters (`flat_config`), logs its metrics with
``Accelerator.log`` and finishes them when the run completes. ``log.jsonl`` is written either way.

Samples: at evaluations (and, in GRPO, at logging steps) a trainer logs ``run.log_samples``
`Sample` s, e.g. a reasoning trace with its generated maps, or a stage-1 input / target /
prediction grid. `log_samples` always writes them under ``output_dir/samples/step-N/`` (PNG, text,
and an HTML page per trace) and sends them to each tracker through its image API: TensorBoard's
``add_image`` / ``add_text``, W&B's ``wandb.Image``, MLflow's artifacts, and ``log_images`` /
``log`` of any other `accelerate.tracking.GeneralTracker` that defines them.

accelerate is imported only when a trainer runs, never at ``import cooper_lib``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

#: Trackers ``run.report_to`` names (accelerate's tracker names, as in transformers' ``report_to``).
TRACKERS = ("tensorboard", "wandb", "mlflow")
#: The package each tracker needs (``pip install`` name).
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
#: Modules any of which makes a tracker available (accelerate's rule: tensorboardX also serves).
_MODULES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}
_ACCEPTED = "none, all, " + ", ".join(TRACKERS) + " or a list of them"


def report_to_names(value: str | Sequence[str]) -> list[str]:
    """The tracker names ``run.report_to`` asks for ("none" -> [], "all" -> every one in `TRACKERS`,
    installed or not); ValueError naming the accepted values on anything else."""
    names = [value] if isinstance(value, str) else list(value)
    if any(not isinstance(n, str) for n in names):
        raise TypeError(f"run.report_to: expected a string or a list of strings, got {value!r}")
    if names in (["none"], []):
        return []
    if names == ["all"]:
        return list(TRACKERS)
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ValueError(f"run.report_to: expected {_ACCEPTED}, got {unknown[0]!r} in {value!r}")
    return list(dict.fromkeys(names))


def resolve_report_to(value: str | Sequence[str]) -> list[str]:
    """The trackers to start: `report_to_names`, with ``"all"`` narrowed to the installed ones; a
    tracker asked for by name whose package is missing is a ValueError naming ``run.report_to`` and
    the package to install."""
    names = report_to_names(value)
    if ([value] if isinstance(value, str) else list(value)) == ["all"]:
        return [n for n in names if _installed(n)]
    for name in names:
        if not _installed(name):
            raise ValueError(
                f"run.report_to: {name!r} needs the {TRACKER_PACKAGES[name]} package, which is not "
                f"installed (pip install {TRACKER_PACKAGES[name]}), or set run.report_to to none"
            )
    return names


def _installed(name: str) -> bool:
    return any(importlib.util.find_spec(module) is not None for module in _MODULES[name])


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str | None]:
    """A config mapping as flat ``section.key`` hyperparameters of the types trackers store (bool,
    int, float, str, None); lists and mappings inside a field become JSON strings."""
    out: dict[str, bool | int | float | str | None] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not prefix:
            out.update(flat_config(value, f"{name}."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value)
    return out


@dataclass
class Sample:
    """One logged sample: a name, its text, and pictures.

    Attributes:
        name: a file-safe name, unique within a step (``rollout-0``, ``eval-1``).
        text: the sample's text (a trace's question, turns and answer; a record's id).
        images: picture name -> image (a trace storyboard, each generated map, a map grid).
        trace: the `ReasoningTrace` it shows, if any (written as an HTML page too).
    """

    name: str
    text: str
    images: dict[str, Image.Image] = field(default_factory=dict)
    trace: Any = None


def trace_sample(name: str, trace: Any, note: str = "") -> Sample:
    """A `Sample` of a `ReasoningTrace`: its text (question, each turn, answer, and `note`, e.g.
    the reward), its storyboard (`ReasoningTrace.to_image`) and every map inserted into it (the
    pseudo-image the model was shown, ``map-<k>-<modality>``)."""
    parts = [f"Q: {trace.question}"]
    for step in trace.steps:
        if step.kind == "text":
            parts.append(step.text)
        elif step.kind == "image" and step.image is not None:
            parts.append(f"[{step.modality} map]")
    answer = trace.answer if trace.answer is not None else trace.raw_answer
    parts.append(f"A: {answer} (stopped by {trace.stop_reason})")
    if note:
        parts.append(note)
    images = {"trace": trace.to_image()}
    maps = [s for s in trace.steps if s.kind == "image" and s.image is not None]
    for k, step in enumerate(maps):
        images[f"map-{k}-{step.modality}"] = step.image
    return Sample(name, "\n\n".join(parts), images, trace)


def sft_prompt(record: Any) -> tuple[Image.Image, str, str | None] | None:
    """What an SFT record asks, for a greedy trace of it: its first image, the user text before
    its first supervised turn (the question), and its system text (None when it has none); None
    for a record with no image or no such text."""
    from cooper_lib.images import to_pil

    roles = record.roles()
    first = next((i for i, item in enumerate(record.items) if item.need_loss), len(record.items))
    images = [i for i, item in enumerate(record.items[:first]) if item.type == "image"]
    question = "\n".join(
        item.value
        for item, role in zip(record.items[:first], roles, strict=False)
        if item.type == "text" and role == "user"
    ).strip()
    if not images or not question:
        return None
    image = to_pil(record.items[images[0]].value, f"record {record.id}: image", base_dir=record.base_dir)
    system = [item.value for item, role in zip(record.items, roles, strict=True) if role == "system"]
    return image, question, ("\n".join(system) if system else None)


def map_grid_sample(name: str, record: Any, target: Any, prediction: Any, config: Any) -> Sample:
    """A `Sample` of a stage-1 record: one input / target / prediction grid
    (`cooper_lib.modalities.make_grid`: depth over the maps' own range with a colour bar,
    segmentation with a legend), drawn with the model config's display codec."""
    from cooper_lib.modalities import make_grid

    modality = record.modality
    row = [(record.load_image(), target.detach().cpu(), prediction.detach().cpu())]
    if modality == "depth":
        grid = make_grid(row, "depth")
    else:
        grid = make_grid(row, config.display_codec(modality))
    return Sample(name, f"{record.id}: {modality} (input, target, prediction)", {modality: grid})


def samples_dir(output_dir: str | Path, step: int) -> Path:
    """Where the samples of `step` are written."""
    return Path(output_dir) / "samples" / f"step-{step}"


def write_samples(samples: Sequence[Sample], folder: Path) -> list[Path]:
    """Write each sample's text (``<name>.txt``), pictures (``<name>-<image>.png``) and, for traces,
    HTML page (``<name>.html``) into `folder`; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for sample in samples:
        _check_name(sample.name)
        text = folder / f"{sample.name}.txt"
        text.write_text(sample.text + "\n", encoding="utf-8")
        written.append(text)
        for key, image in sample.images.items():
            _check_name(key)
            path = folder / f"{sample.name}-{key}.png"
            image.convert("RGB").save(path)
            written.append(path)
        if sample.trace is not None:
            written.append(sample.trace.to_html(folder / f"{sample.name}.html"))
    return written


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"sample name: expected letters, digits, '_', '.' or '-', got {name!r}")


def log_samples(accelerator: Any, samples: Sequence[Sample], step: int, output_dir: str | Path) -> Path:
    """Write `samples` under ``output_dir/samples/step-<step>/`` and send them to the accelerator's
    trackers (main process only; returns the folder). Tags are ``samples/<name>/<image>`` for
    pictures and ``samples/<name>`` for text."""
    folder = samples_dir(output_dir, step)
    if not accelerator.is_main_process or not samples:
        return folder
    write_samples(samples, folder)
    for tracker in accelerator.trackers:
        _send(tracker, samples, step, folder)
    return folder


def _send(tracker: Any, samples: Sequence[Sample], step: int, folder: Path) -> None:
    texts = {f"samples/{s.name}": s.text for s in samples}
    pictures = {f"samples/{s.name}/{k}": image for s in samples for k, image in s.images.items()}
    if tracker.name == "tensorboard":
        writer = tracker.tracker
        for tag, image in pictures.items():
            writer.add_image(tag, np.asarray(image.convert("RGB")), step, dataformats="HWC")
        for tag, text in texts.items():
            writer.add_text(tag, _markdown(text), step)
        writer.flush()
    elif tracker.name == "wandb":
        import wandb

        captions = {f"samples/{s.name}/{k}": s.text for s in samples for k in s.images}
        tracker.log(
            {tag: wandb.Image(image, caption=captions[tag]) for tag, image in pictures.items()}, step=step
        )
    elif tracker.name == "mlflow":
        tracker.log_artifacts(str(folder), artifact_path=f"samples/{folder.name}")
    else:  # another GeneralTracker: its own image API when it has one, text through `log`
        if hasattr(tracker, "log_images"):
            tracker.log_images(
                {tag: [np.asarray(image.convert("RGB"))] for tag, image in pictures.items()}, step=step
            )
        tracker.log(texts, step=step)


def _markdown(text: str) -> str:
    """`text` as a Markdown code block (TensorBoard renders text as Markdown)."""
    return "    " + text.replace("\n", "\n    ")
