"""How files are named in what MeDiM writes (reports, result tables): relative to the project when inside it."""

from __future__ import annotations

from pathlib import Path


def shown_path(path: str | Path, root: str | Path | None = None) -> Path:
    """``path`` relative to ``root`` (default: the working directory) when it lies inside it, else the full path.

    Reports record where files are in the project, not the name of the machine that ran them; outside the project
    the full path is the only true one."""
    root = Path(Path.cwd() if root is None else root).resolve()
    path = Path(path).resolve()
    return path.relative_to(root) if path.is_relative_to(root) else path
