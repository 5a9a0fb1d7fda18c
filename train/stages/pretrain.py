"""Stage `pretrain`: the backbone learns the `<boi> image <eoi> report` sequences as a causal LM.

MeDiM starts from a pretrained multimodal LLM; this stage gives a from-scratch backbone the same start. It runs
the `medim` training loop (same data sampler, optimiser, clock schedule, EMA, checkpoints) with the causal mask
on, no timestep conditioning and the next-token loss (`medim.diffusion.causal_lm_loss`), in
`<output_dir>/pretrain_run/`, and exports a pipeline to `<output_dir>/pretrain/`. The `medim` stage then adapts
it (`model.init_from=<output_dir>/pretrain`, which `python -m train all` sets): the causal mask is removed and
zero-initialised AdaLN-Zero added in the `(1 + gate)` form, so the adapted model starts as the pretrained
blocks. The export is also an honest autoregressive baseline: a model trained causally, not MeDiM's weights
decoded causally.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from train.config import TrainConfig

STEP_CEILING = 1_000_000  # a clock-only budget: the clock ends the run


def stage_config(config: TrainConfig) -> TrainConfig:
    """The config the pretraining loop runs with: the pretrain budget, causal attention, no timestep input."""
    if not config.pretrain.enabled:
        raise ValueError("the pretrain stage needs pretrain.max_steps > 0 or pretrain.max_minutes")
    optim = dataclasses.replace(
        config.optim,
        max_steps=config.pretrain.max_steps or STEP_CEILING,
        max_minutes=config.pretrain.max_minutes,
    )
    model = dataclasses.replace(
        config.model, causal_attention=True, timestep_conditioning="off", init_from=None, backbone_path=None
    )
    return dataclasses.replace(config, output_dir=str(config.out / "pretrain_run"), optim=optim, model=model)


def export_dir(config: TrainConfig) -> Path:
    return config.out / "pretrain"


def run(config: TrainConfig, resume: str | None = None) -> Path:
    from train.stages import medim

    return medim.run(
        stage_config(config),
        resume=resume,
        objective="causal_lm",
        cache_dir=config.out / "cache",
        export_dir=export_dir(config),
    )
