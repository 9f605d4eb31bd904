from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from cooper_lib.serialization import from_dict, plain, to_dict


@dataclass(frozen=True)
class Pair:
    left: str
    right: str = "r"


@dataclass
class Sample:
    count: int = 1
    scale: float = 1.0
    flag: bool = False
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    grid: tuple[int, int] = (2, 3)
    shapes: tuple[str, ...] = ("s",)
    values: list[float] = field(default_factory=list)
    limit: int | None = None
    head: str | dict[str, str] = "dense"
    pairs: dict[str, Pair] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    inner: Pair = field(default_factory=lambda: Pair("l"))


def test_round_trip_restores_tuples_nested_dataclasses_and_unions():
    sample = Sample(
        count=4,
        scale=0.5,
        flag=True,
        mode="b",
        grid=(5, 6),
        shapes=("a", "b", "c"),
        values=[1.0, 2.5],
        limit=7,
        head={"depth": "flow"},
        pairs={"k": Pair("p", "q")},
        extra={"any": [1, {"x": None}]},
        inner=Pair("m", "n"),
    )
    data = to_dict(sample)
    assert data["grid"] == [5, 6] and data["inner"] == {"left": "m", "right": "n"}
    assert from_dict(Sample, data) == sample
    assert from_dict(Sample, {}) == Sample()


def test_ints_become_floats_and_fields_left_out_keep_defaults():
    loaded = from_dict(Sample, {"scale": 2})
    assert loaded.scale == 2.0 and isinstance(loaded.scale, float) and loaded.count == 1


def test_unknown_key_names_it_and_the_accepted_fields():
    with pytest.raises(
        ValueError, match=r"Sample: unknown fields \['colour'\]; expected a subset of \['count', "
    ):
        from_dict(Sample, {"colour": 1})
    with pytest.raises(ValueError, match=r"Sample.inner: unknown fields \['middle'\]"):
        from_dict(Sample, {"inner": {"left": "a", "middle": "b"}})


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ({"count": 1.5}, TypeError, r"Sample.count: expected int, got 1.5"),
        ({"count": True}, TypeError, r"Sample.count: expected int"),
        ({"flag": 1}, TypeError, r"Sample.flag: expected true or false"),
        ({"name": 3}, TypeError, r"Sample.name: expected a string"),
        ({"mode": "c"}, ValueError, r"Sample.mode: expected one of \['a', 'b'\], got 'c'"),
        ({"grid": [1, 2, 3]}, ValueError, r"Sample.grid: expected 2 values, got 3"),
        ({"values": [1, "x"]}, TypeError, r"Sample.values\[1\]: expected float"),
        ({"head": 3}, TypeError, r"Sample.head: expected str \| dict\[str, str\], got 3"),
        ({"scale": None}, TypeError, r"Sample.scale: expected <class 'float'>, got None"),
        ({"inner": "l"}, TypeError, r"Sample.inner: expected a mapping"),
    ],
)
def test_bad_values_are_named(data, error, message):
    with pytest.raises(error, match=message):
        from_dict(Sample, data)


def test_mapping_and_instance_are_required():
    with pytest.raises(TypeError, match="Sample: expected a mapping, got list"):
        from_dict(Sample, [1])
    with pytest.raises(TypeError, match="obj: expected a dataclass instance"):
        to_dict(Sample)


def test_plain_turns_tuples_into_lists_recursively():
    assert plain({"a": (1, (2, 3)), "b": [(4,)]}) == {"a": [1, [2, 3]], "b": [[4]]}


def test_each_reader_names_the_file_and_the_cause(tmp_path):
    import pytest
    import torch
    from safetensors.torch import save_file

    from cooper_lib.serialization import read_json, read_safetensors, read_text, read_yaml

    with pytest.raises(FileNotFoundError, match="missing.json: JSON file not found"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9")
    with pytest.raises(ValueError, match=r"latin.txt: not UTF-8 text \(byte 3"):
        read_text(tmp_path / "latin.txt")
    (tmp_path / "bad.json").write_text('{"a": 1,\n "b": }')
    with pytest.raises(ValueError, match="bad.json: not valid JSON at line 2, column 7"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "bad.yaml").write_text("run:\n  lr: [1, 2\n")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML at line 3"):
        read_yaml(tmp_path / "bad.yaml")
    save_file({"w": torch.ones(64), "b": torch.zeros(2)}, str(tmp_path / "ok.safetensors"))
    assert read_safetensors(tmp_path / "ok.safetensors")["w"].sum() == 64
    data = (tmp_path / "ok.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.safetensors: not a readable safetensors file .*truncated"):
        read_safetensors(tmp_path / "cut.safetensors")
    save_file({"w": torch.tensor([1.0, float("nan"), float("inf")])}, str(tmp_path / "nan.safetensors"))
    with pytest.raises(ValueError, match="nan.safetensors: tensor 'w' holds 2 NaN or infinite values"):
        read_safetensors(tmp_path / "nan.safetensors")
