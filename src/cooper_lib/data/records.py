"""Record formats of the training stages and of evaluation, and JSONL I/O.

The text inside records follows COOPER's turn format (`cooper_lib.data.turns`).

This module is the one record model: it writes records and reads them back (with validation
and the loading of images and true maps). Records (one JSON object per line; paths are relative
to the JSONL file's folder):

- stage 1 (`Stage1Record`, read as `Stage1Example`): an image, the modality to generate, the target
  map file and the instruction, e.g. `<depth-estimation>Estimate the depth ...</depth-estimation>`::

    {"image": "rgb/0001.jpg", "modality": "depth", "target": "depth/0001.png", "depth_scale": 1000}
    {"image": "rgb/0002.jpg", "modality": "depth", "target": "depth/0002.png", "depth_preset": "vkitti"}
    {"image": "ade/0003.jpg", "modality": "segmentation", "target": "ade/0003_seg.png", "palette": "ade20k"}
    {"image": "ade/0004.jpg", "modality": "segmentation", "target": "ade/0004.png", "reduce_zero_label": true}

  The target is read by the modality (`Modality.load_target`, with the record keys it accepts,
  `Modality.record_keys`): depth an integer PNG divided by ``depth_scale`` (units per metre) or a
  preset's scale (``nyu`` / ``hypersim`` 1000, ``vkitti`` 100, ``kitti`` 256), 0 meaning "no depth";
  segmentation an integer class-id PNG, or with ``palette`` (``"ade20k"`` or a list of
  ``[r, g, b]``) a colour PNG decoded to the nearest palette colour, ``reduce_zero_label`` turning
  id 0 into "ignore" (255) and shifting the rest down by one (ADE20K's id files); normals an 8-bit
  RGB PNG of ``(n + 1) / 2``; any other registered modality its own (by default its pseudo-image).
  Optional ``id``, ``source`` (the mixture key, default: the modality) and ``instruction``
  (informational: the prompt's instruction comes from the model's `SpatialConfig`).
- SFT (`SFTRecord` of `Item`s): COOPER's rows ``{"interleaved_reason": [{"type": "text" | "image",
  "value": ..., "need_loss": "true" | "false"}, ...]}`` load unchanged (images as base64), as do
  cooper-lib rows ``{"id", "items": [...], "meta"}`` whose items add ``role`` (system, user,
  assistant, tool) and, on inserted maps, ``modality`` and ``target`` (the true map file that
  supervises the generation head, while ``value`` is the pseudo-image shown to the model; a target
  PNG of a scaled modality such as depth needs ``target_scale``, or a ``manifest.json`` with
  ``depth_scale`` beside the JSONL). Image values are paths, base64 strings (with or without a
  ``data:image/...;base64,`` prefix), PIL images, arrays or tensors.
- GRPO and evaluation (`QARecord`): an image and a question with its exact answer and CPR flag.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from cooper_lib.data.hf import dataset_rows, default_cache_dir, is_dataset_source
from cooper_lib.images import to_pil
from cooper_lib.modalities import get_modality

Role = Literal["system", "user", "assistant", "tool"]


def _jsonable(value: Any, name: str) -> Any:
    if isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name}: an in-memory tensor cannot go into JSONL; save it as a file and give its path"
        )
    return str(value) if isinstance(value, os.PathLike) else value


ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


def _check_keys(data: dict[str, Any], accepted: Iterable[str], where: str) -> None:
    """ValueError naming the unknown keys of `data` and the accepted ones."""
    unknown = sorted(set(data) - set(accepted))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; expected a subset of {sorted(accepted)}")


@dataclass
class Item:
    """One entry of an SFT record.

    Attributes:
        type: "text" or "image".
        value: the text, or the image (path, base64 string, PIL image, array, or a [3, H, W] tensor
            in [0, 1]).
        need_loss: train the LM on this text.
        role: "system", "user", "assistant" or "tool"; None when the record gives none (COOPER's
            rows) and `SFTRecord.roles` infers it.
        modality: the map an image item shows (a tool result).
        target: the true map behind a tool-result image (path, array or tensor), or None.
        target_scale: PNG units per unit of a scaled target file (depth: per metre).
    """

    type: Literal["text", "image"]
    value: Any
    need_loss: bool = False
    role: Role | None = None
    modality: str | None = None
    target: Any = None
    target_scale: float | None = None

    def __post_init__(self) -> None:
        if self.type not in ("text", "image"):
            raise ValueError(f"type: expected 'text' or 'image', got {self.type!r}")
        if self.type == "text" and not isinstance(self.value, str):
            raise TypeError(f"value: a text item needs a str, got {type(self.value).__name__}")
        if self.need_loss and self.type != "text":
            raise ValueError("need_loss: only text items carry a loss in SFT records")
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"role: expected one of {list(ROLES)} or None, got {self.role!r}")

    def to_dict(self) -> dict[str, Any]:
        data = {
            "type": self.type,
            "value": _jsonable(self.value, "value"),
            "need_loss": self.need_loss,
            "role": self.role,
            "modality": self.modality,
            "target": None if self.target is None else _jsonable(self.target, "target"),
        }
        if self.target_scale is not None:
            data["target_scale"] = self.target_scale
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        _check_keys(data, [f.name for f in fields(cls)], "item")
        return cls(**data)


@dataclass
class SFTRecord:
    """An interleaved SFT sample: items in order, free-form metadata (question, answer, ...), and
    the folder relative paths are read from (not serialised)."""

    id: str
    items: list[Item]
    meta: dict[str, Any] = field(default_factory=dict)
    base_dir: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "items": [item.to_dict() for item in self.items], "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: Path | None = None) -> SFTRecord:
        """The record `to_dict` wrote (unknown keys raise ValueError); COOPER's rows: `parse_sft`."""
        _check_keys(data, ("id", "items", "meta"), "record")
        return cls(
            id=data["id"],
            items=[Item.from_dict(i) for i in data["items"]],
            meta=data.get("meta", {}),
            base_dir=base_dir,
        )

    def text(self) -> str:
        """The texts of the record joined in order, images shown as `<image>` (for reading)."""
        return "\n".join(i.value if i.type == "text" else "<image>" for i in self.items)

    def roles(self) -> list[str]:
        """Each item's chat role: its own, else assistant for loss-bearing text and user for the
        rest (COOPER's rows carry no roles: their images are the question's and the tool results)."""
        return [
            item.role or ("assistant" if item.type == "text" and item.need_loss else "user")
            for item in self.items
        ]

    def load_target(self, item: Item) -> torch.Tensor:
        """The true map of a tool-result item, read by its modality (`Modality.load_target`)."""
        target = item.target
        where = f"record {self.id}: target"
        if isinstance(target, torch.Tensor):
            return target.detach().cpu()
        if isinstance(target, np.ndarray):
            return torch.from_numpy(target)
        if not isinstance(target, (str, os.PathLike)):
            raise TypeError(f"{where}: expected a path, array or tensor, got {type(target).__name__}")
        modality = get_modality(item.modality or "")
        options = {"scale": item.target_scale} if modality.scaled_png else {}
        try:
            return modality.load_target(_resolve(str(target), self.base_dir or Path()), **options)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err


@dataclass
class Stage1Record:
    """Auxiliary-modality generation: make `modality` for `image`; `target` is the true map file
    (depth: 16-bit PNG in units of 1 / `depth_scale` m; segmentation: 8-bit class ids). This is
    the row `write_dataset(stage="stage1")` writes; `parse_stage1` reads any stage-1 row."""

    id: str
    image: str
    modality: str
    target: str
    instruction: str
    depth_scale: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stage1Record:
        _check_keys(data, [f.name for f in fields(cls)], "record")
        return cls(**data)


#: Keys every stage-1 row may hold; a modality adds its `record_keys`.
STAGE1_KEYS: tuple[str, ...] = ("id", "image", "modality", "target", "instruction", "source")


@dataclass(frozen=True)
class Stage1Example:
    """A stage-1 row as training reads it: absolute paths, the mixture source, and the validated
    options of its modality's `load_target`."""

    id: str
    image: Path
    modality: str
    target: Path
    source: str
    options: dict[str, Any] = field(default_factory=dict)

    def load_image(self) -> Image.Image:
        return to_pil(self.image, f"record {self.id}: image")

    def load_target(self) -> torch.Tensor:
        """The true map, read by the modality (depth [H, W] metres with 0 invalid, class ids [H, W]
        long with 255 ignored, normals [3, H, W], ...)."""
        try:
            return get_modality(self.modality).load_target(self.target, **self.options)
        except ValueError as err:
            raise ValueError(f"record {self.id}: {err}") from err


def parse_stage1(
    row: dict[str, Any], base_dir: Path, where: str, *, allow_outside_root: bool = False
) -> Stage1Example:
    """Validate one stage-1 JSON object (see the module docstring) into a `Stage1Example`; paths
    stay inside `base_dir` unless `allow_outside_root` (`confine`)."""
    if not isinstance(row, dict):
        raise TypeError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in ("image", "modality", "target") if not row.get(k)]
    modality = get_modality(row["modality"]) if row.get("modality") else None
    accepted = (*STAGE1_KEYS, *(modality.record_keys if modality else ()))
    # A writer's record (`Stage1Record`) always holds depth_scale, null for maps without a scale.
    present = {k: v for k, v in row.items() if not (k == "depth_scale" and v is None)}
    _check_keys(present, accepted, where)
    if missing:
        raise ValueError(f"{where}: missing {missing}")
    return Stage1Example(
        id=str(row.get("id", where)),
        image=confine(row["image"], base_dir, f"{where}: image", allow_outside_root=allow_outside_root),
        modality=modality.name,
        target=confine(row["target"], base_dir, f"{where}: target", allow_outside_root=allow_outside_root),
        source=str(row.get("source") or modality.name),
        options=modality.target_options(row, where),
    )


def load_stage1_records(
    paths: Sequence[str | os.PathLike], *, allow_outside_root: bool = False
) -> list[Stage1Example]:
    """Every stage-1 record of the JSONL files `paths`, in order (paths confined to each file's
    folder unless `allow_outside_root`)."""
    return [
        parse_stage1(row, base, where, allow_outside_root=allow_outside_root)
        for row, base, where in iter_rows(paths)
    ]


def _need_loss(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(
        f"{where}: need_loss: expected true / false (or COOPER's 'true' / 'false'), got {value!r}"
    )


def parse_sft(
    row: dict[str, Any],
    base_dir: Path | None,
    where: str,
    depth_scale: float | None = None,
    *,
    allow_outside_root: bool = False,
) -> SFTRecord:
    """One SFT JSON object (COOPER's ``interleaved_reason`` row or a cooper-lib record) as an
    `SFTRecord`; `depth_scale` (a dataset manifest's) is the default `target_scale` of items whose
    modality reads scaled PNGs. Image and target paths stay inside `base_dir` unless
    `allow_outside_root` (`confine`)."""
    if not isinstance(row, dict):
        raise TypeError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "interleaved_reason" in row:
        raw_items, meta = (
            row["interleaved_reason"],
            {k: v for k, v in row.items() if k != "interleaved_reason"},
        )
    elif "items" in row:
        meta = row.get("meta") or {}
        raw_items, meta = row["items"], json.loads(meta) if isinstance(meta, str) else dict(meta)
    else:
        raise ValueError(f"{where}: expected an 'interleaved_reason' (COOPER) or 'items' (cooper-lib) list")
    if not isinstance(raw_items, list) or not raw_items:
        raise ValueError(f"{where}: expected a non-empty list of items")
    items = []
    for index, raw in enumerate(raw_items):
        at = f"{where}: item {index}"
        kind = raw.get("type")
        if kind not in ("text", "image"):
            raise ValueError(f"{at}: type: expected 'text' or 'image', got {kind!r}")
        if "value" not in raw:
            raise ValueError(f"{at}: missing 'value'")
        need_loss = _need_loss(raw.get("need_loss", False), at)
        if need_loss and kind != "text":
            raise ValueError(f"{at}: need_loss: only text items carry a loss")
        if kind == "text" and not isinstance(raw["value"], str):
            raise TypeError(f"{at}: a text item needs a string value, got {type(raw['value']).__name__}")
        role = raw.get("role")
        if role is not None and role not in ROLES:
            raise ValueError(f"{at}: role: expected system, user, assistant or tool, got {role!r}")
        if kind == "image":
            confine_image(raw["value"], base_dir, f"{at}: value", allow_outside_root=allow_outside_root)
        if isinstance(raw.get("target"), str) and base_dir is not None:
            confine(raw["target"], base_dir, f"{at}: target", allow_outside_root=allow_outside_root)
        name = raw.get("modality")
        scaled = name is not None and get_modality(name).scaled_png
        scale = raw.get("target_scale", depth_scale if scaled else None)
        items.append(Item(kind, raw["value"], need_loss, role, name, raw.get("target"), scale))
    if not any(item.need_loss or item.target is not None for item in items):
        raise ValueError(
            f"{where}: no item has need_loss and no map a target; the record would train nothing"
        )
    return SFTRecord(str(row.get("id", where)), items, meta, base_dir)


def load_sft_records(
    paths: Sequence[str | os.PathLike], *, allow_outside_root: bool = False
) -> list[SFTRecord]:
    """Every SFT record of the JSONL files `paths`, in order (paths confined to each file's folder
    unless `allow_outside_root`)."""
    records = []
    scales: dict[Path, float | None] = {}
    for row, base, where in iter_rows(paths):
        if base not in scales:
            manifest = base / "manifest.json"
            scales[base] = json.loads(manifest.read_text()).get("depth_scale") if manifest.is_file() else None
        records.append(parse_sft(row, base, where, scales[base], allow_outside_root=allow_outside_root))
    return records


@dataclass
class QARecord:
    """A question about an image with its exact answer (GRPO prompts and evaluation).

    `answer` is the canonical short answer (an option letter, "yes"/"no", an integer, or a number
    in `unit`); `value` is the numeric truth of number and count questions; `cpr` is COOPER's
    exploration flag (positive / negative / boundary) and `modality` the map that would help.
    """

    id: str
    image: str
    question: str
    answer: str
    answer_type: str
    category: str
    cpr: str
    modality: str | None = None
    unit: str | None = None
    choices: list[str] = field(default_factory=list)
    value: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QARecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> int:
    """Write records (objects with `to_dict`, or dicts) one JSON object per line; returns the count."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for record in records:
            data = record.to_dict() if hasattr(record, "to_dict") else record
            f.write(json.dumps(data, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file (blank lines skipped)."""
    with Path(path).open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}:{number}: not UTF-8 text ({err.reason} at byte {err.start})"
                ) from err
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: not a JSON object ({err.msg})") from err


def iter_rows(paths: Sequence[str | os.PathLike]) -> Iterable[tuple[dict[str, Any], Path, str]]:
    """(row, folder of its file, "path:line") for every JSON object of the JSONL files `paths`;
    an entry may also be a `datasets` source (`cooper_lib.data.hf.dataset_rows`)."""
    if isinstance(paths, (str, os.PathLike)) or is_dataset_source(paths):
        paths = [paths]
    if not paths:
        raise ValueError("paths: expected at least one JSONL file, got none")
    for path in paths:
        if is_dataset_source(path):
            yield from dataset_rows(path)
            continue
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: JSONL file not found")
        for number, row in enumerate(read_jsonl(path), 1):
            yield row, path.parent, f"{path}:{number}"


_MAX_PATH_CHARS = 4096  # longer strings are base64 images, not paths


def _resolve(path: str | os.PathLike, base_dir: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base_dir / p


def confine(path: str | os.PathLike, root: Path, where: str, *, allow_outside_root: bool = False) -> Path:
    """`path` (relative to `root`, or absolute) when it stays inside `root`, the folder of the
    record file that names it: ``..`` steps and absolute paths leading elsewhere are a
    ``ValueError`` naming `where`, unless `allow_outside_root`. The check is on the path as
    written (symbolic links inside the folder, such as a Hugging Face cache's, are followed). Files
    the library itself extracted from a `datasets` source (`hf.default_cache_dir`) are accepted."""
    resolved = _resolve(path, root)
    if allow_outside_root or _inside(resolved, root) or _inside(resolved, default_cache_dir()):
        return resolved
    raise ValueError(
        f"{where}: {str(path)!r} names a file outside the dataset folder {root}; files may only "
        "name paths inside their folder (to read it anyway pass allow_outside_root=True, "
        "`--allow-outside-root` to `cooper-lib eval run`, or `run: {allow_outside_root: true}` in a "
        "training config)"
    )


def confine_image(value: Any, root: Path | None, where: str, *, allow_outside_root: bool = False) -> None:
    """`confine` for an image value that may be a path or a base64 string (`cooper_lib.images`
    rules): a string naming an existing file outside `root` is refused; others are left to the
    image reader."""
    if root is None or allow_outside_root or not isinstance(value, (str, os.PathLike)):
        return
    text = str(value)
    if text.startswith("data:") or len(text) > _MAX_PATH_CHARS or "\n" in text:
        return
    resolved = _resolve(text, root)
    if not _inside(resolved, root) and os.path.exists(os.path.normpath(resolved)):
        confine(text, root, where)  # raises unless the file is in the library's dataset cache


def _inside(path: Path, root: Path) -> bool:
    path, root = os.path.abspath(path), os.path.abspath(root)
    return os.path.commonpath([path, root]) == root
