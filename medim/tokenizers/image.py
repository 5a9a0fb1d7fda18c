"""VQ image tokenizer: a thin wrapper around ``diffusers.VQModel`` mapping images to grids of codebook ids and back."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from diffusers import VQModel
from torch import nn

from ._hub import resolve_pretrained_dir

TOKENIZER_META_FILE = "medim_image_tokenizer.json"
_VQ_CONFIG_FILE = "config.json"
_VQ_WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
_META_FORMAT_VERSION = 1
# Inputs may overshoot [-1, 1] slightly after resizing/normalisation; anything beyond this is a wrong pixel scale.
_PIXEL_RANGE_TOLERANCE = 1e-3


@dataclass
class VQConfig:
    """Architecture of the VQ image tokenizer (the ``diffusers.VQModel`` arguments MeDiM uses).

    The encoder halves the resolution once per block after the first, so the grid side is
    ``image_size / 2 ** (len(block_out_channels) - 1)``.
    """

    image_size: int = 64
    block_out_channels: tuple[int, ...] = (32, 64, 64, 128)
    layers_per_block: int = 1
    latent_channels: int = 64
    vq_embed_dim: int = 16
    num_vq_embeddings: int = 512
    norm_num_groups: int = 16
    mid_block_add_attention: bool = True
    in_channels: int = 3
    down_block_types: tuple[str, ...] = field(default=())
    up_block_types: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        n_blocks = len(self.block_out_channels)
        if n_blocks < 1:
            raise ValueError(f"block_out_channels must not be empty, got {self.block_out_channels!r}")
        self.down_block_types = tuple(self.down_block_types) or ("DownEncoderBlock2D",) * n_blocks
        self.up_block_types = tuple(self.up_block_types) or ("UpDecoderBlock2D",) * n_blocks
        if len(self.down_block_types) != n_blocks or len(self.up_block_types) != n_blocks:
            raise ValueError(
                f"need one down and one up block type per entry of block_out_channels ({n_blocks}), got "
                f"{len(self.down_block_types)} down and {len(self.up_block_types)} up"
            )
        for name in (
            "image_size",
            "layers_per_block",
            "latent_channels",
            "vq_embed_dim",
            "num_vq_embeddings",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for channels in self.block_out_channels:
            if channels % self.norm_num_groups:
                raise ValueError(
                    f"norm_num_groups={self.norm_num_groups} must divide every block_out_channels entry, "
                    f"got {self.block_out_channels!r}"
                )
        if self.image_size % self.downsample_factor:
            raise ValueError(
                f"image_size={self.image_size} is not divisible by the downsample factor {self.downsample_factor} "
                f"implied by {n_blocks} blocks"
            )

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    def build_vq_model(self) -> VQModel:
        """A freshly initialised ``diffusers.VQModel`` with this architecture."""
        return VQModel(
            in_channels=self.in_channels,
            out_channels=self.in_channels,
            down_block_types=self.down_block_types,
            up_block_types=self.up_block_types,
            block_out_channels=self.block_out_channels,
            layers_per_block=self.layers_per_block,
            latent_channels=self.latent_channels,
            num_vq_embeddings=self.num_vq_embeddings,
            vq_embed_dim=self.vq_embed_dim,
            norm_num_groups=self.norm_num_groups,
            sample_size=self.image_size,
            mid_block_add_attention=self.mid_block_add_attention,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> VQConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown VQConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**values)


class VQImageTokenizer(nn.Module):
    """Images in ``[-1, 1]`` ⟷ row-major grids of VQ codebook ids.

    ``encode`` runs the VQModel encoder, ``quant_conv`` and nearest-codebook lookup; ``decode`` looks the ids up in
    the codebook and runs ``post_quant_conv`` and the decoder, so ``decode(encode(x))`` is exactly the VQModel's own
    quantised reconstruction ``vq_model(x).sample`` (clamped to ``[-1, 1]``).
    """

    def __init__(self, vq_model: VQModel, image_size: int) -> None:
        super().__init__()
        if not isinstance(vq_model, VQModel):
            raise ValueError(f"vq_model must be a diffusers.VQModel, got {type(vq_model).__name__}")
        image_size = int(image_size)
        factor = 2 ** (len(vq_model.config.block_out_channels) - 1)
        if image_size < 1 or image_size % factor:
            raise ValueError(
                f"image_size={image_size} must be a positive multiple of the downsample factor {factor}"
            )
        self.vq_model = vq_model
        self._image_size = image_size
        self._downsample_factor = factor

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: VQConfig | dict | None = None, **overrides) -> VQImageTokenizer:
        """A randomly initialised tokenizer from a ``VQConfig`` (or a dict of its fields), with field overrides."""
        if config is None:
            config = VQConfig(**overrides)
        else:
            values = config.to_dict() if isinstance(config, VQConfig) else dict(config)
            values.update(overrides)
            config = VQConfig.from_dict(values)
        return cls(config.build_vq_model(), config.image_size)

    # ------------------------------------------------------------------ properties
    @property
    def codebook_size(self) -> int:
        return int(self.vq_model.config.num_vq_embeddings)

    @property
    def codebook(self) -> torch.Tensor:
        """The codebook embedding weights, ``[codebook_size, vq_embed_dim]`` (a live parameter, not a copy)."""
        return self.vq_model.quantize.embedding.weight

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def downsample_factor(self) -> int:
        return self._downsample_factor

    @property
    def grid_size(self) -> tuple[int, int]:
        side = self._image_size // self._downsample_factor
        return side, side

    @property
    def num_tokens(self) -> int:
        """Tokens per image, ``h * w``."""
        h, w = self.grid_size
        return h * w

    @property
    def device(self) -> torch.device:
        return self.codebook.device

    @property
    def dtype(self) -> torch.dtype:
        return self.codebook.dtype

    # ------------------------------------------------------------------ differentiable pieces (used by training)
    def encode_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """Continuous pre-quantisation latents: ``[B, 3, H, W]`` → ``[B, vq_embed_dim, h, w]``."""
        return self.vq_model.encode(pixels).latents

    def nearest_codes(self, latents: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook vector (Euclidean) per position: ``[B, D, h, w]`` → ``[B, h*w]``."""
        batch, dim, h, w = latents.shape
        flat = latents.permute(0, 2, 3, 1).reshape(-1, dim)
        # The same distance and argmin as diffusers' VectorQuantizer, so ids agree with vq_model(x).
        ids = torch.cdist(flat, self.codebook).argmin(dim=1)
        return ids.view(batch, h * w)

    def lookup_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Codebook vectors for ids: ``[B, h*w]`` → ``[B, vq_embed_dim, h, w]``."""
        h, w = self.grid_size
        return self.codebook[ids].view(ids.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous()

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Decoder on quantised latents (no clamping): ``[B, vq_embed_dim, h, w]`` → ``[B, 3, H, W]``."""
        return self.vq_model.decode(codes, force_not_quantize=True).sample

    # ------------------------------------------------------------------ public API
    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Tokenize images.

        Args:
            pixels: float tensor ``[B, 3, H, W]`` in ``[-1, 1]`` with ``H == W == image_size``.

        Returns:
            LongTensor ``[B, h*w]`` of codebook ids in ``[0, codebook_size)``, row-major over the ``h x w`` grid.
        """
        self._check_pixels(pixels)
        pixels = pixels.to(device=self.device, dtype=self.dtype)
        return self.nearest_codes(self.encode_latents(pixels))

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Render images from ids.

        Args:
            ids: integer tensor ``[B, h*w]`` (row-major grid) with values in ``[0, codebook_size)``.

        Returns:
            FloatTensor ``[B, 3, H, W]`` clamped to ``[-1, 1]``.
        """
        self._check_ids(ids)
        codes = self.lookup_codes(ids.to(device=self.device, dtype=torch.long))
        return self.decode_codes(codes).clamp(-1.0, 1.0)

    def describe(self) -> str:
        """One line for ``medim info``: what kind of codes, how many."""
        return f"VQ, {self.codebook_size} codes"

    @torch.no_grad()
    def reconstruct(self, pixels: torch.Tensor) -> torch.Tensor:
        """``decode(encode(pixels))``: ``[B, 3, H, W]`` → ``[B, 3, H, W]`` in ``[-1, 1]``."""
        return self.decode(self.encode(pixels))

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + safetensors weights (diffusers format) and ``medim_image_tokenizer.json``."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.vq_model.save_pretrained(directory, safe_serialization=True)
        meta = {
            "format_version": _META_FORMAT_VERSION,
            "image_size": self.image_size,
            "grid_size": list(self.grid_size),
            "codebook_size": self.codebook_size,
        }
        (directory / TOKENIZER_META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, *, device: str | torch.device | None = None
    ) -> VQImageTokenizer:
        """Load a tokenizer saved by ``save_pretrained`` from a local directory or a Hugging Face Hub id.

        A local directory is used when it exists; otherwise the id is fetched from the hub (served from the cache
        when ``HF_HUB_OFFLINE=1``). Raises ``TokenizerNotFoundError`` naming the path/id and files looked for.
        """
        directory = resolve_pretrained_dir(
            name_or_path,
            [_VQ_CONFIG_FILE, _VQ_WEIGHTS_FILE, TOKENIZER_META_FILE],
            what="VQ image tokenizer",
        )
        meta = json.loads((directory / TOKENIZER_META_FILE).read_text())
        if "image_size" not in meta:
            raise ValueError(f"{directory / TOKENIZER_META_FILE} has no 'image_size' entry: {meta!r}")
        vq_model = VQModel.from_pretrained(directory)
        tokenizer = cls(vq_model, meta["image_size"]).eval()
        if device is not None:
            tokenizer.to(device)
        return tokenizer

    # ------------------------------------------------------------------ validation
    def _check_pixels(self, pixels: torch.Tensor) -> None:
        check_pixels(pixels, self.vq_model.config.in_channels, self.image_size)

    def _check_ids(self, ids: torch.Tensor) -> None:
        check_ids(ids, self.grid_size, self.codebook_size)


def check_pixels(pixels: torch.Tensor, channels: int, image_size: int) -> None:
    """ValueError unless ``pixels`` is a float ``[B, channels, image_size, image_size]`` tensor in ``[-1, 1]``."""
    if not isinstance(pixels, torch.Tensor) or not pixels.is_floating_point():
        raise ValueError(f"pixels must be a float tensor, got {getattr(pixels, 'dtype', type(pixels))}")
    expected = (channels, image_size, image_size)
    if pixels.ndim != 4 or tuple(pixels.shape[1:]) != expected:
        raise ValueError(
            f"pixels must have shape [B, {', '.join(map(str, expected))}], got {list(pixels.shape)}"
        )
    if pixels.numel():
        low, high = pixels.min().item(), pixels.max().item()
        if low < -1 - _PIXEL_RANGE_TOLERANCE or high > 1 + _PIXEL_RANGE_TOLERANCE:
            raise ValueError(f"pixels must lie in [-1, 1], got values in [{low:.4g}, {high:.4g}]")


def check_ids(ids: torch.Tensor, grid_size: tuple[int, int], codebook_size: int) -> None:
    """ValueError unless ``ids`` is an integer ``[B, h*w]`` tensor of codes in ``[0, codebook_size)``."""
    tokens = grid_size[0] * grid_size[1]
    if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"ids must be an integer tensor, got {getattr(ids, 'dtype', type(ids))}")
    if ids.ndim != 2 or ids.shape[1] != tokens:
        raise ValueError(
            f"ids must have shape [B, {tokens}] (grid {tuple(grid_size)}), got {list(ids.shape)}"
        )
    if ids.numel():
        low, high = ids.min().item(), ids.max().item()
        if low < 0 or high >= codebook_size:
            raise ValueError(f"ids must lie in [0, {codebook_size}), got values in [{low}, {high}]")


def load_image_tokenizer(name_or_path: str | os.PathLike, *, device: str | torch.device | None = None):
    """The image tokenizer saved in a directory (or hub id): a :class:`VQImageTokenizer`, or a
    :class:`~medim.tokenizers.patch_kmeans.PatchKMeansTokenizer` when its ``medim_image_tokenizer.json`` says
    ``"kind": "patch_kmeans"``, or a :class:`~medim.tokenizers.routed.RoutedImageTokenizer` for ``"routed"``."""
    from .patch_kmeans import KIND, PatchKMeansTokenizer
    from .routed import KIND as ROUTED
    from .routed import RoutedImageTokenizer

    directory = resolve_pretrained_dir(name_or_path, [TOKENIZER_META_FILE], what="image tokenizer")
    try:
        kind = json.loads((directory / TOKENIZER_META_FILE).read_text()).get("kind", "vq")
    except (ValueError, AttributeError) as error:
        raise ValueError(
            f"{directory / TOKENIZER_META_FILE} is not a MeDiM image tokenizer file: {error}"
        ) from error
    if kind == KIND:
        return PatchKMeansTokenizer.from_pretrained(directory, device=device)
    if kind == ROUTED:
        return RoutedImageTokenizer.from_pretrained(directory, device=device)
    if kind != "vq":
        raise ValueError(f"{directory / TOKENIZER_META_FILE}: unknown image tokenizer kind {kind!r}")
    return VQImageTokenizer.from_pretrained(directory, device=device)
