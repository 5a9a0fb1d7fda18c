"""Patch k-means image tokenizer: each ``p x p`` RGB patch becomes the id of its nearest k-means centre.

The encoder is a reshape and a nearest-centre lookup and the decoder puts each centre back into its patch, so
nothing is learnt but the centres. On the 64 px synthetic corpus, 4 x 4 patches (a 16 x 16 grid) keep 0.96-0.98 of
the findings the judge reads from the originals, where an 8 x 8 grid of VQ codes keeps 0.77 for pathology
(benchmarks/results/tokenizer_grid16.md). Same interface as :class:`medim.tokenizers.image.VQImageTokenizer`
(``encode`` / ``decode`` / ``grid_size`` / ``codebook_size`` / ``save_pretrained`` / ``from_pretrained``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ._hub import resolve_pretrained_dir
from .image import TOKENIZER_META_FILE as _META_FILE
from .image import check_ids, check_pixels

KIND = "patch_kmeans"
_CENTRES_FILE = "centres.safetensors"
_ENCODE_CHUNK = 65_536  # patches per distance matrix: bounds memory for large batches


def patchify(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, C, H, W]`` → ``[B, (H/p)*(W/p), C*p*p]``: the ``p x p`` patches, row-major over the grid."""
    n, c, h, w = pixels.shape
    return (
        pixels.unfold(2, patch, patch)
        .unfold(3, patch, patch)
        .permute(0, 2, 3, 1, 4, 5)
        .reshape(n, (h // patch) * (w // patch), c * patch * patch)
    )


def unpatchify(vectors: torch.Tensor, patch: int, channels: int) -> torch.Tensor:
    """The inverse of :func:`patchify` for a square grid: ``[B, g*g, C*p*p]`` → ``[B, C, g*p, g*p]``."""
    n, cells, _ = vectors.shape
    g = math.isqrt(cells)
    return (
        vectors.reshape(n, g, g, channels, patch, patch)
        .permute(0, 3, 1, 4, 2, 5)
        .reshape(n, channels, g * patch, g * patch)
    )


class PatchKMeansTokenizer(nn.Module):
    """Images in ``[-1, 1]`` ⟷ row-major grids of ids of the nearest of ``codebook_size`` patch centres."""

    def __init__(self, centres: torch.Tensor, *, patch: int, image_size: int, channels: int = 3) -> None:
        super().__init__()
        patch, image_size = int(patch), int(image_size)
        if patch < 1 or image_size < 1 or image_size % patch:
            raise ValueError(f"image_size={image_size} must be a positive multiple of patch={patch}")
        if centres.ndim != 2 or centres.shape[1] != channels * patch * patch or len(centres) < 1:
            raise ValueError(
                f"centres must have shape [codes, {channels * patch * patch}] for {patch}x{patch} patches of "
                f"{channels} channels, got {list(centres.shape)}"
            )
        self.register_buffer("centres", centres.detach().float().clone())
        self.patch, self._image_size, self.channels = patch, image_size, int(channels)

    # ------------------------------------------------------------------ construction
    @classmethod
    def fit(
        cls,
        images: Iterable[torch.Tensor],
        *,
        codebook_size: int = 1024,
        patch: int = 4,
        samples: int = 150_000,
        iterations: int = 15,
        seed: int = 0,
    ) -> PatchKMeansTokenizer:
        """k-means (k-means++ seeding, ``iterations`` Lloyd steps) on up to ``samples`` patches drawn uniformly
        from ``images``, an iterable of ``[B, C, H, W]`` batches in ``[-1, 1]``."""
        from .vq_training import kmeans

        batches = [torch.as_tensor(batch).float() for batch in images]
        if not batches:
            raise ValueError("fitting a patch k-means tokenizer needs at least one image")
        pixels = torch.cat(batches)
        channels, image_size = pixels.shape[1], pixels.shape[-1]
        check_pixels(pixels, channels, image_size)
        vectors = patchify(pixels, patch).reshape(-1, channels * patch * patch)
        generator = torch.Generator().manual_seed(int(seed))
        vectors = vectors[torch.randperm(len(vectors), generator=generator)[: int(samples)]]
        return cls(
            kmeans(vectors, int(codebook_size), int(iterations), generator),
            patch=patch,
            image_size=image_size,
            channels=channels,
        )

    # ------------------------------------------------------------------ shape
    @property
    def codebook_size(self) -> int:
        return self.centres.shape[0]

    @property
    def codebook(self) -> torch.Tensor:
        """The patch centres, ``[codebook_size, channels * patch * patch]`` (what each code draws)."""
        return self.centres

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def downsample_factor(self) -> int:
        return self.patch

    @property
    def grid_size(self) -> tuple[int, int]:
        side = self._image_size // self.patch
        return side, side

    @property
    def num_tokens(self) -> int:
        h, w = self.grid_size
        return h * w

    @property
    def device(self) -> torch.device:
        return self.centres.device

    @property
    def dtype(self) -> torch.dtype:
        return self.centres.dtype

    # ------------------------------------------------------------------ public API
    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` in ``[-1, 1]`` → LongTensor ``[B, h*w]`` of centre ids (squared-L2 nearest)."""
        self._check_pixels(pixels)
        patches = patchify(pixels.to(device=self.device, dtype=self.dtype), self.patch)
        flat = patches.reshape(-1, patches.shape[-1])
        ids = (
            torch.cat(
                [
                    torch.cdist(flat[i : i + _ENCODE_CHUNK], self.centres).argmin(1)
                    for i in range(0, len(flat), _ENCODE_CHUNK)
                ]
            )
            if len(flat)
            else torch.zeros(0, dtype=torch.long, device=self.device)
        )
        return ids.view(pixels.shape[0], self.num_tokens)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """LongTensor ``[B, h*w]`` → ``[B, C, H, W]``: each centre drawn back into its patch, in ``[-1, 1]``."""
        self._check_ids(ids)
        vectors = self.centres[ids.to(device=self.device, dtype=torch.long)]
        return unpatchify(vectors, self.patch, self.channels).clamp(-1.0, 1.0)

    @torch.no_grad()
    def reconstruct(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(pixels))

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``centres.safetensors`` and ``medim_image_tokenizer.json`` (``"kind": "patch_kmeans"``)."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({"centres": self.centres.contiguous().cpu()}, str(directory / _CENTRES_FILE))
        meta = {
            "format_version": 1,
            "kind": KIND,
            "image_size": self.image_size,
            "patch": self.patch,
            "channels": self.channels,
            "grid_size": list(self.grid_size),
            "codebook_size": self.codebook_size,
        }
        (directory / _META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, *, device: str | torch.device | None = None
    ) -> PatchKMeansTokenizer:
        directory = resolve_pretrained_dir(
            name_or_path, [_META_FILE, _CENTRES_FILE], what="patch k-means image tokenizer"
        )
        meta = json.loads((directory / _META_FILE).read_text())
        if meta.get("kind") != KIND:
            raise ValueError(
                f"{directory / _META_FILE} is not a patch k-means tokenizer (kind {meta.get('kind')!r})"
            )
        centres = load_file(str(directory / _CENTRES_FILE)).get("centres")
        if centres is None:
            raise ValueError(f"{directory / _CENTRES_FILE} has no 'centres' tensor")
        tokenizer = cls(
            centres, patch=meta["patch"], image_size=meta["image_size"], channels=meta.get("channels", 3)
        )
        return tokenizer.to(device) if device is not None else tokenizer

    # ------------------------------------------------------------------ validation
    def _check_pixels(self, pixels: torch.Tensor) -> None:
        check_pixels(pixels, self.channels, self.image_size)

    def _check_ids(self, ids: torch.Tensor) -> None:
        check_ids(ids, self.grid_size, self.codebook_size)
