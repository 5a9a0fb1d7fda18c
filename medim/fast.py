"""Inference speedups for MeDiM on small CPUs: exact ones the pipeline uses by default, approximate ones opt-in.

Exact (same tokens as the plain path, up to float rounding):

- `modality_head` / `restricted_logits`: the output head evaluated only where the sampler reads it — image-code
  rows at masked image positions, text + pad rows at masked text positions — instead of the full vocabulary at
  every position. Everything else is -inf, which is what the sampler does to disallowed ids anyway. Guidance is
  applied on the restricted log-probabilities: they differ from the full-vocabulary ones by a constant per
  position, which no softmax over the slice can see. `MeDiMPipeline` uses this by default (`restrict_head`).
- `FastDenoiser` without caching: drives the layers itself with the rotary tables computed once per length.

Approximate (opt-in; their quality cost is measured in benchmarks/speedups.py and docs/performance.md):

- `FastDenoiser(cache_condition=True)`: keys/values of the fixed condition (the report for report→image, the
  image for image→report) are computed in a full pass and reused for `refresh_every` steps, while only the
  generated positions run through the layers (Fast-dLLM / dKV-cache style). Exact only if the condition's
  keys/values did not depend on the changing tokens and t, which in a bidirectional, timestep-modulated model
  they do.
- `ThresholdSampler`: MaskGIT whose step also commits every token sampled with probability above a threshold,
  so easy sequences finish in fewer steps than the schedule's K (which stays the upper bound).
- `quantize_int8`: dynamic int8 quantisation of the linear layers (torch.ao), `compile_model`: torch.compile.

Use them through `fast_stream` / `fast_run`, which call `MeDiMPipeline.stream` with a denoiser and a sampler.
"""

from __future__ import annotations

import collections
import copy
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from medim.config import SamplerConfig
from medim.modeling import MeDiMModel, modulate
from medim.sampling import MaskGITSampler, apply_guidance, unconditional_input
from medim.vocab import IMAGE, TEXT, VocabLayout

__all__ = [
    "FastDenoiser",
    "FastSettings",
    "HeadBlock",
    "ThresholdSampler",
    "compile_model",
    "configure_cpu_threads",
    "fast_run",
    "fast_stream",
    "modality_head",
    "quantize_int8",
    "restricted_logits",
    "scatter_head",
]

# ---------------------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------------------


def configure_cpu_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: the usable cores, at most 2 on a basic host) and one inter-op
    thread (MeDiM runs one graph at a time; a second pool only competes for the same cores). Returns the count.
    """
    if threads is None:
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, min(2, usable))
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only allowed before the first parallel region; later calls keep torch's default
        pass
    return threads


# ---------------------------------------------------------------------------------------------------------
# Restricted output head (exact)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class HeadBlock:
    """Logits of one modality at some positions: `logits` [B, P, Vm] for sequence positions `positions` [P]
    over the vocabulary ids `ids` (a slice, or for text the text slice followed by the pad id)."""

    modality: int
    positions: torch.Tensor
    logits: torch.Tensor


def _head_rows(layout: VocabLayout, modality: int) -> list[slice]:
    """Contiguous row ranges of the output head that a modality may predict (text: its ids, then pad)."""
    if modality == IMAGE:
        return [layout.modality_vocab_slice(IMAGE)]
    return [layout.modality_vocab_slice(TEXT), slice(layout.pad_id, layout.pad_id + 1)]


def modality_head(
    model: MeDiMModel, hidden: torch.Tensor, need: torch.Tensor, positions: torch.Tensor | None = None
) -> list[HeadBlock]:
    """Apply the output head's rows of each modality at the positions where any row of the batch needs logits.

    hidden [B, L', D] (L' = L, or the P positions listed in `positions` [L'] when hidden covers only those);
    need [B, L] bool over the full sequence. Returns one HeadBlock per modality that has needed positions.
    """
    layout = model.layout
    head = model.backbone.get_output_embeddings()
    weight, bias = head.weight, head.bias
    wanted = need.any(0)
    modality = layout.position_modality.to(need.device)
    if positions is None:
        positions = torch.arange(need.shape[1], device=need.device)
    blocks = []
    for kind in (IMAGE, TEXT):
        columns = (wanted[positions] & (modality[positions] == kind)).nonzero().flatten()
        if columns.numel() == 0:
            continue
        selected = hidden[:, columns]
        pieces = [
            F.linear(selected, weight[rows], None if bias is None else bias[rows])
            for rows in _head_rows(layout, kind)
        ]
        logits = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)
        blocks.append(HeadBlock(kind, positions[columns], logits))
    return blocks


def scatter_head(blocks: list[HeadBlock], layout: VocabLayout, batch: int, length: int) -> torch.Tensor:
    """Full logits [B, L, V]: the blocks' values at their positions and ids, -inf everywhere else."""
    reference = blocks[0].logits
    out = torch.full(
        (batch, length, layout.vocab_size), float("-inf"), dtype=reference.dtype, device=reference.device
    )
    for block in blocks:
        start = 0
        for rows in _head_rows(layout, block.modality):
            width = rows.stop - rows.start
            out[:, block.positions, rows] = block.logits[..., start : start + width]
            start += width
    return out


def restricted_logits(
    model: MeDiMModel,
    hidden: torch.Tensor,
    need: torch.Tensor,
    guidance: float = 0.0,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampler-ready logits [B, L, V] from hidden states, computing the head only where `need` [B, L] is set.

    hidden is [B, L', D], or [2B, L', D] with the conditional rows first and the unconditional ones second when
    guidance > 0 (the guided log-probabilities are then formed on the restricted vocabularies).
    """
    blocks = modality_head(model, hidden.float(), need, positions)
    if not blocks:
        raise ValueError("restricted_logits: no position needs logits (nothing is masked)")
    if guidance > 0:
        for block in blocks:
            cond, uncond = block.logits.chunk(2)
            block.logits = apply_guidance(cond, uncond, guidance)
    return scatter_head(blocks, model.layout, need.shape[0], need.shape[1])


# ---------------------------------------------------------------------------------------------------------
# A denoiser that drives the layers itself: rotary tables reused, optional condition key/value cache
# ---------------------------------------------------------------------------------------------------------


def _rotary(attention) -> Any:
    """The backbone's own apply_rotary_pos_emb (Llama, Gemma and Qwen2 each define one beside the attention)."""
    return sys.modules[type(attention).__module__].apply_rotary_pos_emb


class FastDenoiser:
    """Callable `(x_t [B, L], generate [B, L], guidance) -> logits [B, L, V]` for `MeDiMPipeline.stream`.

    - `restrict_head`: compute the output head only at masked positions and for their modality (exact).
    - `cache_condition`: approximate; reuse the condition's per-layer keys/values for `refresh_every` calls
      (0: computed once, at the first call), running only the generated positions through the layers.

    One instance serves one generation at a time; it refreshes its cache by itself when the condition tokens,
    the batch or the generated positions change, so it can be reused across runs.
    """

    def __init__(
        self,
        pipe,
        *,
        restrict_head: bool = True,
        cache_condition: bool = False,
        refresh_every: int = 0,
    ):
        if refresh_every < 0:
            raise ValueError(f"refresh_every must be >= 0, got {refresh_every}")
        model = pipe.model
        if cache_condition and model.config.causal_attention:
            raise ValueError("cache_condition needs a bidirectional model (causal_attention=False)")
        if model.attn_implementation.startswith("flash"):
            raise ValueError("FastDenoiser drives attention through SDPA; load the model with sdpa or eager")
        self.pipe = pipe
        self.model = model
        self.layout = model.layout
        self.restrict_head = restrict_head
        self.cache_condition = cache_condition
        self.refresh_every = refresh_every
        self.calls = 0
        self.refreshes = 0
        self._rotary_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._cached_key: tuple | None = None
        self._since_refresh = 0

    def reset(self) -> None:
        """Forget the condition cache (the next call runs a full pass)."""
        self._kv = None
        self._cached_key = None
        self._since_refresh = 0

    # ---- pieces ----------------------------------------------------------------------------------------
    def _position_embeddings(self, hidden: torch.Tensor, positions: torch.Tensor):
        """Rotary (cos, sin) [1, P, head_dim] for the given positions, from a table built once per length."""
        key = (self.layout.seq_len, hidden.device, hidden.dtype)
        if key not in self._rotary_cache:
            full = torch.arange(self.layout.seq_len, device=hidden.device)[None]
            self._rotary_cache[key] = self.model.decoder.rotary_emb(hidden, position_ids=full)
        cos, sin = self._rotary_cache[key]
        return cos[:, positions], sin[:, positions]

    def _attention(self, attention, normed, position_embeddings, past=None):
        """Bidirectional SDPA over [past keys/values; own keys/values]. Returns (output, k, v)."""
        batch, length, _ = normed.shape
        shape = (batch, length, -1, attention.head_dim)
        q = attention.q_proj(normed).view(shape).transpose(1, 2)
        k = attention.k_proj(normed).view(shape).transpose(1, 2)
        v = attention.v_proj(normed).view(shape).transpose(1, 2)
        cos, sin = position_embeddings
        q, k = _rotary(attention)(q, k, cos, sin)
        keys, values = (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
        out = F.scaled_dot_product_attention(
            q, keys, values, scale=attention.scaling, enable_gqa=keys.shape[1] != q.shape[1]
        )
        return attention.o_proj(out.transpose(1, 2).reshape(batch, length, -1)), k, v

    def _layers(self, hidden, cond, position_embeddings, past=None, capture: torch.Tensor | None = None):
        """Run every decoder layer (MeDiMModel._layer with an explicit attention). Returns (hidden, captured)
        where captured holds per layer the keys/values at the `capture` positions (indices into hidden)."""
        model = self.model
        captured = []
        for index, layer in enumerate(model.decoder.layers):
            adaln = model.adaln is not None
            if adaln:
                shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = model.adaln[index](cond)
                if model.config.adaln_gate == "one_plus":
                    gate_a, gate_m = 1 + gate_a, 1 + gate_m
            normed = layer.input_layernorm(hidden)
            if adaln:
                normed = modulate(normed, shift_a, scale_a)
            attn_out, k, v = self._attention(
                layer.self_attn, normed, position_embeddings, None if past is None else past[index]
            )
            if capture is not None:
                captured.append((k[:, :, capture], v[:, :, capture]))
            hidden = hidden + (gate_a[:, None] * attn_out if adaln else attn_out)
            normed = layer.post_attention_layernorm(hidden)
            if adaln:
                normed = modulate(normed, shift_m, scale_m)
            mlp_out = layer.mlp(normed)
            hidden = hidden + (gate_m[:, None] * mlp_out if adaln else mlp_out)
        return model.decoder.norm(hidden), captured

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        t: torch.Tensor,
        positions: torch.Tensor | None = None,
        past=None,
        capture: torch.Tensor | None = None,
    ):
        """Final hidden states [B, P, D] at `positions` [P] (default all), attending also to `past`."""
        model = self.model
        if positions is None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = model.decoder.embed_tokens(input_ids[:, positions])
        cond = None
        if model.timestep_embedder is not None:
            cond = model.timestep_embedder(t.to(hidden.device))
            if model.adaln is None:
                hidden = hidden + cond[:, None].to(hidden.dtype)
        return self._layers(hidden, cond, self._position_embeddings(hidden, positions), past, capture)

    # ---- the call --------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, x_t: torch.Tensor, generate: torch.Tensor, guidance: float) -> torch.Tensor:
        layout = self.layout
        pipe = self.pipe
        self.calls += 1
        masked_fraction = (x_t == layout.mask_id).sum(-1).float() / generate.sum(-1).clamp_min(1).float()
        t = pipe.noise_schedule.t_for_mask_probability(masked_fraction.clamp(0, 1))
        need = x_t == layout.mask_id
        inputs = x_t
        if guidance > 0:
            inputs = torch.cat([x_t, unconditional_input(x_t, generate, layout)])
            t = torch.cat([t, t])
        if self.cache_condition:
            hidden, positions = self._cached_pass(inputs, t, generate)
        else:
            hidden, _ = self.hidden_states(inputs, t)
            positions = None
        if self.restrict_head:
            return restricted_logits(self.model, hidden, need, guidance, positions)
        if positions is not None:
            raise ValueError("cache_condition needs restrict_head=True")
        logits = self.model.backbone.get_output_embeddings()(hidden).float()
        if guidance > 0:
            cond, uncond = logits.chunk(2)
            return apply_guidance(cond, uncond, guidance)
        return logits

    def _cached_pass(self, inputs: torch.Tensor, t: torch.Tensor, generate: torch.Tensor):
        """Hidden states at the generated positions, with the condition's keys/values from the cache."""
        active = generate.any(0).nonzero().flatten()  # generated positions (union over the batch)
        fixed = (~generate.any(0)).nonzero().flatten()  # condition and specials
        condition = inputs[:, fixed]
        key = (inputs.shape[0], tuple(active.tolist()))
        stale = (
            self._kv is None
            or key != self._cached_key
            or not torch.equal(condition, self._condition)
            or (self.refresh_every > 0 and self._since_refresh >= self.refresh_every)
        )
        if stale:
            hidden, captured = self.hidden_states(inputs, t, capture=fixed)
            self._kv, self._cached_key, self._condition = captured, key, condition
            self._since_refresh = 1
            self.refreshes += 1
            return hidden[:, active], active
        self._since_refresh += 1
        hidden, _ = self.hidden_states(inputs, t, positions=active, past=self._kv)
        return hidden, active


# ---------------------------------------------------------------------------------------------------------
# Confidence-threshold parallel decoding
# ---------------------------------------------------------------------------------------------------------


class ThresholdSampler(MaskGITSampler):
    """MaskGIT that also commits every masked token sampled with probability >= `threshold` (Fast-dLLM's
    parallel decoding). The schedule still sets the minimum progress, so K steps remain the upper bound and
    confident sequences finish earlier; the pipeline stops as soon as nothing is masked."""

    def __init__(self, layout: VocabLayout, config: SamplerConfig | None = None, threshold: float = 0.9):
        super().__init__(layout, config)
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold

    def commit_counts(self, step_index, initial_masked, masked, confidence) -> torch.Tensor:
        scheduled = super().commit_counts(step_index, initial_masked, masked, confidence)
        confident = ((confidence >= self.threshold) & masked).sum(-1)
        return torch.maximum(scheduled, confident)


# ---------------------------------------------------------------------------------------------------------
# Whole-model transforms
# ---------------------------------------------------------------------------------------------------------


def quantize_int8(model: MeDiMModel) -> MeDiMModel:
    """A copy of `model` whose decoder-layer and AdaLN linears are dynamically quantised to int8 (CPU only:
    int8 weights, activations quantised per call). The output head stays fp32 (`modality_head` slices its rows)
    and so does the tiny timestep MLP (its dtype is read from its weight); the original model is untouched."""
    from torch.ao.quantization import quantize_dynamic

    quantised = copy.deepcopy(model).eval()
    names = {
        name
        for name, module in quantised.named_modules()
        if isinstance(module, torch.nn.Linear) and (".layers." in name or name.startswith("adaln."))
    }
    return quantize_dynamic(quantised, names, dtype=torch.qint8)


def compile_model(model: MeDiMModel, **options) -> MeDiMModel:
    """torch.compile the decoder layers' forward (inductor on CPU needs a C++ compiler). Returns the model."""
    for layer in model.decoder.layers:
        layer.compile(**options)
    return model


# ---------------------------------------------------------------------------------------------------------
# Running the pipeline with speedups
# ---------------------------------------------------------------------------------------------------------


@dataclass
class FastSettings:
    """Which speedups `fast_stream` uses. The defaults are the pipeline's own (exact) behaviour."""

    restrict_head: bool = True
    cache_condition: bool = False
    refresh_every: int = 0
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.refresh_every < 0:
            raise ValueError(f"refresh_every must be >= 0, got {self.refresh_every}")
        if self.threshold is not None and not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1] or None, got {self.threshold}")


def fast_stream(
    pipe,
    x_init: torch.Tensor,
    generate: torch.Tensor,
    settings: FastSettings | None = None,
    *,
    sampler_config: SamplerConfig | None = None,
    seed: int | None = None,
    decode_images: bool = True,
) -> Iterator:
    """`MeDiMPipeline.stream` with the chosen speedups: yields StepState per step (fewer with a threshold)."""
    settings = settings or FastSettings()
    config = sampler_config or pipe.sampler_config
    sampler = None
    if settings.threshold is not None:
        sampler = ThresholdSampler(pipe.layout, config, settings.threshold)
    denoiser = FastDenoiser(
        pipe,
        restrict_head=settings.restrict_head,
        cache_condition=settings.cache_condition,
        refresh_every=settings.refresh_every,
    )
    yield from pipe.stream(
        x_init,
        generate,
        sampler_config=config,
        seed=seed,
        decode_images=decode_images,
        sampler=sampler,
        denoiser=denoiser,
    )


def fast_run(
    pipe,
    task: str,
    settings: FastSettings | None = None,
    *,
    report=None,
    image=None,
    prompt: str | None = None,
    num_samples: int = 1,
    seed: int | None = None,
    **overrides,
):
    """`MeDiMPipeline.run` with the chosen speedups -> GenerationResult (settings record the speedups)."""
    settings = settings or FastSettings()
    config = pipe._settings(None, overrides)
    seed = 0 if seed is None else int(seed)
    x_init, generate, warnings = pipe.prepare(
        task, report=report, image=image, prompt=prompt, num_samples=num_samples
    )
    states = fast_stream(
        pipe, x_init, generate, settings, sampler_config=config, seed=seed, decode_images=False
    )
    result = pipe._result(task, collections.deque(states, maxlen=1)[0], seed, config, warnings)
    result.settings["fast"] = dict(vars(settings))
    return result
