"""Fixtures for the metric tests: a tiny labelled corpus and a judge trained on it."""

from tests.metrics.fixtures import tiny_corpus, tiny_judge  # noqa: F401
