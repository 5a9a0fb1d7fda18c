"""Analytic FLOP counts of MeDiM's forward pass (2·params·L for the per-token matmuls, plus attention).

The count is checked against torch's FlopCounterMode in tests/benchmarks. Elementwise work (norms, rotary,
activations, softmax) is not counted: the floor is what the matmul units must do.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass
class PassFlops:
    """FLOPs of one forward pass over B sequences of L tokens with the head applied at P positions of width V'."""

    body: float  # per-token linear layers (attention projections and MLP) over B·L tokens
    attention: float  # QK^T and AV
    conditioning: float  # timestep MLP and AdaLN (per sequence, not per token)
    head: float

    @property
    def total(self) -> float:
        return self.body + self.attention + self.conditioning + self.head


def _linear_params(modules) -> int:
    return sum(m.in_features * m.out_features for m in modules if isinstance(m, nn.Linear))


def forward_flops(
    model,
    batch: int,
    length: int | None = None,
    head_positions: int | None = None,
    head_width: int | None = None,
) -> PassFlops:
    """FLOPs of `model.forward` (a MeDiMModel) for [batch, length] inputs.

    head_positions / head_width: how many positions and output ids the head is applied to (default all L and the
    full vocabulary; the restricted head passes the masked positions and their modality's width).
    """
    layout = model.layout
    length = layout.seq_len if length is None else length
    layers = list(model.decoder.layers)
    body_params = sum(_linear_params(layer.modules()) for layer in layers)
    attn = layers[0].self_attn
    query_width = attn.q_proj.out_features
    attention = len(layers) * 2 * 2 * batch * length * length * query_width
    conditioning = 0
    if model.timestep_embedder is not None:
        conditioning += 2 * batch * _linear_params(model.timestep_embedder.modules())
    if model.adaln is not None:
        conditioning += 2 * batch * _linear_params(model.adaln.modules())
    head = model.backbone.get_output_embeddings()
    positions = length if head_positions is None else head_positions
    width = head.out_features if head_width is None else head_width
    return PassFlops(
        body=2.0 * body_params * batch * length,
        attention=float(attention),
        conditioning=float(conditioning),
        head=2.0 * head.in_features * width * batch * positions,
    )


def training_step_flops(model, batch: int, length: int | None = None) -> float:
    """Forward + backward ≈ 3 × forward FLOPs (the usual MFU convention)."""
    return 3 * forward_flops(model, batch, length).total
