"""Infill accuracy: the cheapest probe of what the denoiser has learned.

Mask a fixed fraction of one modality's tokens in clean pairs (the rest of the pair stays visible), run the
denoiser once at the t whose masked fraction that is, and count how often the most likely token at a masked
position is the true one. On the report side only real report tokens are masked (padding is not a word the
model could get right by reading the image); on the image side every image position can be masked. One forward
pass per batch, no sampling, so it tracks training far more cheaply than generating and judging, and it is
deterministic for a seed.
"""

from __future__ import annotations

import torch

from medim.diffusion import get_schedule
from medim.vocab import IMAGE, TEXT, VocabLayout

DEFAULT_FRACTION = 0.15  # the share of one side's tokens masked, as `medim evaluate` reports it


def infill_accuracy(model, sequences: torch.Tensor, modality: str, **options) -> dict[str, float]:
    """Top-1 accuracy of ``model`` at masked ``modality`` positions ("text" or "image") of clean ``sequences``.

    ``options`` are :func:`infill_predictions`'s (``fraction``, ``schedule``, ``batch_size``, ``seed``,
    ``model_input``), so the masks are exactly the ones it draws.

    Returns:
        ``{"accuracy", "log_likelihood", "masked", "fraction"}``: accuracy over all masked positions of all
        sequences, the mean log-probability (nats) of the true token there (over the ids the sampler may place),
        the number of masked positions, and the fraction asked for.
    """
    masked, correct, log_likelihood = infill_predictions(model, sequences, modality, **options)
    total = int(masked.sum())
    return {
        "accuracy": int(correct[masked].sum()) / total if total else float("nan"),
        "log_likelihood": float(log_likelihood[masked].sum()) / total if total else float("nan"),
        "masked": total,
        "fraction": options.get("fraction", DEFAULT_FRACTION),
    }


@torch.no_grad()
def infill_predictions(
    model,
    sequences: torch.Tensor,
    modality: str,
    *,
    fraction: float = DEFAULT_FRACTION,
    schedule: str = "loglinear",
    batch_size: int = 64,
    seed: int = 0,
    model_input=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per position, what :func:`infill_accuracy` counts: ``(masked, correct, log_likelihood)``, each ``[N, L]``
    on the CPU; ``correct`` and ``log_likelihood`` are meaningful where ``masked`` (a benchmark can then split the
    accuracy by what each position holds).

    Args:
        model: a ``MeDiMModel`` (anything with ``.layout`` and ``forward(input_ids, t) -> logits``).
        sequences: clean packed sequences ``[N, L]`` (``layout.pack``).
        modality: ``"text"`` (real report tokens only) or ``"image"``.
        fraction: probability that an eligible position is masked.
        schedule: the noise schedule the model was trained with (sets t for ``fraction``).
        batch_size: sequences per forward pass.
        seed: the masks are a function of the seed only.
        model_input: what the model reads for the masked tokens (a pipeline's ``model_input``, which reads words
            its training never held as ``<unk>``); the targets stay the written ids.
    """
    if modality not in ("text", "image"):
        raise ValueError(f"modality must be 'text' or 'image', got {modality!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    layout: VocabLayout = model.layout
    if sequences.dim() != 2 or sequences.shape[1] != layout.seq_len:
        raise ValueError(f"sequences must be [N, {layout.seq_len}], got {tuple(sequences.shape)}")
    kind = TEXT if modality == "text" else IMAGE
    position_modality = layout.position_modality
    allowed = layout.allowed_tokens[kind]  # the ids the sampler may put there (text: words and pad)
    t_value = float(get_schedule(schedule).t_for_mask_probability(torch.tensor(fraction)))
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    masks, corrects, log_likelihoods = [], [], []
    for start in range(0, len(sequences), batch_size):
        x0 = sequences[start : start + batch_size].cpu()
        eligible = (position_modality == kind)[None].expand_as(x0)
        if kind == TEXT:
            eligible = eligible & (x0 != layout.pad_id)
        masked = eligible & (torch.rand(x0.shape, generator=generator) < fraction)
        xt = torch.where(masked, torch.full_like(x0, layout.mask_id), x0)
        t = torch.full((len(x0),), t_value)
        read = xt if model_input is None else model_input(xt)
        logits = model(read.to(device), t.to(device)).float().cpu()
        logits = logits.masked_fill(~allowed, float("-inf"))
        masks.append(masked)
        corrects.append(logits.argmax(-1) == x0)
        log_likelihoods.append(
            logits.log_softmax(-1).gather(-1, x0[..., None])[..., 0].masked_fill(~masked, 0.0)
        )
    model.train(was_training)
    return torch.cat(masks), torch.cat(corrects), torch.cat(log_likelihoods)
