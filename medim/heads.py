"""The restricted output head: logits only where the sampler reads them (exact; the pipeline's default).

The sampler reads image-code logits at masked image positions and text + pad logits at masked text positions;
everything else it sets to -inf. Evaluating only those rows of the output head at only those positions gives the
same sampling distribution for a fraction of the cost (the full-vocabulary head can cost more than the body).
Guidance is applied on the restricted log-probabilities: they differ from the full-vocabulary ones by a constant
per position, which no softmax over the slice can see.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medim.modeling import MeDiMModel
from medim.sampling import apply_guidance
from medim.vocab import IMAGE, TEXT, VocabLayout

__all__ = ["HeadBlock", "modality_head", "restricted_logits", "scatter_head"]


@dataclass
class HeadBlock:
    """Logits of one modality at some positions: `logits` [B, P, Vm] for sequence positions `positions` [P]
    over the vocabulary ids of `_head_rows(layout, modality)` (a slice, or for text the text slice then pad)."""

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
