"""Fixtures for the evaluation CLI tests: tiny corpus, judge, and a random tiny checkpoint on disk."""

import pytest

from tests.metrics.fixtures import tiny_corpus, tiny_judge  # noqa: F401


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
    from medim.commands.init_random import build_random_pipeline

    root = tmp_path_factory.mktemp("checkpoint")
    build_random_pipeline(hidden=32, image_size=32, grid=4, text_tokens=24).save_pretrained(root)
    return root


@pytest.fixture(scope="session")
def judge_dir(tiny_judge, tmp_path_factory):  # noqa: F811 - the imported fixture, requested by name
    return tiny_judge.save(tmp_path_factory.mktemp("judge"))
