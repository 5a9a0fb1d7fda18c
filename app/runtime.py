"""The demo's runtime: which checkpoints exist, loading them (cached, lazily), thread count and the model card.

Nothing is loaded at import time. `ModelManager.get(key)` loads a checkpoint on first use and keeps the last few
in memory, so each browser session can choose its own checkpoint without reloading for every request; a
checkpoint that fails to load raises `CheckpointError` and leaves the cache (and every session's current choice)
as it was.
"""

from __future__ import annotations

import html
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets"
DEFAULT_CHECKPOINT = ASSETS / "default"
DEFAULT_THREADS = 2

logger = logging.getLogger(__name__)

DISCLAIMER = (
    "**Research demo — not for clinical use.** Generated images and reports are synthetic and may be wrong; "
    "never use them for diagnosis or treatment."
)


class CheckpointError(ValueError):
    """A checkpoint could not be found or loaded; the message says which and why."""


def configure_threads(env: dict[str, str] | None = None) -> int:
    """Set torch's intra-op threads from MEDIM_THREADS (default 2, the size of a basic Space) and return it."""
    import torch

    env = os.environ if env is None else env
    raw = env.get("MEDIM_THREADS", str(DEFAULT_THREADS))
    try:
        threads = int(raw)
    except ValueError as error:
        raise ValueError(f"MEDIM_THREADS must be a positive integer, got {raw!r}") from error
    if threads < 1:
        raise ValueError(f"MEDIM_THREADS must be a positive integer, got {raw!r}")
    torch.set_num_threads(threads)
    return threads


def default_checkpoint_key(env: dict[str, str] | None = None) -> str:
    """$MEDIM_CHECKPOINT when set, else the bundled assets/default."""
    env = os.environ if env is None else env
    return normalise_key(env.get("MEDIM_CHECKPOINT") or str(DEFAULT_CHECKPOINT))


def widget_sampler_defaults(env: dict[str, str] | None = None):
    """The sampler settings the widgets start at: the default checkpoint's sampler_config.json when it is a local
    directory (what the model card and evaluation measured), else the library's SamplerConfig defaults."""
    from medim.config import SamplerConfig

    try:
        key = default_checkpoint_key(env)
    except CheckpointError:
        return SamplerConfig()
    path = Path(key) / "sampler_config.json"
    return SamplerConfig.load(path) if path.is_file() else SamplerConfig()


def normalise_key(path_or_id: str) -> str:
    """Local directories become absolute paths; hub ids (owner/name) stay as they are."""
    text = str(path_or_id).strip()
    if not text:
        raise CheckpointError("no checkpoint given: choose one from the list or type a directory or hub id")
    local = Path(text).expanduser()
    if local.is_dir():
        return str(local.resolve())
    return text


def display_name(key: str) -> str:
    """A short name for a checkpoint that does not reveal server paths: repo-relative, else the folder name."""
    path = Path(key)
    if path.is_absolute():
        try:
            return str(path.relative_to(REPO_ROOT))
        except ValueError:
            return path.name
    return key


def local_checkpoints(root: Path = ASSETS, depth: int = 2) -> list[str]:
    """Checkpoint directories (holding medim_config.json) under `root`, at most `depth` levels down."""
    if not root.is_dir():
        return []
    found = []
    for config in sorted(root.glob("**/medim_config.json")):
        if len(config.relative_to(root).parts) - 1 <= depth:
            found.append(str(config.parent.resolve()))
    return found


class ModelManager:
    """Loads MeDiM pipelines on demand and keeps the `cache_size` most recently used ones.

    Args:
        default: checkpoint key used when a session has not chosen one (default: $MEDIM_CHECKPOINT or
            assets/default).
        loader: `key -> MeDiMPipeline` (default `MeDiMPipeline.from_pretrained` on the CPU/GPU default device).
        cache_size: how many pipelines stay loaded.
    """

    def __init__(
        self,
        default: str | None = None,
        *,
        loader: Callable[[str], Any] | None = None,
        cache_size: int = 2,
    ):
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self.default_key = normalise_key(default) if default else default_checkpoint_key()
        self._loader = loader or _load_pipeline
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._pinned: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.cache_size = cache_size

    def add(self, key: str, pipe) -> str:
        """Register an in-memory pipeline under `key` (never evicted); returns the key."""
        self._pinned[key] = pipe
        return key

    def is_loaded(self, key: str | None) -> bool:
        key = key or self.default_key
        return key in self._pinned or key in self._cache

    def get(self, key: str | None = None):
        """The pipeline for `key` (None: the default), loading it on first use; raises CheckpointError."""
        key = key or self.default_key
        if key in self._pinned:
            return self._pinned[key]
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            try:
                pipe = self._loader(key)
            except Exception as error:  # any failure (missing files, bad JSON, shape mismatch, offline hub)
                logger.warning("checkpoint %s failed to load: %s", display_name(key), error)
                raise CheckpointError(
                    f"Could not load checkpoint {display_name(key)!r}: {_short(error)}"
                ) from error
            self._cache[key] = pipe
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return pipe

    def choices(self) -> list[tuple[str, str]]:
        """(label, key) for the checkpoint dropdown: the default, local ones under assets/, and loaded ones."""
        keys = [self.default_key, *local_checkpoints(), *self._pinned, *self._cache]
        seen, out = set(), []
        for key in keys:
            if key not in seen:
                seen.add(key)
                out.append((display_name(key), key))
        return out


def _load_pipeline(key: str):
    from medim.pipeline import MeDiMPipeline

    return MeDiMPipeline.from_pretrained(key)


def _short(error: Exception, limit: int = 300) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------------------


def requires_gpu(pipe) -> bool:
    return bool(pipe.info.get("requires_gpu"))


def is_untrained(pipe) -> bool:
    return pipe.info.get("kind") == "random-init"


def model_warnings(pipe) -> list[str]:
    """Warnings a user should see about the loaded checkpoint."""
    out = []
    if is_untrained(pipe):
        out.append("This checkpoint is randomly initialised (untrained): its outputs are noise.")
    if requires_gpu(pipe):
        out.append(
            "This checkpoint is marked as needing a GPU: on this CPU-only machine each step can take minutes."
        )
    return out


def model_summary(pipe, key: str) -> str:
    """One line for the header: name, kind, sizes and a short hash."""
    config = pipe.config
    sha = (pipe.checkpoint_hash or "")[:12] or "in-memory"
    kind = pipe.info.get("kind", "checkpoint")
    h, w = config.image_grid
    return (
        f"**{html.escape(display_name(key))}** · {kind} · {config.image_size}×{config.image_size} px, "
        f"{h}×{w} image tokens, {config.max_text_tokens} report tokens · sha256 `{sha}`"
    )


def model_card(pipe, key: str) -> str:
    """Markdown model card: MODEL_CARD.md from the checkpoint when it has one, else built from `pipe.info`."""
    card_path = Path(key) / "MODEL_CARD.md" if Path(key).is_dir() else None
    warnings = "".join(f"\n\n> ⚠️ {text}" for text in model_warnings(pipe))
    if card_path is not None and card_path.is_file():
        body = card_path.read_text(encoding="utf-8", errors="replace")[:20_000]
        return f"{DISCLAIMER}{warnings}\n\n{body}"
    config = pipe.config
    info = {k: v for k, v in pipe.info.items() if k not in ("path", "sha256")}
    n_params = sum(p.numel() for p in pipe.model.parameters())
    lines = [
        DISCLAIMER + warnings,
        "",
        f"### {display_name(key)}",
        "",
        info.get("description", "A MeDiM checkpoint (no model card shipped with it)."),
        "",
        "| property | value |",
        "|---|---|",
        f"| kind | {info.get('kind', 'unknown')} |",
        f"| backbone | {config.model_type}, {n_params:,} parameters |",
        f"| image | {config.image_size}×{config.image_size} px, {config.image_grid[0]}×{config.image_grid[1]} "
        f"image tokens, codebook {config.codebook_size} |",
        f"| image tokenizer | {html.escape(pipe.image_tokenizer.describe())} |",
        f"| report | up to {config.max_text_tokens} tokens, vocabulary {config.text_vocab_size} |",
        f"| domains | {', '.join(config.domains)} |",
        f"| sha256 | `{pipe.checkpoint_hash or 'in-memory'}` |",
    ]
    extra = {k: v for k, v in info.items() if k not in ("kind", "description")}
    for name, value in sorted(extra.items()):
        lines.append(f"| {html.escape(str(name))} | {html.escape(str(value))[:200]} |")
    lines += [
        "",
        "**What it is:** a masked discrete diffusion model that writes report tokens and image tokens in one "
        "sequence. **What it is not:** a diagnostic device, nor a model of real patients — the default "
        "checkpoint is trained on synthetic phantom images and template reports.",
    ]
    return "\n".join(lines)
