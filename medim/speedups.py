"""Opt-in speed modes for MeDiM inference. Each calls the model's one forward pass; none copies it.

The exact speedups are defaults elsewhere: the restricted output head (medim.heads, used by the pipeline) and the
rotary table built once per length (MeDiMModel). What lives here changes the result, so it is opt-in and its
quality cost is measured in benchmarks/speedups.py (docs/performance.md):

- `ConditionCache`: keys/values of the fixed condition (the report for report→image, the image for
  image→report) are recorded in a full pass and reused for `refresh_every` steps, while only the generated
  positions run through the layers (Fast-dLLM / dKV-cache style). Exact only if the condition's keys/values did
  not depend on the changing tokens and t, which in a bidirectional, timestep-modulated model they do.
- `ThresholdSampler` (medim.sampling): also commits every token sampled above a probability threshold.
- `quantize_int8`: dynamic int8 quantisation of the linear layers (torch.ao).

Run them through `fast_run` / `fast_stream`, which call `MeDiMPipeline.run` / `stream` with a denoiser and a
sampler.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from medim.config import SamplerConfig
from medim.heads import restricted_logits
from medim.modeling import MeDiMModel, PositionKeyValues
from medim.sampling import ThresholdSampler, unconditional_input

__all__ = ["ConditionCache", "SpeedSettings", "fast_run", "fast_stream", "quantize_int8"]


class ConditionCache:
    """Denoiser `(x_t [B, L], generate [B, L], guidance) -> logits [B, L, V]` for `MeDiMPipeline.stream` that
    reuses the condition's keys/values (approximate; `refresh_every=1` makes every call a full, exact pass).

    One instance serves one generation at a time; it records afresh by itself when the condition tokens, the batch
    or the generated positions change, so it can be reused across runs.
    """

    def __init__(self, pipe, *, refresh_every: int = 0):
        if refresh_every < 0:
            raise ValueError(f"refresh_every must be >= 0, got {refresh_every}")
        config = pipe.model.config
        if config.causal_attention:
            raise ValueError("the condition cache needs a bidirectional model (causal_attention=False)")
        if config.logits_offsets != (0, 0):
            raise ValueError(
                "the condition cache runs only the generated positions, but this checkpoint reads logits from "
                f"shifted hidden states (logits_offsets={config.logits_offsets}); use the default path"
            )
        self.pipe = pipe
        self.refresh_every = refresh_every
        self.calls = 0
        self.refreshes = 0
        self._cache: PositionKeyValues | None = None
        self._cached_key: tuple | None = None
        self._condition: torch.Tensor | None = None
        self._since_refresh = 0

    def reset(self) -> None:
        """Forget the recorded condition (the next call runs a full pass)."""
        self._cache, self._cached_key, self._condition, self._since_refresh = None, None, None, 0

    @torch.no_grad()
    def __call__(self, x_t: torch.Tensor, generate: torch.Tensor, guidance: float) -> torch.Tensor:
        pipe, layout, model = self.pipe, self.pipe.layout, self.pipe.model
        self.calls += 1
        masked_fraction = (x_t == layout.mask_id).sum(-1).float() / generate.sum(-1).clamp_min(1).float()
        t = pipe.noise_schedule.t_for_mask_probability(masked_fraction.clamp(0, 1))
        need = x_t == layout.mask_id
        inputs = x_t
        if guidance > 0:
            inputs = torch.cat([x_t, unconditional_input(x_t, generate, layout)])
            t = torch.cat([t, t])
        inputs = pipe.model_input(inputs)  # what the denoiser reads (unknown report words as <unk>)
        active = generate.any(0).nonzero().flatten()  # generated positions (union over the batch)
        fixed = (~generate.any(0)).nonzero().flatten()  # condition and specials
        condition = inputs[:, fixed]
        key = (inputs.shape[0], tuple(active.tolist()))
        stale = (
            self._cache is None
            or key != self._cached_key
            or not torch.equal(condition, self._condition)
            or (self.refresh_every > 0 and self._since_refresh >= self.refresh_every)
        )
        if stale:
            cache = PositionKeyValues(fixed)
            hidden = model.hidden_states(inputs, t, key_values=cache)
            cache.recording = False
            self._cache, self._cached_key, self._condition = cache, key, condition
            self._since_refresh = 1
            self.refreshes += 1
            return restricted_logits(model, hidden, need, guidance)
        self._since_refresh += 1
        hidden = model.hidden_states(inputs, t, positions=active, key_values=self._cache)
        return restricted_logits(model, hidden, need, guidance, positions=active)


def quantize_int8(model: MeDiMModel) -> MeDiMModel:
    """A copy of `model` whose decoder-layer and AdaLN linears are dynamically quantised to int8 (CPU only:
    int8 weights, activations quantised per call). The output head stays fp32 (the restricted head slices its
    rows) and so does the tiny timestep MLP (its dtype is read from its weight); the original model is untouched."""
    from torch.ao.quantization import quantize_dynamic

    quantised = copy.deepcopy(model).eval()
    names = {
        name
        for name, module in quantised.named_modules()
        if isinstance(module, torch.nn.Linear) and (".layers." in name or name.startswith("adaln."))
    }
    return quantize_dynamic(quantised, names, dtype=torch.qint8)


@dataclass
class SpeedSettings:
    """Which opt-in speed modes `fast_stream` / `fast_run` use. The defaults are the pipeline's own path."""

    cache_condition: bool = False
    refresh_every: int = 0
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.refresh_every < 0:
            raise ValueError(f"refresh_every must be >= 0, got {self.refresh_every}")
        if self.threshold is not None and not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1] or None, got {self.threshold}")

    def parts(self, pipe, config: SamplerConfig):
        """(sampler, denoiser) for `MeDiMPipeline.stream` (None: the pipeline's own)."""
        sampler = None if self.threshold is None else ThresholdSampler(pipe.layout, config, self.threshold)
        denoiser = ConditionCache(pipe, refresh_every=self.refresh_every) if self.cache_condition else None
        return sampler, denoiser


def fast_stream(
    pipe,
    x_init: torch.Tensor,
    generate: torch.Tensor,
    settings: SpeedSettings | None = None,
    *,
    sampler_config: SamplerConfig | None = None,
    seed: int | None = None,
    decode_images: bool = True,
) -> Iterator:
    """`MeDiMPipeline.stream` with the chosen speed modes: yields StepState per step (fewer with a threshold)."""
    config = sampler_config or pipe.sampler_config
    sampler, denoiser = (settings or SpeedSettings()).parts(pipe, config)
    yield from pipe.stream(
        x_init,
        generate,
        sampler_config=config,
        seed=seed,
        decode_images=decode_images,
        sampler=sampler,
        denoiser=denoiser,
    )


def fast_run(pipe, task: str, settings: SpeedSettings | None = None, *, sampler_config=None, **kwargs):
    """`MeDiMPipeline.run` with the chosen speed modes -> GenerationResult (its settings record the modes)."""
    settings = settings or SpeedSettings()
    config = pipe.sampler_settings(
        sampler_config, {k: kwargs.pop(k) for k in list(kwargs) if k in _SAMPLER_FIELDS}, task=task
    )
    sampler, denoiser = settings.parts(pipe, config)
    result = pipe.run(task, sampler_config=config, sampler=sampler, denoiser=denoiser, **kwargs)
    result.settings["fast"] = dict(vars(settings))
    return result


_SAMPLER_FIELDS = frozenset(SamplerConfig.__dataclass_fields__)
