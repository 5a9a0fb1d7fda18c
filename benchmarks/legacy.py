"""The sampling path as it was before the speedups, kept so that benchmarks can time "before" in the same run.

`LegacyMaskGITSampler.step` is MaskGIT's step over the full [B, L, V] logits with torch.multinomial (the
original implementation); use it with `pipe.restrict_head = False` for the original pipeline behaviour.
"""

from __future__ import annotations

import torch

from medim.sampling import MaskGITSampler, StepOutput, filter_top_k_top_p


class LegacyMaskGITSampler(MaskGITSampler):
    """MaskGIT over every position's full-vocabulary logits, sampled with torch.multinomial."""

    def step(self, logits, x_t, step_index, initial_masked, generator=None) -> StepOutput:
        cfg = self.config
        masked = x_t == self.layout.mask_id
        logits = torch.nan_to_num(logits.float(), nan=float("-inf"), posinf=1e4, neginf=float("-inf"))
        allowed = self.allowed_mask(logits.device)[None].expand_as(logits)
        logits = logits.masked_fill(~allowed, float("-inf"))
        dead = torch.isinf(logits).all(-1, keepdim=True)
        fallback = torch.where(masked[..., None], allowed, torch.ones_like(allowed))
        logits = torch.where(dead & fallback, torch.zeros_like(logits), logits)
        if cfg.temperature > 0:
            scaled = filter_top_k_top_p(logits / cfg.temperature, cfg.top_k, cfg.top_p)
            probs = torch.softmax(scaled, dim=-1)
            flat = probs.view(-1, probs.shape[-1])
            sampled = torch.multinomial(flat, 1, generator=generator).view(x_t.shape)
        else:
            probs = torch.softmax(logits, dim=-1)
            sampled = logits.argmax(-1)
        confidence = probs.gather(-1, sampled[..., None]).squeeze(-1)
        score = torch.log(confidence.clamp_min(1e-30))
        noise_scale = cfg.confidence_noise * cfg.temperature * (1 - (step_index + 1) / self.steps)
        if noise_scale > 0:
            u = torch.rand(score.shape, generator=generator, device=score.device).clamp(1e-20, 1 - 1e-7)
            score = score + noise_scale * -torch.log(-torch.log(u))
        score = score.masked_fill(~masked, float("-inf"))
        to_commit = self.commit_counts(step_index, initial_masked, masked, confidence)
        order = score.argsort(dim=-1, descending=True)
        rank = torch.empty_like(order).scatter_(
            -1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order).contiguous()
        )
        commit = (rank < to_commit[:, None]) & masked
        tokens = torch.where(commit, sampled, x_t)
        predicted = torch.where(masked, sampled, x_t)
        confidence = torch.where(masked, confidence, torch.full_like(confidence, float("nan")))
        return StepOutput(tokens=tokens, predicted=predicted, confidence=confidence, committed=commit)
