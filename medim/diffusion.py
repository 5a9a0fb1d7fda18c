"""Absorbing-state (masked) discrete diffusion: noise schedules, forward masking and the eq. 6 loss.

Forward process (paper eq. 3–4): each maskable token independently keeps its value with probability alpha_t
and becomes [MASK] otherwise. The continuous-time objective (eq. 6, MDLM's SUBS parameterisation) is

    L = E_t [ w(t) * sum_{masked i} -log p_theta(x0_i | x_t) ],   w(t) = -alpha'(t) / (1 - alpha(t)),

which is 1/t for the log-linear schedule alpha_t = 1 - t. Training and sampling share these schedules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medim.config import DiffusionConfig
from medim.vocab import IMAGE, TEXT, VocabLayout

# ---------------------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------------------


class NoiseSchedule:
    """alpha(t): probability that a token is still clean at time t in [0, 1]; alpha(0)=1, alpha(1)=0."""

    name = "base"

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def alpha_derivative(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mask_probability(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - self.alpha(t)

    def t_for_mask_probability(self, p: torch.Tensor) -> torch.Tensor:
        """Inverse of mask_probability: the t at which a fraction p of tokens is masked."""
        raise NotImplementedError

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """w(t) = -alpha'(t) / (1 - alpha(t))."""
        return -self.alpha_derivative(t) / (1 - self.alpha(t))


class LogLinearSchedule(NoiseSchedule):
    """alpha_t = 1 - t (the official code's default): the masked fraction grows linearly."""

    name = "loglinear"

    def alpha(self, t):
        return 1 - t

    def alpha_derivative(self, t):
        return -torch.ones_like(t)

    def t_for_mask_probability(self, p):
        return p


class CosineSchedule(NoiseSchedule):
    """alpha_t = cos(pi t / 2): fewer masks early, more late (MaskGIT's cosine)."""

    name = "cosine"

    def alpha(self, t):
        return torch.cos(math.pi / 2 * t)

    def alpha_derivative(self, t):
        return -math.pi / 2 * torch.sin(math.pi / 2 * t)

    def t_for_mask_probability(self, p):
        return torch.acos((1 - p).clamp(-1, 1)) * 2 / math.pi


def get_schedule(name: str) -> NoiseSchedule:
    schedules = {"loglinear": LogLinearSchedule, "cosine": CosineSchedule}
    if name not in schedules:
        raise ValueError(f"unknown noise schedule {name!r}; choose from {sorted(schedules)}")
    return schedules[name]()


def sample_t(batch: int, *, eps: float = 1e-3, antithetic: bool = True, generator=None, device="cpu"):
    """Times t [B] in [eps, 1].

    Antithetic (low-discrepancy) sampling spreads one uniform offset over B evenly spaced strata, which lowers
    the variance of the loss estimate (MDLM).
    """
    u = torch.rand(1 if antithetic else batch, generator=generator, device=device)
    if antithetic:
        u = (u + torch.arange(batch, device=device) / batch) % 1
    return eps + (1 - eps) * u


# ---------------------------------------------------------------------------------------------------------
# Forward masking
# ---------------------------------------------------------------------------------------------------------


def forward_mask(
    x0: torch.Tensor,
    t: torch.Tensor,
    maskable: torch.Tensor,
    schedule: NoiseSchedule,
    mask_id: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x0): x0 [B, L], t [B], maskable BoolTensor [B, L] -> x_t [B, L]."""
    p_mask = schedule.mask_probability(t)[:, None]
    draw = torch.rand(x0.shape, generator=generator, device=x0.device)
    masked = (draw < p_mask) & maskable
    return torch.where(masked, torch.full_like(x0, mask_id), x0)


@dataclass
class TrainingBatch:
    """What the denoiser sees and what the loss needs; all tensors [B, L] except t [B]."""

    x0: torch.Tensor
    xt: torch.Tensor
    t: torch.Tensor
    target_mask: torch.Tensor  # positions that were masked and are scored
    task: list[str]


def choose_tasks(batch: int, config: DiffusionConfig, generator=None) -> list[str]:
    names = list(config.task_weights)
    weights = torch.tensor([config.task_weights[n] for n in names], dtype=torch.float)
    picks = torch.multinomial(weights, batch, replacement=True, generator=generator)
    return [names[i] for i in picks.tolist()]


def make_training_batch(
    x0: torch.Tensor,
    layout: VocabLayout,
    config: DiffusionConfig,
    *,
    prompt_lengths: torch.Tensor | None = None,
    unknown_id: int | None = None,
    generator: torch.Generator | None = None,
) -> TrainingBatch:
    """Mask clean sequences x0 [B, L] for training.

    Each sequence gets a task: `joint` masks both modalities at the same t (optionally keeping the first
    `prompt_lengths[b]` report tokens, the prompted-pair trick); `report2image` masks only the image (the report
    is the condition); `image2report` masks only the report. With probability `condition_dropout` the clean
    condition of a conditional task is fully masked and not scored, which trains the unconditional model used
    by classifier-free guidance. With `unknown_word_rate` > 0 each report token left visible is replaced by
    `unknown_id` (the text tokenizer's `<unk>`) at that rate; it is read, not scored, like the rest of the
    condition.
    """
    if config.unknown_word_rate > 0 and unknown_id is None:
        raise ValueError("unknown_word_rate > 0 needs the text tokenizer's <unk> id (unknown_id)")
    batch, _ = x0.shape
    device = x0.device
    schedule = get_schedule(config.schedule)
    t = sample_t(batch, eps=config.eps, antithetic=config.antithetic, generator=generator, device=device)
    modality = layout.position_modality.to(device)[None].expand(batch, -1)
    is_image, is_text = modality == IMAGE, modality == TEXT
    tasks = choose_tasks(batch, config, generator)
    task_image = torch.tensor([k in ("joint", "report2image") for k in tasks], device=device)[:, None]
    task_text = torch.tensor([k in ("joint", "image2report") for k in tasks], device=device)[:, None]
    maskable = (is_image & task_image) | (is_text & task_text)

    if prompt_lengths is not None and config.prompt_keep_prob > 0:
        keep = torch.rand(batch, generator=generator, device=device) < config.prompt_keep_prob
        keep = keep & torch.tensor([k == "joint" for k in tasks], device=device)
        text_pos = torch.arange(layout.seq_len, device=device)[None] - layout.text_slice.start
        prompt = is_text & (text_pos < prompt_lengths.to(device)[:, None]) & keep[:, None]
        maskable = maskable & ~prompt

    xt = forward_mask(x0, t, maskable, schedule, layout.mask_id, generator)

    # condition dropout: blank the condition of conditional tasks (not scored: it is not a target)
    drop = torch.rand(batch, generator=generator, device=device) < config.condition_dropout
    cond_image = drop[:, None] & torch.tensor([k == "image2report" for k in tasks], device=device)[:, None]
    cond_text = drop[:, None] & torch.tensor([k == "report2image" for k in tasks], device=device)[:, None]
    blank = (is_image & cond_image) | (is_text & cond_text)
    xt = torch.where(blank, torch.full_like(xt, layout.mask_id), xt)
    target_mask = (xt == layout.mask_id) & maskable

    if config.unknown_word_rate > 0:
        visible_words = is_text & (xt != layout.mask_id) & (xt != layout.pad_id)
        unknown = visible_words & (
            torch.rand(xt.shape, generator=generator, device=device) < config.unknown_word_rate
        )
        xt = torch.where(unknown, torch.full_like(xt, unknown_id), xt)
    return TrainingBatch(x0=x0, xt=xt, t=t, target_mask=target_mask, task=tasks)


# ---------------------------------------------------------------------------------------------------------
# Loss (eq. 6)
# ---------------------------------------------------------------------------------------------------------


def diffusion_loss(
    logits: torch.Tensor,
    batch: TrainingBatch,
    layout: VocabLayout,
    config: DiffusionConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 6 loss for logits [B, L, V] on a TrainingBatch.

    Per sequence: sum over masked positions of w(t) * modality_weight * -log p(x0 | x_t), divided by the
    number of maskable positions of the sequence's task (a constant per task, so the estimator stays unbiased
    for the per-token ELBO); then the batch mean. With ``config.loss_normalisation="masked_mean"`` the sum is
    divided by the number of positions actually masked instead (no w(t)). Logits at [MASK] are excluded from the softmax (SUBS: the
    model never puts mass on the absorbing state). Returns (loss, stats) with detached per-modality NLLs.
    """
    schedule = get_schedule(config.schedule)
    logits = logits.float().clone()
    logits[..., layout.mask_id] = float("-inf")
    nll = F.cross_entropy(logits.transpose(1, 2), batch.x0, reduction="none")  # [B, L]
    modality = layout.position_modality.to(logits.device)[None].expand_as(batch.x0)
    weights = torch.zeros_like(nll)
    weights[modality == IMAGE] = config.image_loss_weight
    weights[modality == TEXT] = config.text_loss_weight
    target = batch.target_mask.float()
    if config.loss_normalisation == "masked_mean":
        per_token = weights * nll * target
        denominators = target.sum(dim=1).clamp_min(1.0)
    else:
        w_t = schedule.loss_weight(batch.t)[:, None]
        per_token = w_t * weights * nll * target
        denominators = torch.tensor(
            [_task_positions(task, layout) for task in batch.task], device=logits.device, dtype=torch.float
        )
    loss = (per_token.sum(dim=1) / denominators).mean()
    with torch.no_grad():
        stats = {}
        for name, kind in (("image", IMAGE), ("text", TEXT)):
            sel = (modality == kind) & batch.target_mask
            stats[f"nll_{name}"] = nll[sel].mean() if sel.any() else torch.tensor(float("nan"))
        stats["masked_fraction"] = target.mean()
    return loss, stats


def _task_positions(task: str, layout: VocabLayout) -> int:
    if task == "report2image":
        return layout.image_tokens
    if task == "image2report":
        return layout.text_tokens
    return layout.image_tokens + layout.text_tokens


def causal_lm_loss(logits: torch.Tensor, x0: torch.Tensor, layout: VocabLayout) -> tuple[torch.Tensor, dict]:
    """Next-token loss of the causal pretraining stage, for logits [B, L, V] of clean sequences x0 [B, L].

    Hidden state p predicts token p + 1. Every image code is scored, and the report up to and including its
    first pad (so the model learns where a report ends); the pads after it, <eoi> and any fixed prefix/suffix
    are known and not scored. Unlike eq. 6, every scored token of every sequence teaches the model each step.
    Returns (mean NLL over scored tokens, stats with detached per-modality NLLs).
    """
    modality = layout.position_modality.to(x0.device)[None].expand_as(x0)
    scored = modality != 0
    text = x0[:, layout.text_slice]
    is_pad = text == layout.pad_id
    after_first_pad = (torch.cumsum(is_pad.long(), dim=1) - is_pad.long()) > 0
    scored[:, layout.text_slice] &= ~after_first_pad
    logits = logits[:, :-1].float().clone()
    logits[..., layout.mask_id] = float("-inf")
    targets, scored, modality = x0[:, 1:], scored[:, 1:], modality[:, 1:]
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # [B, L - 1]
    loss = (nll * scored).sum() / scored.sum().clamp_min(1)
    with torch.no_grad():
        stats = {}
        for name, kind in (("image", IMAGE), ("text", TEXT)):
            sel = scored & (modality == kind)
            stats[f"nll_{name}"] = nll[sel].mean() if sel.any() else torch.tensor(float("nan"))
    return loss, stats
