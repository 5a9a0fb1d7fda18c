"""The recipe search's variants mean fixed models, whatever the preset they start from."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from benchmarks.recipe import VARIANTS, common_overrides, expand
from train.config import load_config

ARGS = SimpleNamespace(corpus="c", text_tokenizer="t", image_tokenizer="v", minutes=6.0, threads=2)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_builds_a_valid_config_with_its_own_body_and_budget(name):
    overrides, _ = VARIANTS[name]
    expanded = [expand(item, ARGS.minutes) for item in overrides]
    config = load_config("demo-cpu", [*common_overrides(ARGS), *expanded])
    assert config.model.backbone["hidden_size"] == (192 if name.startswith("small") else 256)
    if name == "small_pretrain":  # the same wall budget, split between the two stages
        assert config.pretrain.max_minutes + config.optim.max_minutes == ARGS.minutes
    else:
        assert not config.pretrain.enabled and config.optim.max_minutes == ARGS.minutes
