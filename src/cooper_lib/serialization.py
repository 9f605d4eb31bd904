"""One round trip for every config dataclass: `to_dict` writes plain JSON / YAML values, `from_dict`
reads them back with each value checked against its field's type.

One rule for unknown keys: a ValueError naming them and the accepted fields (a typo never passes
silently). Types understood: bool, int (integral numbers only), float (ints accepted), str,
`Literal[...]`, `X | None`, unions (first arm that accepts the value), `tuple[...]` (fixed or
`...`), `list[X]`, `dict[str, X]`, `Any`, and nested dataclasses (built from a mapping). Tuples
are written as lists and read back as tuples.

The same type rule holds for configs built in Python: `check_fields` runs it on a dataclass
instance (``SpatialConfig.__post_init__`` calls it), and `check_value` on one value (head options
against their defaults' types). So ``query_grid=(2.5, 2)``, ``num_classes="7"`` and
``query_grid="2x2"`` are TypeErrors naming the field, never silently converted.

One reader per file format, each naming the file and the cause of a failure: `read_text`
(UTF-8), `read_json`, `read_yaml` (``yaml.safe_load``) and `read_safetensors` (a truncated or
corrupt file is a ValueError naming it; a NaN or infinite value one naming the tensor). A missing
file is FileNotFoundError.
"""

from __future__ import annotations

import json
import numbers
import os
import types
import typing
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = [
    "check_fields",
    "check_known_fields",
    "check_value",
    "field_types",
    "from_dict",
    "plain",
    "read_json",
    "read_safetensors",
    "read_text",
    "read_yaml",
    "strip_optional",
    "to_dict",
]


def plain(value: Any) -> Any:
    """Tuples -> lists, recursively (JSON and YAML safe_dump understand only lists)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def to_dict(obj: Any) -> dict[str, Any]:
    """Every field of the dataclass instance `obj` as plain JSON-ready values (nested dataclasses
    as dicts, tuples as lists)."""
    if not is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"obj: expected a dataclass instance, got {type(obj).__name__}")
    return plain(asdict(obj))


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of each field of the dataclass `cls` (string annotations evaluated)."""
    return typing.get_type_hints(cls)


def strip_optional(tp: Any) -> tuple[Any, bool]:
    """(inner type, whether None is allowed) of `X | None`; other types come back unchanged."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        inner = rest[0]
        for arm in rest[1:]:
            inner = inner | arm
        return inner, True
    return tp, False


def check_known_fields(cls: type, data: dict[str, Any], where: str) -> None:
    """Raise ValueError naming the keys of `data` that are not fields of `cls`, and the accepted ones."""
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown fields {unknown}; expected a subset of {names}")


def from_dict(cls: type[T], data: dict[str, Any], where: str | None = None) -> T:
    """The dataclass `cls` built from `data` (what `to_dict` wrote, or a hand-written subset).

    Args:
        cls: a dataclass type; fields left out of `data` keep their defaults.
        data: field name -> plain value.
        where: the name errors start with (default: the class name); nested fields extend it
            (``Stage1Config.optim.lr``).

    Raises:
        ValueError: an unknown key (named, with the accepted fields), or a value out of range.
        TypeError: a value of the wrong type, naming the field, the expected type and the value.
    """
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise TypeError(f"{where}: expected a mapping, got {type(data).__name__}")
    check_known_fields(cls, data, where)
    hints = field_types(cls)
    kwargs = {
        f.name: _coerce(hints[f.name], data[f.name], f"{where}.{f.name}")
        for f in fields(cls)
        if f.name in data
    }
    return cls(**kwargs)


def check_value(tp: Any, value: Any, where: str) -> Any:
    """`value` checked against the type `tp` by the module's rule (lists -> tuples, integral
    numbers -> int, ints -> float); TypeError / ValueError starting with `where` otherwise."""
    return _coerce(tp, value, where)


def check_fields(obj: Any, where: str | None = None) -> None:
    """Check every field of the dataclass instance `obj` against its declared type (the rule of
    `from_dict`) and store the normalised value (lists -> tuples, ...).

    Args:
        obj: a (non-frozen) dataclass instance.
        where: the prefix of error names (``where.field``); None names the bare field.
    """
    hints = field_types(type(obj))
    for f in fields(obj):
        name = f.name if where is None else f"{where}.{f.name}"
        setattr(obj, f.name, _coerce(hints[f.name], getattr(obj, f.name), name))


def _container(tp: Any) -> type | tuple[type, ...] | None:
    """The Python container a mapping / sequence type is read from, else None."""
    origin = typing.get_origin(tp)
    if origin is dict or is_dataclass(tp):
        return dict
    if origin in (tuple, list):
        return (list, tuple)
    return None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check `value` against the field type `tp` (ints accepted for floats, lists for tuples)."""
    if tp is Any:
        return value
    inner, optional = strip_optional(tp)
    if optional and isinstance(value, str) and value.lower() in ("none", "null"):
        value = None  # as on the command line: `ema_decay: none` in YAML is the string "none"
    if value is None:
        if optional:
            return None
        raise TypeError(f"{where}: expected {inner}, got None")
    origin = typing.get_origin(inner)
    if is_dataclass(inner):
        if isinstance(value, inner):
            return value
        return from_dict(inner, value, where)
    if origin is typing.Literal:
        choices = typing.get_args(inner)
        if value not in choices:
            raise ValueError(f"{where}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(inner):
            try:
                return _coerce(arm, value, where)
            except (TypeError, ValueError) as err:
                errors.append((arm, err))
        fitting = [
            err for arm, err in errors if _container(arm) is not None and isinstance(value, _container(arm))
        ]
        if len(fitting) == 1:  # the value is the arm's kind of container: that arm's error is the useful one
            raise fitting[0]
        raise TypeError(f"{where}: expected {inner}, got {value!r}")
    if inner is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected true or false, got {value!r}")
        return value
    if inner in (int, float):
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or (inner is int and not float(value).is_integer())
        ):
            raise TypeError(f"{where}: expected {inner.__name__}, got {value!r}")
        return inner(value)
    if inner is str:
        if not isinstance(value, str):
            raise TypeError(f"{where}: expected a string, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(inner)
        item_types = args if origin is tuple and Ellipsis not in args else [args[0]] * len(value)
        if len(item_types) != len(value):
            raise ValueError(f"{where}: expected {len(item_types)} values, got {len(value)}")
        items = [
            _coerce(t, v, f"{where}[{i}]") for i, (t, v) in enumerate(zip(item_types, value, strict=True))
        ]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a mapping, got {value!r}")
        _, value_type = typing.get_args(inner)
        return {str(k): _coerce(value_type, v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"{where}: unsupported field type {inner}")


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The UTF-8 text of `path`; FileNotFoundError when missing, ValueError naming the file and
    the byte offset when it is not UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from err


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """The JSON value in `path`, errors naming the file, line and column (see `read_text`)."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}: not valid JSON at line {err.lineno}, column {err.colno} ({err.msg})"
        ) from err


def read_yaml(path: str | os.PathLike, what: str = "YAML file") -> Any:
    """The value of the YAML file `path` (``yaml.safe_load``), errors naming the file and line."""
    import yaml

    text = read_text(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{path}: not valid YAML{at} ({problem})") from err


def read_safetensors(path: str | os.PathLike, *, finite: bool = True) -> dict[str, Any]:
    """The tensors of a safetensors file.

    Args:
        path: the file.
        finite: check every floating-point tensor holds only finite values.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: a truncated or corrupt file (naming it and the cause), or a NaN / infinite
            value (naming the tensor and the count).
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: safetensors file not found")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err}); it may be truncated") from err
    if finite:
        for name, tensor in tensors.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise ValueError(f"{path}: tensor {name!r} holds {bad} NaN or infinite values")
    return tensors
