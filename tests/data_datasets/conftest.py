"""Fixtures for dataset adapter tests: tiny images written in the exact on-disk layout each adapter reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, *, size: tuple[int, int] = (12, 10), mode: str = "L", value: int = 128) -> Path:
    """Write a small flat image (format from the suffix) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = 1 if mode == "L" else 3
    pixels = np.full((size[1], size[0], bands), value, dtype=np.uint8).squeeze()
    Image.fromarray(pixels, mode=mode).save(path)
    return path


@pytest.fixture
def image_writer():
    """The :func:`write_image` helper, as a fixture."""
    return write_image
