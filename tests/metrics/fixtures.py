"""A tiny labelled corpus in the synthetic corpus' on-disk format, drawn with obvious findings, for metric tests.

Chest images are grey with an enlarged bright "heart" (Cardiomegaly) and/or a bright lower band (Pleural
Effusion); pathology images are pink with dark nuclei clusters (Tumor). Reports state exactly those findings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHEST_REPORTS = {
    (0, 0): "FINDINGS: The heart is normal in size. No pleural effusion. IMPRESSION: No acute process.",
    (1, 0): "FINDINGS: The heart is enlarged. No pleural effusion. IMPRESSION: Cardiomegaly.",
    (
        0,
        1,
    ): "FINDINGS: The heart is normal in size. Large left pleural effusion. IMPRESSION: Pleural effusion.",
    (
        1,
        1,
    ): "FINDINGS: The heart is enlarged. Large left pleural effusion. IMPRESSION: Cardiomegaly and effusion.",
}
PATHOLOGY_REPORTS = {
    0: "Benign colonic mucosa with regular glands. No tumor is seen.",
    1: "Invasive adenocarcinoma with crowded atypical glands and frequent mitoses.",
}


def chest_image(rng: np.random.Generator, size: int, cardiomegaly: int, effusion: int) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size] / size
    pixels = 60 + 10 * rng.standard_normal((size, size))
    radius = 0.3 if cardiomegaly else 0.14
    pixels[(x - 0.5) ** 2 + (y - 0.5) ** 2 < radius**2] = 200
    if effusion:
        pixels[(y > 0.75) & (x > 0.5)] = 230
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L").convert("RGB")


def pathology_image(rng: np.random.Generator, size: int, tumor: int) -> Image.Image:
    pixels = np.zeros((size, size, 3)) + np.array([230, 170, 200]) + 8 * rng.standard_normal((size, size, 3))
    for _ in range(12 if tumor else 2):
        cy, cx = rng.integers(2, size - 3, 2)
        pixels[cy - 2 : cy + 2, cx - 2 : cx + 2] = [80, 40, 120]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_tiny_corpus(
    root: Path, per_split: dict[str, int] | None = None, size: int = 32, seed: int = 0
) -> Path:
    """Write ``root/{split}/images/*.png`` and ``metadata.jsonl``, half chest, half pathology."""
    per_split = per_split or {"train": 48, "val": 16, "test": 8}
    rng = np.random.default_rng(seed)
    for split, count in per_split.items():
        folder = root / split
        (folder / "images").mkdir(parents=True, exist_ok=True)
        lines = []
        for index in range(count):
            identifier = f"{split}-{index:03d}"
            if index % 2 == 0:
                cardiomegaly, effusion = (index // 2) % 2, (index // 4) % 2
                image = chest_image(rng, size, cardiomegaly, effusion)
                report = CHEST_REPORTS[(cardiomegaly, effusion)]
                domain = "chest_xray"
                labels = {"Cardiomegaly": cardiomegaly, "Pleural Effusion": effusion}
            else:
                tumor = (index // 2) % 2
                image = pathology_image(rng, size, tumor)
                report = PATHOLOGY_REPORTS[tumor]
                domain = "pathology"
                labels = {"Tumor": tumor}
            image.save(folder / "images" / f"{identifier}.png")
            lines.append(
                json.dumps(
                    {
                        "id": identifier,
                        "image": f"images/{identifier}.png",
                        "report": report,
                        "domain": domain,
                        "labels": labels,
                        "attributes": {},
                    }
                )
            )
        (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def keyword_labeler(text: str, domain: str | None = None) -> dict[str, int]:
    """A stand-in labeler for the fixture's reports: enough to test metric plumbing independently."""
    text = text.lower()
    labels: dict[str, int] = {}
    if "heart is enlarged" in text or "cardiomegaly" in text:
        labels["Cardiomegaly"] = 1
    elif "heart is normal" in text:
        labels["Cardiomegaly"] = 0
    if "no pleural effusion" in text:
        labels["Pleural Effusion"] = 0
    elif "effusion" in text:
        labels["Pleural Effusion"] = 1
    if "adenocarcinoma" in text:
        labels["Tumor"] = 1
    elif "no tumor" in text:
        labels["Tumor"] = 0
    return labels


# ---- pytest fixtures (imported by the conftest of each test area that needs them) ---------------------------


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def tiny_judge(tiny_corpus):
    """A judge trained for a few epochs on the tiny corpus (about a second)."""
    import torch

    from medim.metrics.judge import train_judge

    torch.manual_seed(0)
    return train_judge(
        tiny_corpus, image_size=32, epochs=8, batch_size=16, widths=(8, 16), embed_dim=16, progress=False
    )
