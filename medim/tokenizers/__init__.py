"""MeDiM tokenizers: the image tokenizers (the VQ in ``image``, patch k-means in ``patch_kmeans``, grey/colour routing
between two in ``routed``; ``load_image_tokenizer`` loads any), VQ training (``vq_training``) and the BPE text tokenizer.

Names are re-exported lazily so that ``import medim.tokenizers`` stays cheap: the image tokenizer pulls in
``diffusers`` (several seconds to import) only when one of its names is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "TokenizerNotFoundError": "._hub",
    "VQConfig": ".image",
    "VQImageTokenizer": ".image",
    "load_image_tokenizer": ".image",
    "PatchKMeansTokenizer": ".patch_kmeans",
    "RoutedImageTokenizer": ".routed",
    "VQTrainingOptions": ".vq_training",
    "VQTrainingRecipe": ".vq_training",
    "default_demo_vq_config": ".vq_training",
    "default_demo_vq_recipe": ".vq_training",
    "evaluate_vq": ".vq_training",
    "train_vq": ".vq_training",
    "load_text_tokenizer": ".text",
    "train_bpe_tokenizer": ".text",
}

__all__ = [
    "PatchKMeansTokenizer",
    "RoutedImageTokenizer",
    "TokenizerNotFoundError",
    "VQConfig",
    "VQImageTokenizer",
    "VQTrainingOptions",
    "VQTrainingRecipe",
    "default_demo_vq_config",
    "default_demo_vq_recipe",
    "evaluate_vq",
    "load_image_tokenizer",
    "load_text_tokenizer",
    "train_bpe_tokenizer",
    "train_vq",
]

if TYPE_CHECKING:
    from ._hub import TokenizerNotFoundError
    from .image import VQConfig, VQImageTokenizer, load_image_tokenizer
    from .patch_kmeans import PatchKMeansTokenizer
    from .routed import RoutedImageTokenizer
    from .text import load_text_tokenizer, train_bpe_tokenizer
    from .vq_training import (
        VQTrainingOptions,
        VQTrainingRecipe,
        default_demo_vq_config,
        default_demo_vq_recipe,
        evaluate_vq,
        train_vq,
    )


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
