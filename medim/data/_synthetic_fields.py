"""Pixel grids, soft masks and smooth random fields shared by the synthetic image renderers."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image


@lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1], each [size, size] float32 (x to the right, y downwards)."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = np.meshgrid(axis, axis, indexing="ij")
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def ramp(signed_distance: np.ndarray, width: float) -> np.ndarray:
    """Soft inside-mask of a region given a signed distance (negative inside); ``width`` sets the edge blur."""
    return np.clip(0.5 - signed_distance / width, 0.0, 1.0)


def smooth_noise(rng: np.random.Generator, resolution: int | tuple[int, int], size: int) -> np.ndarray:
    """Smooth random field [size, size] float32 with unit std.

    It is drawn at ``resolution`` (rows, cols) and upsampled, so the same random draws give the same field at any
    output size.
    """
    rows, cols = (resolution, resolution) if isinstance(resolution, int) else resolution
    coarse = rng.standard_normal((rows, cols)).astype(np.float32)
    field = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.BICUBIC))
    return (field - field.mean()) / (field.std() + 1e-6)
