"""Autoregressive decoding with a KV cache on MeDiM's own backbone: the Liquid-style latency baseline.

The same weights run causally through Hugging Face's forward (`past_key_values` with a `DynamicCache`): the
condition is prefilled once, then one token per forward, sampled (or taken greedily) from the modality's slice.
Timestep AdaLN is not used (HF's forward does not know it), so the outputs are not a trained AR model's — this
is a like-for-like FLOP and latency baseline, not a quality baseline.

Token order (condition first, as an AR model needs):

- report→image: report slot (T tokens), <boi>, then N image tokens;
- image→report: <boi>, image, <eoi>, then `text_tokens` report tokens (a trained AR model stops at its
  end-of-report token: pass the report's length + 1 to give it that advantage);
- pair: <boi>, N image tokens, <eoi> (fed, not sampled), then `text_tokens` report tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers import DynamicCache

from medim.sampling import apply_guidance, unconditional_input
from medim.vocab import IMAGE, TEXT


@contextlib.contextmanager
def causal_attention(model) -> Iterator[None]:
    """Temporarily restore the causal flag on every attention module (MeDiMModel clears it)."""
    layers = model.decoder.layers
    saved = [layer.self_attn.is_causal for layer in layers]
    for layer in layers:
        layer.self_attn.is_causal = True
    try:
        yield
    finally:
        for layer, flag in zip(layers, saved):
            layer.self_attn.is_causal = flag


def ar_plan(
    task: str, layout, x_init: torch.Tensor, text_tokens: int
) -> tuple[torch.Tensor, list[int | None]]:
    """(prefix [B, P], plan) where plan lists, per decoding step, the modality to sample (IMAGE/TEXT) or None
    for a forced token (<eoi> in pair)."""
    if not 0 <= text_tokens <= layout.text_tokens:
        raise ValueError(f"text_tokens must be in [0, {layout.text_tokens}], got {text_tokens}")
    boi = x_init[:, :1]
    if task == "report2image":
        return torch.cat([x_init[:, layout.text_slice], boi], 1), [IMAGE] * layout.image_tokens
    if task == "image2report":
        return x_init[:, : layout.text_slice.start], [TEXT] * text_tokens
    if task == "pair":
        return boi, [IMAGE] * layout.image_tokens + [None] + [TEXT] * text_tokens
    raise ValueError(f"unknown task {task!r}; choose report2image, image2report or pair")


@torch.no_grad()
def ar_generate(
    pipe,
    task: str,
    x_init: torch.Tensor,
    generate: torch.Tensor,
    *,
    text_tokens: int | None = None,
    temperature: float = 1.0,
    guidance: float = 0.0,
    seed: int = 0,
) -> torch.Tensor:
    """Decode the task's tokens left to right; returns MeDiM sequences [B, L] (pad after the decoded text).

    x_init [B, L] / generate [B, L] come from `pipe.prepare(task, ...)`; with guidance the condition blanked to
    [MASK] runs as a second half of the batch (as Liquid does) and the two are combined per token.
    """
    layout = pipe.layout
    model = pipe.model
    text_tokens = layout.text_tokens if text_tokens is None else text_tokens
    prefix, plan = ar_plan(task, layout, x_init, text_tokens)
    batch = x_init.shape[0]
    if guidance > 0:
        uncond, _ = ar_plan(task, layout, unconditional_input(x_init, generate, layout), text_tokens)
        prefix = torch.cat([prefix, uncond])
    allowed = layout.allowed_tokens
    generator = torch.Generator().manual_seed(seed)
    backbone = model.backbone
    cache = DynamicCache(config=backbone.config)
    decoded: list[torch.Tensor] = []
    with causal_attention(model):
        logits = backbone(input_ids=prefix, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
        for index, modality in enumerate(plan):
            if modality is None:
                token = torch.full((batch,), layout.eoi_id, dtype=torch.long)
            else:
                last = logits[:, -1].float()
                last = last.masked_fill(~allowed[modality], float("-inf"))
                if guidance > 0:
                    cond, unc = last.chunk(2)
                    last = apply_guidance(cond, unc, guidance).masked_fill(~allowed[modality], float("-inf"))
                if temperature > 0:
                    probs = torch.softmax(last / temperature, -1)
                    token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
                else:
                    token = last.argmax(-1)
            decoded.append(token)
            if index + 1 < len(plan):
                feed = token.repeat(2) if guidance > 0 else token
                logits = backbone(input_ids=feed[:, None], past_key_values=cache, use_cache=True).logits
    return _to_sequence(task, layout, x_init, torch.stack(decoded, 1) if decoded else None)


def _to_sequence(task: str, layout, x_init: torch.Tensor, decoded: torch.Tensor | None) -> torch.Tensor:
    """Place AR-decoded tokens [B, n] into MeDiM's layout (report slot padded after the decoded tokens)."""
    seq = x_init.clone()
    image_n = layout.image_tokens
    if task == "report2image":
        seq[:, layout.image_slice] = decoded
        return seq
    text = decoded if task == "image2report" else decoded[:, image_n + 1 :]
    if task == "pair":
        seq[:, layout.image_slice] = decoded[:, :image_n]
    start = layout.text_slice.start
    seq[:, layout.text_slice] = layout.pad_id
    seq[:, start : start + text.shape[1]] = text
    return seq


def ar_run(
    pipe,
    task: str,
    *,
    report=None,
    image=None,
    text_tokens: int | None = None,
    guidance: float = 0.0,
    temperature: float = 1.0,
    seed: int = 0,
) -> tuple[list, list[str]]:
    """End to end like `MeDiMPipeline.run`: inputs -> (images (PIL, VQ-decoded; [] for image→report), reports)."""
    x_init, generate, _ = pipe.prepare(task, report=report, image=image)
    seq = ar_generate(
        pipe,
        task,
        x_init,
        generate,
        text_tokens=text_tokens,
        guidance=guidance,
        temperature=temperature,
        seed=seed,
    )
    images = []
    if task != "image2report":
        images = pipe.decode_images(pipe.layout.image_codes(seq).clamp_min(0))
    reports = [pipe.decode_report(ids) for ids in pipe.layout.text_ids(seq)]
    return images, reports
