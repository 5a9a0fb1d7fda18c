"""The sampling widgets start at the default checkpoint's sampler_config.json: what the model card measured."""

from __future__ import annotations

import json

from app.runtime import DEFAULT_CHECKPOINT, widget_sampler_defaults


def test_widgets_start_at_the_bundled_checkpoints_sampler_settings():
    shipped = json.loads((DEFAULT_CHECKPOINT / "sampler_config.json").read_text())
    defaults = widget_sampler_defaults({})
    assert (defaults.steps, defaults.temperature, defaults.guidance_scale, defaults.schedule) == (
        shipped["steps"],
        shipped["temperature"],
        shipped["guidance_scale"],
        shipped["schedule"],
    )


def test_a_checkpoint_with_its_own_sampler_config_sets_the_widgets(tmp_path):
    (tmp_path / "sampler_config.json").write_text(json.dumps({"steps": 7, "guidance_scale": 2.5}))
    defaults = widget_sampler_defaults({"MEDIM_CHECKPOINT": str(tmp_path)})
    assert defaults.steps == 7 and defaults.guidance_scale == 2.5


def test_a_hub_id_checkpoint_leaves_the_library_defaults(tmp_path):
    defaults = widget_sampler_defaults({"MEDIM_CHECKPOINT": "owner/not-local"})
    assert defaults.steps == 12 and defaults.guidance_scale == 0.0
