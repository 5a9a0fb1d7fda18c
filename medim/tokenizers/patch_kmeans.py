"""Patch k-means image tokenizer: each ``p x p`` RGB patch becomes the id of its nearest k-means centre.

The encoder is a reshape and a nearest-centre lookup and the decoder puts a patch per code back into its place, so
nothing is learnt but the centres. On the 64 px synthetic corpus, 4 x 4 patches (a 16 x 16 grid) keep 0.96-0.98 of
the findings the judge reads from the originals, where an 8 x 8 grid of VQ codes keeps 0.77 for pathology
(benchmarks/results/tokenizer_grid16.md).

Two options make an 8 x 8 grid keep small, scattered detail (pathology's 1-2 px inflammatory nuclei):

- ``quantile_weight``: codes are assigned on the pixels *and* the patch's sorted luminance values (weighted), a
  position-free summary of "how many dark specks", so patches with and without nuclei fall into different codes even
  when the specks sit in different places;
- ``draw="exemplar"``: each code draws the training patch nearest its centre rather than the centre itself. A
  centre averages patches whose specks sit at different places, which blurs them away; an exemplar keeps them.

Same interface as :class:`medim.tokenizers.image.VQImageTokenizer` (``encode`` / ``decode`` / ``grid_size`` /
``codebook_size`` / ``save_pretrained`` / ``from_pretrained``).
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
DRAWS = ("centre", "exemplar")


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


def luminance_quantiles(vectors: torch.Tensor, channels: int) -> torch.Tensor:
    """``[N, C*p*p]`` patch vectors → ``[N, q]``: every ``stride``-th of the patch's sorted luminance values
    (``q = p*p / stride``, at most 16), a summary of the patch that does not depend on where its pixels sit."""
    pixels = vectors.shape[1] // channels
    luminance = vectors.reshape(len(vectors), channels, pixels).mean(1)
    return luminance.sort(1).values[:, :: max(1, pixels // 16)]


def assignment_features(vectors: torch.Tensor, channels: int, quantile_weight: float) -> torch.Tensor:
    """The patch vectors, followed by their luminance quantiles times ``quantile_weight`` when it is positive."""
    if not quantile_weight:
        return vectors
    return torch.cat([vectors, quantile_weight * luminance_quantiles(vectors, channels)], 1)


class PatchKMeansTokenizer(nn.Module):
    """Images in ``[-1, 1]`` ⟷ row-major grids of ids of the nearest of ``codebook_size`` patch centres."""

    def __init__(
        self,
        centres: torch.Tensor,
        *,
        patch: int,
        image_size: int,
        channels: int = 3,
        quantile_weight: float = 0.0,
        drawn: torch.Tensor | None = None,
    ) -> None:
        """``centres``: ``[codes, C*p*p]``, plus the weighted luminance quantiles when ``quantile_weight > 0``
        (what codes are assigned on); ``drawn``: ``[codes, C*p*p]``, what each code draws (default: the centres'
        pixel part)."""
        super().__init__()
        patch, image_size, channels = int(patch), int(image_size), int(channels)
        if patch < 1 or image_size < 1 or image_size % patch:
            raise ValueError(f"image_size={image_size} must be a positive multiple of patch={patch}")
        if quantile_weight < 0:
            raise ValueError(f"quantile_weight must be >= 0, got {quantile_weight}")
        self.patch, self._image_size, self.channels = patch, image_size, channels
        self.quantile_weight = float(quantile_weight)
        width = self._feature_width()
        if centres.ndim != 2 or centres.shape[1] != width or len(centres) < 1:
            raise ValueError(
                f"centres must have shape [codes, {width}] for {patch}x{patch} patches of {channels} channels"
                f"{' and their luminance quantiles' if self.quantile_weight else ''}, got {list(centres.shape)}"
            )
        pixels = channels * patch * patch
        if drawn is None:
            drawn = centres[:, :pixels]
        if tuple(drawn.shape) != (len(centres), pixels):
            raise ValueError(f"drawn must have shape [{len(centres)}, {pixels}], got {list(drawn.shape)}")
        self.register_buffer("centres", centres.detach().float().clone())
        self.register_buffer("drawn", drawn.detach().float().clone())

    def _feature_width(self) -> int:
        pixels = torch.zeros(1, self.channels * self.patch * self.patch)
        return self.features(pixels).shape[1]

    def features(self, vectors: torch.Tensor) -> torch.Tensor:
        """What codes are assigned on: ``[N, C*p*p]`` patch vectors → ``[N, feature width]``."""
        return assignment_features(vectors, self.channels, self.quantile_weight)

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
        quantile_weight: float = 0.0,
        draw: str = "centre",
    ) -> PatchKMeansTokenizer:
        """k-means (k-means++ seeding, ``iterations`` Lloyd steps) on up to ``samples`` patches drawn uniformly
        from ``images``, an iterable of ``[B, C, H, W]`` batches in ``[-1, 1]``; ``quantile_weight`` and ``draw``
        as in the module docstring (an exemplar is the sampled patch nearest its centre)."""
        from .vq_training import kmeans

        if draw not in DRAWS:
            raise ValueError(f"draw must be one of {DRAWS}, got {draw!r}")
        batches = [torch.as_tensor(batch).float() for batch in images]
        if not batches:
            raise ValueError("fitting a patch k-means tokenizer needs at least one image")
        pixels = torch.cat(batches)
        channels, image_size = pixels.shape[1], pixels.shape[-1]
        check_pixels(pixels, channels, image_size)
        vectors = patchify(pixels, patch).reshape(-1, channels * patch * patch)
        generator = torch.Generator().manual_seed(int(seed))
        vectors = vectors[torch.randperm(len(vectors), generator=generator)[: int(samples)]]
        features = assignment_features(vectors, channels, quantile_weight)
        centres = kmeans(features, int(codebook_size), int(iterations), generator)
        drawn = _nearest_members(features, centres, vectors) if draw == "exemplar" else None
        return cls(
            centres,
            patch=patch,
            image_size=image_size,
            channels=channels,
            quantile_weight=quantile_weight,
            drawn=drawn,
        )

    # ------------------------------------------------------------------ shape
    @property
    def codebook_size(self) -> int:
        return self.centres.shape[0]

    @property
    def codebook(self) -> torch.Tensor:
        """What each code draws, ``[codebook_size, channels * patch * patch]``."""
        return self.drawn

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
        flat = self.features(patches.reshape(-1, patches.shape[-1]))
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
        """LongTensor ``[B, h*w]`` → ``[B, C, H, W]``: each code's patch drawn back into its place, in ``[-1, 1]``."""
        self._check_ids(ids)
        vectors = self.drawn[ids.to(device=self.device, dtype=torch.long)]
        return unpatchify(vectors, self.patch, self.channels).clamp(-1.0, 1.0)

    def describe(self) -> str:
        """One line for ``medim info``: what kind of codes, how many."""
        drawn = (
            "exemplars" if not torch.equal(self.drawn, self.centres[:, : self.drawn.shape[1]]) else "centres"
        )
        quantiles = f", luminance quantiles x{self.quantile_weight:g}" if self.quantile_weight else ""
        return (
            f"patch k-means {self.patch}x{self.patch}, {self.codebook_size} codes ({drawn} drawn{quantiles})"
        )

    @torch.no_grad()
    def reconstruct(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(pixels))

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``centres.safetensors`` (the centres and what each code draws) and ``medim_image_tokenizer.json``
        (``"kind": "patch_kmeans"``)."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(
            {"centres": self.centres.contiguous().cpu(), "drawn": self.drawn.contiguous().cpu()},
            str(directory / _CENTRES_FILE),
        )
        meta = {
            "format_version": 1,
            "kind": KIND,
            "image_size": self.image_size,
            "patch": self.patch,
            "channels": self.channels,
            "grid_size": list(self.grid_size),
            "codebook_size": self.codebook_size,
            "quantile_weight": self.quantile_weight,
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
        tensors = load_file(str(directory / _CENTRES_FILE))
        if "centres" not in tensors:
            raise ValueError(f"{directory / _CENTRES_FILE} has no 'centres' tensor")
        tokenizer = cls(
            tensors["centres"],
            patch=meta["patch"],
            image_size=meta["image_size"],
            channels=meta.get("channels", 3),
            quantile_weight=meta.get("quantile_weight", 0.0),
            drawn=tensors.get("drawn"),  # files without it draw their centres
        )
        return tokenizer.to(device) if device is not None else tokenizer

    # ------------------------------------------------------------------ validation
    def _check_pixels(self, pixels: torch.Tensor) -> None:
        check_pixels(pixels, self.channels, self.image_size)

    def _check_ids(self, ids: torch.Tensor) -> None:
        check_ids(ids, self.grid_size, self.codebook_size)


def _nearest_members(features: torch.Tensor, centres: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """For each centre, the row of ``vectors`` whose ``features`` are nearest to it among the rows assigned to it
    (a centre no row is assigned to keeps its own pixel part)."""
    assigned, distance = [], []
    for i in range(0, len(features), _ENCODE_CHUNK):
        nearest = torch.cdist(features[i : i + _ENCODE_CHUNK], centres).min(1)
        assigned.append(nearest.indices)
        distance.append(nearest.values)
    assigned, distance = torch.cat(assigned), torch.cat(distance)
    # sort by (centre, distance): the first row of each centre's run is its nearest member
    order = torch.argsort(distance, stable=True)
    order = order[torch.argsort(assigned[order], stable=True)]
    codes, counts = torch.unique_consecutive(assigned[order], return_counts=True)
    first = torch.cumsum(counts, 0) - counts
    drawn = centres[:, : vectors.shape[1]].clone()
    drawn[codes] = vectors[order[first]]
    return drawn
