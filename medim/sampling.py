"""MaskGIT sampling (Chang et al. 2022) for MeDiM, and the task masks that turn one model into several tasks.

The sampler receives logits and the current tokens; it never owns the model (the pipeline runs the loop). At
each of K steps it samples every masked position from the logits restricted to that position's modality, then
commits the most confident samples so that the number of masks left follows the unmasking schedule. Tokens
that are already decoded never change and [MASK] is never sampled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from medim.config import SamplerConfig
from medim.vocab import IMAGE, TEXT, VocabLayout

TASKS = ("report2image", "image2report", "pair", "inpaint")

# ---------------------------------------------------------------------------------------------------------
# Task masks
# ---------------------------------------------------------------------------------------------------------


def task_positions(task: str, layout: VocabLayout, prompt_length: int = 0) -> torch.Tensor:
    """BoolTensor [L]: the positions a task generates. `prompt_length` report tokens stay fixed in `pair`."""
    modality = layout.position_modality
    if task == "report2image":
        return modality == IMAGE
    if task == "image2report":
        return modality == TEXT
    if task == "pair":
        generate = (modality == IMAGE) | (modality == TEXT)
        if prompt_length:
            start = layout.text_slice.start
            generate[start : start + min(prompt_length, layout.text_tokens)] = False
        return generate
    raise ValueError(f"unknown task {task!r}; choose from {TASKS[:3]} (or pass positions for inpainting)")


def apply_task_mask(sequence: torch.Tensor, positions: torch.Tensor, layout: VocabLayout) -> torch.Tensor:
    """Mask `positions` ([L] or [B, L] bool) of sequences [B, L]; specials can never be masked."""
    positions = positions.to(sequence.device).expand_as(sequence)
    if (positions & (layout.position_modality.to(sequence.device) == 0)).any():
        raise ValueError("the <boi>/<eoi> positions cannot be masked")
    return torch.where(positions, torch.full_like(sequence, layout.mask_id), sequence)


def unconditional_input(x_t: torch.Tensor, generate: torch.Tensor, layout: VocabLayout) -> torch.Tensor:
    """The guidance baseline: the condition (every maskable position not being generated) blanked to [MASK].

    This matches condition dropout in training.
    """
    maskable = layout.position_modality.to(x_t.device) != 0
    condition = maskable[None] & ~generate
    return torch.where(condition, torch.full_like(x_t, layout.mask_id), x_t)


# ---------------------------------------------------------------------------------------------------------
# Schedules and guidance
# ---------------------------------------------------------------------------------------------------------


def mask_ratio(progress: float, schedule: str) -> float:
    """Fraction of the initially masked tokens still masked after `progress` in [0, 1] of the steps."""
    if schedule == "arccos":
        return math.acos(progress) / (math.pi / 2)
    if schedule == "cosine":
        return math.cos(progress * math.pi / 2)
    if schedule == "linear":
        return 1 - progress
    raise ValueError(f"unknown unmasking schedule {schedule!r}")


def guidance_scale_at(step: int, steps: int, config: SamplerConfig) -> float:
    """Classifier-free guidance scale at a step: constant, or ramped linearly from 0 to the full scale."""
    if config.guidance_schedule == "linear":
        return config.guidance_scale * (step + 1) / steps
    return config.guidance_scale


def apply_guidance(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """cond + scale * (cond - uncond) on log-probabilities [B, L, V]; scale 0 returns cond."""
    if scale == 0:
        return cond
    return cond + scale * (torch.log_softmax(cond.float(), -1) - torch.log_softmax(uncond.float(), -1))


def filter_top_k_top_p(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Set logits outside the top-k and/or the top-p nucleus to -inf. logits [..., V]."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, -1).cumsum(-1)
        remove = cumulative - torch.softmax(sorted_logits, -1) >= top_p  # keep the token that crosses top_p
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of probs [..., V] -> ids [...], by inverse CDF on a float64 cumulative sum.

    Same distribution as torch.multinomial(probs, 1), which on CPU draws V exponentials per row and costs more
    than a small model's whole denoising pass; ids with probability 0 are never drawn.
    """
    cdf = probs.double().cumsum(-1)
    u = torch.rand((*cdf.shape[:-1], 1), generator=generator, dtype=cdf.dtype, device=cdf.device)
    return torch.searchsorted(cdf, u * cdf[..., -1:], right=True).squeeze(-1).clamp_max(probs.shape[-1] - 1)


# ---------------------------------------------------------------------------------------------------------
# The sampler
# ---------------------------------------------------------------------------------------------------------


@dataclass
class StepOutput:
    """Result of one sampler step; tensors are [B, L]."""

    tokens: torch.Tensor  # x after this step
    predicted: torch.Tensor  # a sample at every masked position (what the model currently believes)
    confidence: torch.Tensor  # probability of the sampled token (nan where nothing was sampled)
    committed: torch.Tensor  # bool: positions unmasked in this step
    # [B] report positions that became <pad> in this step (committed pads and the padding the report-end rule
    # filled behind them). Padding is free: it does not count toward the step's commits, and the caller takes
    # it off the schedule's budget, so the words themselves follow the unmasking schedule over the K steps.
    padding: torch.Tensor | None = None


class MaskGITSampler:
    """MaskGIT over K steps: `set_timesteps(K)`, then `step(...)` for step_index = 0..K-1."""

    def __init__(
        self,
        layout: VocabLayout,
        config: SamplerConfig | None = None,
        code_groups: tuple[tuple[int, int], ...] | None = None,
    ):
        """``code_groups``: the image tokenizer's code ranges ``(start, stop)`` within its codebook, used when
        ``config.one_code_group`` is on (None or one group: no constraint)."""
        self.layout = layout
        self.config = config or SamplerConfig()
        self.steps = self.config.steps
        self.code_groups = tuple(code_groups or ())
        # [G, V]: the vocabulary ids of each group's image codes
        self._group_ids = torch.zeros(len(self.code_groups), layout.vocab_size, dtype=torch.bool)
        for g, (a, b) in enumerate(self.code_groups):
            self._group_ids[g, layout.image_offset + a : layout.image_offset + b] = True

    def set_timesteps(self, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = steps

    def masks_after(self, step_index: int, initial_masked: torch.Tensor) -> torch.Tensor:
        """Number of masks [B] that remain after step `step_index` (0-based): 0 after the last step."""
        if step_index >= self.steps - 1:
            return torch.zeros_like(initial_masked)
        ratio = mask_ratio((step_index + 1) / self.steps, self.config.schedule)
        return torch.floor(initial_masked.float() * ratio).long()

    def commit_counts(
        self, step_index: int, initial_masked: torch.Tensor, masked: torch.Tensor, confidence: torch.Tensor
    ) -> torch.Tensor:
        """How many masked positions [B] to commit at this step: what the unmasking schedule leaves, and at
        least one while masks remain. masked [B, L] bool, confidence [B, L] (used by adaptive subclasses)."""
        remaining = masked.sum(-1)
        keep_masked = torch.minimum(self.masks_after(step_index, initial_masked), remaining)
        # always make progress while masks remain
        keep_masked = torch.where((keep_masked >= remaining) & (remaining > 0), remaining - 1, keep_masked)
        return remaining - keep_masked

    def allowed_mask(self, device) -> torch.Tensor:
        """BoolTensor [L, V]: ids each position may take (its modality's slice; never [MASK])."""
        return self.layout.allowed_tokens.to(device)[self.layout.position_modality.to(device)]

    def step(
        self,
        logits: torch.Tensor,
        x_t: torch.Tensor,
        step_index: int,
        initial_masked: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """One MaskGIT step.

        logits [B, L, V] (full vocabulary), x_t [B, L] current tokens, initial_masked [B] number of masks at
        the start of sampling. Returns StepOutput with the new tokens.
        """
        cfg = self.config
        masked = x_t == self.layout.mask_id
        # only masked positions are sampled (the others keep their token): [M, V] rows instead of [B, L, V]
        rows = masked.nonzero(as_tuple=True)
        picked = torch.nan_to_num(logits[rows].float(), nan=float("-inf"), posinf=1e4, neginf=float("-inf"))
        allowed = self.allowed_mask(logits.device)[rows[1]]
        if cfg.pad_suffix:
            pad_banned, words_banned = self._pad_suffix_bans(x_t)
            constrained = allowed.clone()
            constrained[:, self.layout.pad_id] &= ~pad_banned[rows]
            constrained[:, : self.layout.text_vocab_size] &= ~words_banned[rows][:, None]
            # a given (inpainting) report with words after a <pad> can leave nothing: then the rule yields
            constrained_empty = ~constrained.any(-1, keepdim=True)
            allowed = torch.where(constrained_empty, allowed, constrained)
        if cfg.one_code_group and len(self.code_groups) > 1:
            allowed = allowed & self._image_group_allowed(
                picked.masked_fill(~allowed, float("-inf")), x_t, rows
            )
        picked = picked.masked_fill(~allowed, float("-inf"))
        # a masked position whose allowed logits are all -inf (e.g. all NaN) falls back to a uniform choice over
        # its slice
        dead = torch.isinf(picked).all(-1, keepdim=True)
        picked = torch.where(dead & allowed, torch.zeros_like(picked), picked)

        if cfg.temperature > 0:
            scaled = filter_top_k_top_p(picked / cfg.temperature, cfg.top_k, cfg.top_p)
            probs = torch.softmax(scaled, dim=-1)
            picked_ids = sample_categorical(probs, generator)
        else:
            probs = torch.softmax(picked, dim=-1)
            picked_ids = picked.argmax(-1)
        sampled = x_t.clone()
        sampled[rows] = picked_ids
        confidence = torch.full(x_t.shape, float("nan"), device=x_t.device)
        if cfg.confidence == "max":  # how sure the model is at the position, whatever was drawn there
            confidence[rows] = probs.max(-1).values
        else:
            confidence[rows] = probs.gather(-1, picked_ids[:, None]).squeeze(-1)

        # rank masked positions by log-confidence plus annealed Gumbel noise (MaskGIT's choice temperature)
        score = torch.log(confidence.clamp_min(1e-30))
        noise_scale = cfg.confidence_noise * cfg.temperature * (1 - (step_index + 1) / self.steps)
        if noise_scale > 0:
            u = torch.rand(score.shape, generator=generator, device=score.device).clamp(1e-20, 1 - 1e-7)
            score = score + noise_scale * -torch.log(-torch.log(u))
        score = score.masked_fill(~masked, float("-inf"))

        to_commit = self.commit_counts(step_index, initial_masked, masked, confidence)
        order = score.argsort(dim=-1, descending=True)
        is_text = self._text_positions(x_t.device)[None]
        counted = masked
        if cfg.pad_suffix:
            # a sampled <pad> ranked among the step's commits is committed without using up a commit: the
            # step still places `to_commit` words (or image codes), and the report's length follows from them
            counted = masked & ~(is_text & (sampled == self.layout.pad_id))
        # in score order, how many counted commits stand before each position; then back to sequence order
        counted_in_order = counted.gather(-1, order).long()
        before_in_order = counted_in_order.cumsum(-1) - counted_in_order
        counted_before = torch.empty_like(before_in_order).scatter_(-1, order, before_in_order)
        commit = (counted_before < to_commit[:, None]) & masked
        tokens = torch.where(commit, sampled, x_t)
        padding = None
        if cfg.pad_suffix:
            tokens, commit = self._fill_after_pad(tokens, commit, masked)
            padding = (commit & is_text & (tokens == self.layout.pad_id)).sum(-1)
        return StepOutput(
            tokens=tokens, predicted=sampled, confidence=confidence, committed=commit, padding=padding
        )

    # ---- each image from one group of codes -----------------------------------------------------------
    def _image_group_allowed(self, picked: torch.Tensor, x_t: torch.Tensor, rows) -> torch.Tensor:
        """BoolTensor [M, V] for the masked positions ``rows``: at image positions only the ids of the image's
        group (the group of most of its committed codes; with none committed, the group with the most
        probability mass over its masked image positions); everything elsewhere."""
        image = self.layout.image_slice
        in_group = self._group_ids.to(picked.device)
        # [B, G]: the image's committed codes in each group ([MASK] is in none)
        counts = in_group[:, x_t[:, image]].sum(-1).T.float()
        is_image = (rows[1] >= image.start) & (rows[1] < image.stop)
        probs = torch.softmax(picked[is_image], -1)  # [M_image, V]
        mass = probs.nan_to_num(0.0) @ in_group.T.to(probs.dtype)  # [M_image, G]
        mass_per_image = torch.zeros_like(counts).index_add_(0, rows[0][is_image], mass)
        group = torch.where(counts.sum(-1, keepdim=True) > 0, counts, mass_per_image).argmax(-1)  # [B]
        allowed = torch.ones_like(picked, dtype=torch.bool)
        allowed[is_image] = in_group[group[rows[0][is_image]]]
        return allowed

    # ---- the report ends at its first <pad> ----------------------------------------------------------
    def _text_positions(self, device) -> torch.Tensor:
        return self.layout.position_modality.to(device) == TEXT

    def _pad_suffix_bans(self, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """BoolTensors [B, L]: where <pad> may not go (report positions before the last word already in place,
        decoded or given) and where words may not go (after a <pad> already in place)."""
        layout = self.layout
        is_text = self._text_positions(x_t.device)[None]
        position = torch.arange(x_t.shape[1], device=x_t.device)[None]
        word = is_text & (x_t != layout.mask_id) & (x_t != layout.pad_id)
        last_word = torch.where(word, position, -1).amax(-1, keepdim=True)
        return is_text & (position < last_word), is_text & (position > self._first_pad(x_t))

    def _first_pad(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, 1]: the first report position holding <pad> (the sequence length when there is none)."""
        is_text = self._text_positions(tokens.device)[None]
        position = torch.arange(tokens.shape[1], device=tokens.device)[None]
        return torch.where(is_text & (tokens == self.layout.pad_id), position, tokens.shape[1]).amin(
            -1, keepdim=True
        )

    def _fill_after_pad(self, tokens: torch.Tensor, commit: torch.Tensor, masked: torch.Tensor):
        """Every position that was masked after the first <pad> now in place becomes a committed <pad> (a word
        committed there in this same step loses to the earlier end of the report)."""
        is_text = self._text_positions(tokens.device)[None]
        position = torch.arange(tokens.shape[1], device=tokens.device)[None]
        fill = is_text & masked & (position > self._first_pad(tokens))
        tokens = torch.where(fill, torch.full_like(tokens, self.layout.pad_id), tokens)
        return tokens, commit | fill


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
