"""Process-level settings for running MeDiM on a CPU."""

from __future__ import annotations

import os

import torch

__all__ = ["configure_cpu_threads"]


def configure_cpu_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: the usable cores, at most 2 on a basic host) and one inter-op
    thread (MeDiM runs one graph at a time; a second pool only competes for the same cores). Returns the count.
    """
    if threads is None:
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, min(2, usable))
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only allowed before the first parallel region; later calls keep torch's default
        pass
    return threads
