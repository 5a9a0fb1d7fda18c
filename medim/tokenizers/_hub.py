"""Resolve a tokenizer location: a local directory first, then a Hugging Face Hub id (cache, or download when online)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


class TokenizerNotFoundError(FileNotFoundError, ValueError):
    """A tokenizer directory or hub id could not be resolved; the message names what was looked for."""


def resolve_pretrained_dir(
    name_or_path: str | os.PathLike,
    required_files: Sequence[str],
    *,
    what: str,
    optional_patterns: Sequence[str] = (),
) -> Path:
    """Return a local directory holding ``required_files`` for ``name_or_path``.

    Resolution order: an existing local directory; otherwise ``name_or_path`` is read as a Hugging Face Hub repo
    id and fetched with ``huggingface_hub.snapshot_download`` (served from the local cache when offline).

    Args:
        name_or_path: local directory or hub repo id (``"owner/name"``).
        required_files: file names that must be present in the directory (e.g. ``["config.json"]``).
        what: human-readable name of the artefact, used in error messages.
        optional_patterns: extra glob patterns fetched from the hub when present (e.g. ``["*.safetensors"]``).

    Raises:
        TokenizerNotFoundError: nothing usable was found; the message names the path or id and the files.
    """
    if not str(name_or_path).strip():
        raise TokenizerNotFoundError(f"{what}: empty path or hub id {name_or_path!r}")
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        missing = [name for name in required_files if not (local / name).is_file()]
        if missing:
            raise TokenizerNotFoundError(
                f"{what}: directory {str(local)!r} exists but lacks {missing} (expected files: {list(required_files)})"
            )
        return local
    if local.exists():
        raise TokenizerNotFoundError(f"{what}: {str(local)!r} is a file; expected a directory or a hub id")

    # Not a local directory: try it as a hub id. Imported here so that purely local use never touches the hub code.
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}
    try:
        snapshot = Path(
            snapshot_download(repo_id=str(name_or_path), allow_patterns=[*required_files, *optional_patterns])
        )
    except HFValidationError as err:
        raise TokenizerNotFoundError(
            f"{what}: no local directory {str(local)!r}, and {str(name_or_path)!r} is not a valid hub repo id"
        ) from err
    except LocalEntryNotFoundError as err:
        mode = "offline (HF_HUB_OFFLINE is set)" if offline else "the hub could not be reached"
        raise TokenizerNotFoundError(
            f"{what}: no local directory {str(local)!r}, and hub id {str(name_or_path)!r} is not in the local "
            f"Hugging Face cache; {mode}. Looked for files {list(required_files)}."
        ) from err
    except Exception as err:  # repository missing, gated, network errors: all mean "not available"
        raise TokenizerNotFoundError(
            f"{what}: no local directory {str(local)!r}, and hub id {str(name_or_path)!r} could not be fetched "
            f"({type(err).__name__}: {err})"
        ) from err
    missing = [name for name in required_files if not (snapshot / name).is_file()]
    if missing:
        raise TokenizerNotFoundError(f"{what}: hub repo {str(name_or_path)!r} lacks {missing}")
    return snapshot
