import base64
from pathlib import Path

import pytest

from cooper_lib.eval.benchmarks.items import BenchmarkItem
from cooper_lib.images import image_from_base64, image_from_bytes


def test_image_from_path_bytes_and_base64(tmp_path, write_image, encoded_image):
    path = write_image(tmp_path / "a.jpg", (0, 0, 255))
    item = BenchmarkItem(id="1", image=path, question="q", answer="A", answer_type="choice")
    assert item.load_image().mode == "RGB" and item.load_image().size == (8, 6)
    assert image_from_bytes(encoded_image((1, 2, 3))).getpixel((0, 0)) == (1, 2, 3)
    b64 = base64.b64encode(encoded_image((9, 8, 7))).decode()
    assert image_from_base64(b64).getpixel((3, 3)) == (9, 8, 7)
    lazy = BenchmarkItem(
        id="2", image=lambda: image_from_base64(b64), question="q", answer="yes", answer_type="yes_no"
    )
    assert lazy.load_image().getpixel((0, 0)) == (9, 8, 7)
    with pytest.raises(ValueError, match="base64"):
        image_from_base64("not base64 !!")


def test_letters_follow_choices_or_default_to_a_to_f():
    kwargs = dict(id="1", image=Path("x.png"), question="q", answer="B", answer_type="choice")
    assert BenchmarkItem(**kwargs, choices=("x", "y", "z")).letters() == "ABC"
    assert BenchmarkItem(**kwargs).letters() == "ABCDEF"


def test_item_validation():
    with pytest.raises(ValueError, match="answer_type"):
        BenchmarkItem(id="1", image=Path("x.png"), question="q", answer="A", answer_type="letter")
    with pytest.raises(TypeError, match="image"):
        BenchmarkItem(id="1", image="x.png", question="q", answer="A", answer_type="choice")
    with pytest.raises(ValueError, match="target"):
        BenchmarkItem(id="1", image=Path("x.png"), question="q", answer=None, answer_type="depth")
