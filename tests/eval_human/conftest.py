"""Fixtures of the human-study tests: tiny synthetic-format pair folders made with Pillow, and a built study."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from eval_human.store import StudyStore
from eval_human.study import build_study

DOMAINS = ("chest_xray", "pathology")


def _draw(seed: int, domain: str) -> Image.Image:
    """A 16x16 RGB phantom whose pixels depend on the seed (distinct content → distinct sha256)."""
    rng = random.Random(seed)
    base = (40, 40, 40) if domain == "chest_xray" else (200, 120, 180)
    image = Image.new("RGB", (16, 16), base)
    draw = ImageDraw.Draw(image)
    x, y = rng.randrange(2, 12), rng.randrange(2, 12)
    draw.ellipse((x, y, x + 3, y + 3), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    return image


def write_dataset_split(split_dir: Path, n: int, *, seed: int = 0) -> Path:
    """A synthetic-corpus split: ``images/<id>.png`` + ``metadata.jsonl`` (alternating domains)."""
    (split_dir / "images").mkdir(parents=True, exist_ok=True)
    with (split_dir / "metadata.jsonl").open("w") as handle:
        for index in range(n):
            domain = DOMAINS[index % 2]
            pair_id = f"real{seed}-{index:03d}"
            _draw(seed * 1000 + index, domain).save(split_dir / "images" / f"{pair_id}.png")
            record = {
                "id": pair_id,
                "image": f"images/{pair_id}.png",
                "report": f"{domain} case {index}: finding {'present' if index % 3 else 'absent'}.",
                "domain": domain,
                "labels": {"effusion": index % 2},
                "attributes": {},
            }
            handle.write(json.dumps(record) + "\n")
    return split_dir


def write_generated_pairs(folder: Path, n: int, *, system: str = "medim", seed: int = 1) -> Path:
    """A ``synthesize`` output folder: ``images/<id>.png`` + ``pairs.jsonl`` with a source per pair."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    with (folder / "pairs.jsonl").open("w") as handle:
        for index in range(n):
            domain = DOMAINS[index % 2]
            pair_id = f"{system}-{index:03d}"
            image = _draw(seed * 1000 + index, domain)
            # A PNG text chunk that names the system: the study must strip it (blinding).
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            info.add_text("generator", system)
            image.save(folder / "images" / f"{pair_id}.png", pnginfo=info)
            record = {
                "id": pair_id,
                "image": f"images/{pair_id}.png",
                "report": f"Generated {domain} report {index} by an unnamed model.",
                "domain": domain,
                "source": {"system": system, "checkpoint": f"{system}.safetensors", "settings": {"steps": 8}},
            }
            handle.write(json.dumps(record) + "\n")
    return folder


@pytest.fixture(scope="session")
def pair_sources(tmp_path_factory) -> dict[str, Path]:
    """Two generated systems and one real split, 8 pairs each (read-only for the tests)."""
    root = tmp_path_factory.mktemp("sources")
    return {
        "medim": write_generated_pairs(root / "gen_medim", 8, system="medim", seed=1),
        "baseline": write_generated_pairs(root / "gen_baseline", 8, system="baseline", seed=2),
        "real": write_dataset_split(root / "corpus" / "test", 8, seed=3),
    }


@pytest.fixture(scope="session")
def _study_template(tmp_path_factory, pair_sources):
    """Build the fixture study once; tests get a private copy of its database file and image folder."""
    root = tmp_path_factory.mktemp("template")
    store = StudyStore(root / "study.db")
    built = build_study(
        store,
        "fixture",
        [pair_sources["medim"], pair_sources["baseline"]],
        raters=["r1", "r2", "r3"],
        ratio="1:1",
        n_items=8,
        n_attention_checks=2,
        overlap=2,
        seed=0,
    )
    store.dispose()  # checkpoints the WAL into the main file so a plain copy is complete
    return root, built


@pytest.fixture
def built_study(tmp_path: Path, _study_template):
    """A study on a temporary SQLite file: 8 items (4+4), 2 attention checks, 3 raters, overlap 2, one admin."""
    root, built = _study_template
    shutil.copy(root / "study.db", tmp_path / "study.db")
    shutil.copytree(root / "study.db.media", tmp_path / "study.db.media")
    store = StudyStore(tmp_path / "study.db")
    yield store, built
    store.dispose()
