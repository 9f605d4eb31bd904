"""Small image helpers for the benchmark-loader tests (fixture files are written per test)."""

import io
from pathlib import Path

import pytest
from PIL import Image


def _encoded(color: tuple[int, int, int], fmt: str = "PNG", size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def encoded_image():
    """``encoded_image(color, fmt="PNG", size=(8, 6)) -> bytes`` of a flat-colour image."""
    return _encoded


@pytest.fixture
def write_image():
    """``write_image(path, color, size=(8, 6))`` writes a flat-colour image, format from the suffix."""

    def _write(path: Path, color: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (8, 6)) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, color).save(path)
        return path

    return _write
