"""Image-generation metrics: FID and IS with a user-supplied Inception-v3, and a domain Fréchet distance.

Both go through torchmetrics (``FrechetInceptionDistance`` / ``InceptionScore`` with a ``feature`` module), so the
statistics are computed the standard way; only the feature extractor differs, and every result names it.

**FID / IS.** The Inception-v3 weights cannot be downloaded at run time, and torchmetrics' default extractor
needs torch-fidelity (not installable beside this torch), so the network is loaded from a local file
(:func:`load_inception`). Accepted formats:

- the TorchScript Inception of the TF-FID lineage, ``inception-2015-12-05.pt`` (StyleGAN2-ADA / StyleGAN3,
  clean-fid, ADM use it): recognised by its ``forward(img, return_features=..., no_output_bias=...)``;
  FID uses its 2048-d pool features, IS its 1008-way softmax without output bias, as in those codebases;
- any other TorchScript (``torch.jit.save``) or ``torch.export`` (``.pt2``) program that takes float images
  [N, 3, 299, 299] in [0, 1] and returns features [N, D] (FID only), or a tuple ``(features [N, D],
  logits [N, C])`` (FID and IS). Export it with a dynamic batch dimension
  (``dynamic_shapes={"x": {0: torch.export.Dim("batch")}}``).

Only load files you trust: TorchScript and exported programs run the code they contain.
Without a file, FID/IS are skipped and :data:`INCEPTION_UNAVAILABLE` says why.

**Domain FD.** The Fréchet distance on the penultimate features of the consistency judge
(:mod:`medim.metrics.judge`), a small CNN trained on the synthetic training split: available offline and
sensitive to the findings the corpus draws, but on its own scale — never compare it with Inception FID.
"""

from __future__ import annotations

import hashlib
import inspect
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

__all__ = [
    "INCEPTION_UNAVAILABLE",
    "FeatureExtractor",
    "InceptionNetwork",
    "frechet_distance",
    "images_to_uint8",
    "inception_metrics",
    "inception_score",
    "load_inception",
]

INCEPTION_UNAVAILABLE = (
    "FID/IS skipped: they need Inception-v3 weights, which cannot be downloaded here and are not bundled. Pass a "
    "local TorchScript or torch.export file (e.g. --inception inception-2015-12-05.pt, the StyleGAN3/clean-fid "
    "Inception); see docs/evaluation.md."
)


def images_to_uint8(images: Sequence[Image.Image], size: int | None = None) -> torch.Tensor:
    """PIL images (grey or RGB) -> uint8 tensor [N, 3, H, W]; resized (bicubic) to ``size`` x ``size`` if given,
    otherwise all images must share one size."""
    if not images:
        raise ValueError("no images given")
    arrays = []
    for index, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise ValueError(f"images[{index}] is a {type(image).__name__}, expected a PIL image")
        image = image.convert("RGB")
        if size is not None and image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        arrays.append(np.asarray(image, dtype=np.uint8))
    shapes = {array.shape for array in arrays}
    if len(shapes) > 1:
        raise ValueError(f"images have different sizes {sorted(shapes)}; pass size= to resize them")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


class FeatureExtractor(nn.Module):
    """A feature network for torchmetrics' Fréchet distance: uint8 images [N, 3, H, W] -> features [N, D].

    ``describe()`` is what the metrics report as their feature extractor, so numbers computed with different
    networks are never mixed up.
    """

    num_features: int

    def describe(self) -> dict:
        raise NotImplementedError


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class InceptionNetwork(FeatureExtractor):
    """An Inception-v3 loaded from a local file (see the module docstring for the formats).

    ``forward(uint8 [N, 3, H, W]) -> pool features [N, D]``; ``logits(uint8 images) -> [N, C]`` class logits
    for IS (None when the network has no classifier output).
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        flavour: str,
        source: Path,
        sha256: str,
        num_features: int,
        has_logits: bool,
    ):
        super().__init__()
        # held outside the module tree: an exported program refuses .eval()/.train(), which torchmetrics calls
        self._network = (network,)
        self.flavour = flavour
        self.source = source
        self.sha256 = sha256
        self.num_features = num_features
        self.has_logits = has_logits

    @property
    def network(self):
        return self._network[0]

    def _call(self, images: torch.Tensor, **kwargs):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        with torch.no_grad():
            if self.flavour == "tf-inception-2015-12-05":
                # the TF-FID network takes 0..255 floats at any size and resizes to 299 itself
                return self.network(images.float(), **kwargs)
            pixels = torch.nn.functional.interpolate(
                images.float() / 255.0, size=(299, 299), mode="bilinear", align_corners=False, antialias=True
            )
            if len(pixels) == 1:  # exported programs specialise batch sizes 0/1: run a pair, keep one
                out = self.network(pixels.expand(2, -1, -1, -1))
                return tuple(o[:1] for o in out) if isinstance(out, tuple | list) else out[:1]
            return self.network(pixels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.flavour == "tf-inception-2015-12-05":
            return self._call(images, return_features=True).float()
        out = self._call(images)
        return (out[0] if isinstance(out, tuple | list) else out).float()

    def logits(self, images: torch.Tensor) -> torch.Tensor | None:
        if not self.has_logits:
            return None
        if self.flavour == "tf-inception-2015-12-05":
            probabilities = self._call(images, no_output_bias=True).float()
            # InceptionScore applies softmax; log-probabilities survive it unchanged
            return probabilities.clamp_min(1e-12).log()
        return self._call(images)[1].float()

    def describe(self) -> dict:
        return {
            "name": f"inception-v3 ({self.flavour})",
            "file": str(self.source),
            "sha256": self.sha256,
            "features": self.num_features,
        }


class _LogitsView(nn.Module):
    """Adapter so torchmetrics' InceptionScore calls InceptionNetwork.logits."""

    def __init__(self, network: InceptionNetwork):
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network.logits(images)


def _forward_argument_names(network) -> list[str]:
    schema = getattr(getattr(network, "forward", None), "schema", None)
    if schema is not None:  # TorchScript
        return [argument.name for argument in schema.arguments]
    try:
        return list(inspect.signature(network.forward).parameters)
    except (TypeError, ValueError):
        return []


def load_inception(path: str | Path) -> InceptionNetwork:
    """Load an Inception-v3 from a local TorchScript (``torch.jit.save``) or torch.export (``.pt2``) file.

    Raises ValueError naming the file when it is missing, not such an archive, or returns the wrong shapes.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"Inception file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a TorchScript or torch.export archive (a plain state dict or pickle is not accepted: "
            "without torchvision there is no Inception-v3 class to load it into)"
        )
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    try:
        if any(name.endswith("archive_format") for name in names):
            network = torch.export.load(str(path)).module()
        elif any("/code/" in name for name in names):
            network = torch.jit.load(str(path), map_location="cpu")
        else:
            raise ValueError(f"{path} is a zip archive but neither TorchScript nor torch.export")
    except ValueError:
        raise
    except Exception as error:  # corrupt archive, unsupported operators, version skew
        raise ValueError(f"could not load {path}: {type(error).__name__}: {error}") from error
    if isinstance(network, torch.jit.ScriptModule):
        network.eval()
    arguments = _forward_argument_names(network)
    flavour = (
        "tf-inception-2015-12-05" if {"return_features", "no_output_bias"} <= set(arguments) else "generic"
    )
    probe = torch.full((2, 3, 299, 299), 128, dtype=torch.uint8)
    wrapper = InceptionNetwork(
        network,
        flavour=flavour,
        source=path,
        sha256=_sha256(path),
        num_features=0,
        has_logits=flavour != "generic",
    )
    try:
        features = wrapper(probe)
        raw = None if flavour != "generic" else wrapper._call(probe)
    except Exception as error:
        raise ValueError(f"{path}: running the network on [2, 3, 299, 299] images failed: {error}") from error
    if features.dim() != 2 or features.shape[0] != 2:
        raise ValueError(f"{path}: expected features [N, D] from the network, got {tuple(features.shape)}")
    wrapper.num_features = int(features.shape[1])
    if flavour == "generic":
        wrapper.has_logits = isinstance(raw, tuple | list) and len(raw) == 2 and raw[1].dim() == 2
    return wrapper


def frechet_distance(
    real: torch.Tensor | Sequence[Image.Image],
    fake: torch.Tensor | Sequence[Image.Image],
    extractor: FeatureExtractor,
    *,
    batch_size: int = 64,
) -> dict:
    """Fréchet distance between two image sets in the feature space of ``extractor`` (torchmetrics FID).

    Args:
        real, fake: uint8 tensors [N, 3, H, W] or lists of PIL images (N >= 2 each).
        extractor: a :class:`FeatureExtractor` (an :class:`InceptionNetwork` for FID, the judge for domain FD).

    Returns:
        ``{"value": float, "n_real": int, "n_fake": int, "feature_extractor": extractor.describe()}``.
        With fewer samples than feature dimensions the covariances are rank-deficient and the value is biased
        upwards: compare only numbers computed with the same N.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _as_uint8(real), _as_uint8(fake)
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(
            f"the Fréchet distance needs at least 2 images per set, got {len(real)} and {len(fake)}"
        )
    metric = FrechetInceptionDistance(feature=extractor, normalize=False)
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            metric.update(images[start : start + batch_size], real=is_real)
    value = float(metric.compute())
    return {
        "value": max(value, 0.0),
        "n_real": len(real),
        "n_fake": len(fake),
        "feature_extractor": extractor.describe(),
    }


def inception_score(
    images: torch.Tensor | Sequence[Image.Image],
    network: InceptionNetwork,
    *,
    splits: int = 10,
    seed: int = 0,
) -> dict:
    """Inception score (torchmetrics) of uint8 images [N, 3, H, W]: ``{"mean", "std", "n", "splits",
    "feature_extractor"}``. ``splits`` is reduced to N when N is smaller."""
    from torchmetrics.image.inception import InceptionScore

    if not network.has_logits:
        raise ValueError(
            f"{network.source} has no classifier output, so no Inception score (FID still works)"
        )
    images = _as_uint8(images)
    splits = max(1, min(splits, len(images)))
    metric = InceptionScore(feature=_LogitsView(network), splits=splits, normalize=False)
    for start in range(0, len(images), 64):
        metric.update(images[start : start + 64])
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # compute() shuffles before splitting
    try:
        mean, std = metric.compute()
    finally:
        torch.random.set_rng_state(state)
    return {
        "mean": float(mean),
        "std": float(std) if splits > 1 else 0.0,
        "n": len(images),
        "splits": splits,
        "feature_extractor": network.describe(),
    }


def inception_metrics(real, fake, network: InceptionNetwork | None) -> dict:
    """FID (and IS of ``fake``) when a network is given; otherwise ``{"skipped": INCEPTION_UNAVAILABLE}``."""
    if network is None:
        return {"skipped": INCEPTION_UNAVAILABLE}
    result = {"fid": frechet_distance(real, fake, network)}
    if network.has_logits:
        result["is"] = inception_score(fake, network)
    else:
        result["is"] = {"skipped": f"{network.source} has no classifier output"}
    return result


def _as_uint8(images) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        return images
    return images_to_uint8(list(images))
