"""Evaluation figures (matplotlib, headless): sample grids, the steps-vs-quality curve, per-finding consistency bars.

Every function writes one PNG and returns its path; nothing is shown on screen.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image

__all__ = ["consistency_bars", "pair_grid", "sample_grid", "steps_curve"]


def _caption(text: str, limit: int, width: int) -> str:
    """Printable characters only (an untrained model emits byte-level junk the font cannot draw), wrapped."""
    text = "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))
    return textwrap.fill(text[:limit], width)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: evaluation runs on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def sample_grid(
    reference: Sequence[Image.Image],
    generated: Sequence[Image.Image],
    path: str | Path,
    *,
    captions: Sequence[str] | None = None,
    title: str = "",
    max_columns: int = 8,
) -> Path:
    """Two rows: reference images on top, generated below (column i is pair i), captions under each column."""
    if len(reference) != len(generated):
        raise ValueError(f"{len(reference)} reference images but {len(generated)} generated ones")
    count = min(len(reference), max_columns)
    if count == 0:
        raise ValueError("no images to draw")
    plt = _pyplot()
    figure, axes = plt.subplots(2, count, figsize=(1.9 * count, 4.6), squeeze=False)
    for column in range(count):
        for row, (images, label) in enumerate(((reference, "reference"), (generated, "generated"))):
            axis = axes[row][column]
            axis.imshow(images[column].convert("RGB"))
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(label)
        if captions is not None:
            axes[1][column].set_xlabel(_caption(captions[column], 90, 24), fontsize=6)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def pair_grid(
    images: Sequence[Image.Image],
    reports: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
    max_items: int = 8,
) -> Path:
    """Generated image–report pairs: each image with the start of its report underneath."""
    count = min(len(images), len(reports), max_items)
    if count == 0:
        raise ValueError("no pairs to draw")
    plt = _pyplot()
    figure, axes = plt.subplots(1, count, figsize=(2.2 * count, 3.6), squeeze=False)
    for column in range(count):
        axis = axes[0][column]
        axis.imshow(images[column].convert("RGB"))
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_xlabel(_caption(reports[column], 140, 28), fontsize=6)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def steps_curve(sweep: Sequence[Mapping], path: str | Path) -> Path:
    """Domain FD and CE-F1 against the number of sampling steps K, one line per domain.

    ``sweep`` items: ``{"steps": K, "domain_fd": {domain: float | None}, "ce_f1": {domain: float | None}}``.
    """
    if not sweep:
        raise ValueError("empty steps sweep")
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    steps = [item["steps"] for item in sweep]
    for axis, key, label in (
        (left, "domain_fd", "domain FD (judge features) ↓"),
        (right, "ce_f1", "CE F1 (micro) ↑"),
    ):
        domains = sorted({domain for item in sweep for domain in item.get(key, {})})
        for domain in domains:
            values = [item.get(key, {}).get(domain) for item in sweep]
            points = [(k, v) for k, v in zip(steps, values) if v is not None]
            if points:
                axis.plot(*zip(*points), marker="o", label=domain)
        axis.set_xlabel("sampling steps K")
        axis.set_ylabel(label)
        axis.set_xticks(steps)
        axis.grid(alpha=0.3)
        if domains:
            axis.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def consistency_bars(
    per_task: Mapping[str, Mapping[str, Mapping]], path: str | Path, *, metric: str = "accuracy"
) -> Path:
    """Grouped bars of per-finding judge–labeler agreement, one panel per domain, one bar colour per task.

    ``per_task``: ``{task: {domain: {finding: {"accuracy": ..., "f1": ...}}}}``.
    """
    domains = sorted({domain for table in per_task.values() for domain in table})
    if not domains:
        raise ValueError("no per-finding consistency to draw")
    plt = _pyplot()
    figure, axes = plt.subplots(len(domains), 1, figsize=(9, 3.0 * len(domains)), squeeze=False)
    tasks = list(per_task)
    width = 0.8 / max(len(tasks), 1)
    for axis, domain in zip(axes[:, 0], domains):
        findings = sorted({f for task in tasks for f in per_task[task].get(domain, {})})
        for offset, task in enumerate(tasks):
            table = per_task[task].get(domain, {})
            values = [table.get(f, {}).get(metric, float("nan")) for f in findings]
            axis.bar([i + offset * width for i in range(len(findings))], values, width, label=task)
        axis.set_xticks([i + width * (len(tasks) - 1) / 2 for i in range(len(findings))])
        axis.set_xticklabels(findings, rotation=25, ha="right", fontsize=7)
        axis.set_ylim(0, 1.05)
        axis.set_ylabel(f"per-finding {metric}")
        axis.set_title(domain, fontsize=9)
        axis.legend(fontsize=7, ncols=min(len(tasks), 4))
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
