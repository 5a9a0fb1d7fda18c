"""Fixtures of the demo tests: one tiny random MeDiM pipeline per session, handlers bound to it, example files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.handlers import DemoHandlers
from app.rating import StudyHook
from app.runtime import ModelManager
from tests.app.helpers import RANDOM_KEY, phantom


@pytest.fixture(scope="session")
def pipe():
    """A randomly initialised tiny pipeline (32x32 images, 4x4 grid, 32 report tokens), built once."""
    from medim.commands.init_random import build_random_pipeline

    return build_random_pipeline(seed=0)


@pytest.fixture(scope="session")
def examples_dir(tmp_path_factory) -> Path:
    """assets/examples-style folder: one valid pair, one broken line, one record pointing outside the folder."""
    root = tmp_path_factory.mktemp("examples")
    split = root / "demo"
    (split / "images").mkdir(parents=True)
    phantom(seed=3).save(split / "images" / "ex1.png")
    lines = [
        json.dumps(
            {
                "id": "ex1",
                "image": "images/ex1.png",
                "report": "FINDINGS: Small left effusion.",
                "domain": "chest_xray",
            }
        ),
        "{not json",
        json.dumps(
            {
                "id": "ex2",
                "image": "../../../etc/passwd",
                "report": "Benign colonic mucosa.",
                "domain": "pathology",
            }
        ),
    ]
    (split / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def manager(pipe) -> ModelManager:
    manager = ModelManager(RANDOM_KEY)
    manager.add(RANDOM_KEY, pipe)
    return manager


@pytest.fixture
def handlers(manager, examples_dir, tmp_path) -> DemoHandlers:
    return DemoHandlers(
        manager,
        examples_dir=examples_dir,
        study=StudyHook(reason="off in tests"),
        bundle_dir=tmp_path / "bundles",
    )
