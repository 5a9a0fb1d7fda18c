"""MeDiM's denoiser: a Hugging Face decoder-only LM made bidirectional and timestep-aware (forward pass only).

The backbone is wrapped, not forked. Its own embedding, rotary embedding, attention, MLP, norms and head are
reused; this module only changes how the decoder layers are driven:

1. the causal mask is removed: every attention module gets `is_causal = False` (the flag SDPA and
   FlashAttention read) and the mask passed down is padding-only (the one eager attention reads);
2. a continuous timestep embedding (sinusoidal -> MLP, DiT's TimestepEmbedder) conditions every layer through
   AdaLN-Zero: a zero-initialised Linear(hidden, 6*hidden) gives shift/scale/gate for the attention and MLP
   branches. With `adaln_gate="one_plus"` the branches are multiplied by (1 + gate), so at initialisation the
   adapted model computes exactly what the pretrained backbone computes. `adaln_gate="dit"` multiplies by the
   gate itself, as DiT and the official MeDiM checkpoint do; converting between the two shifts the gate bias by 1.

Ablation switches (config): `causal_attention=True` keeps the causal mask; `timestep_conditioning="additive"`
adds the timestep embedding to the token embeddings instead of AdaLN; `"off"` ignores t.

This is the only forward pass. Speed modes call it: the restricted output head (medim.heads) reads
`hidden_states`, and the approximate condition cache (medim.speedups) runs a subset of `positions` against the
stored keys/values of the others (`key_values`, a `PositionKeyValues`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from medim.config import MeDiMConfig
from medim.vocab import VocabLayout

# ---------------------------------------------------------------------------------------------------------
# Timestep embedding and modulation helpers (DiT)
# ---------------------------------------------------------------------------------------------------------


class TimestepEmbedder(nn.Module):
    """Continuous noise level t in [0, 1] -> vector [B, hidden] (sinusoidal features, then a 2-layer MLP)."""

    def __init__(
        self,
        hidden_size: int,
        frequency_dim: int = 256,
        max_period: float = 10_000.0,
        input: str = "scaled_t",
    ):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.max_period = max_period
        self.input = input
        self.mlp = nn.Sequential(
            nn.Linear(frequency_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    def argument(self, t: torch.Tensor) -> torch.Tensor:
        """The scalar the sinusoid embeds, [B]: 1000 t, or the log-linear total noise -log(1 - t) (the official
        MeDiM code's sigma, with t capped at 1 - 1e-3 as its sampling eps does)."""
        if self.input == "loglinear_sigma":
            return -torch.log1p(-t.float().clamp(0.0, 1.0 - 1e-3))
        return t.float() * 1000.0

    def sinusoidal(self, t: torch.Tensor) -> torch.Tensor:
        """t [B] -> features [B, frequency_dim] ([cos, sin] of the argument times geometric frequencies)."""
        half = self.frequency_dim // 2
        freqs = torch.exp(
            -math.log(self.max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
        )
        args = self.argument(t)[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        features = self.sinusoidal(t).to(self.mlp[0].weight.dtype)
        return self.mlp(features)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [B, L, D], shift/scale [B, D]."""
    return x * (1 + scale[:, None]) + shift[:, None]


class AdaLNModulation(nn.Module):
    """Per-layer conditioning: timestep embedding [B, D] -> six [B, D] tensors, zero at initialisation."""

    def __init__(self, hidden_size: int, input_activation: str = "silu"):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 6 * hidden_size)
        self.input_activation = input_activation
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # DiT applies SiLU first; the official MeDiM layers feed the embedding to the linear directly
        return self.linear(F.silu(c) if self.input_activation == "silu" else c).chunk(6, dim=-1)


class PositionKeyValues:
    """Per-layer attention keys/values of a fixed set of sequence positions, in the backbone's Cache protocol.

    While `recording`, a full pass stores the keys/values at `positions` (indices into that pass's sequence);
    afterwards a pass over the other positions attends to [stored; its own] keys/values. The stored ones were
    computed from the tokens and t of the recording pass, so reusing them is exact only while those stay the same
    (an approximation MeDiM's speed modes measure, not assume).
    """

    def __init__(self, positions: torch.Tensor):
        self.positions = positions
        self.layers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.recording = True

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Called by the backbone's attention with the keys/values [B, H, P, d] of the positions it runs."""
        if self.recording:
            self.layers[layer_idx] = (keys[:, :, self.positions], values[:, :, self.positions])
            return keys, values
        past_keys, past_values = self.layers[layer_idx]
        return torch.cat([past_keys, keys], 2), torch.cat([past_values, values], 2)


# ---------------------------------------------------------------------------------------------------------
# Backbone construction
# ---------------------------------------------------------------------------------------------------------


def build_backbone(config: MeDiMConfig, *, pretrained: bool = False) -> PreTrainedModel:
    """Instantiate the HF causal LM named by `config.backbone` (random) or load `config.backbone_path`.

    When loading pretrained weights the vocabulary is extended to the shared layout (image codes + specials)
    with mean-initialised new rows.
    """
    layout = VocabLayout.from_config(config)
    if pretrained:
        if not config.backbone_path:
            raise ValueError("pretrained=True needs config.backbone_path (a local directory or hub id)")
        backbone = AutoModelForCausalLM.from_pretrained(
            config.backbone_path, attn_implementation=config.attn_implementation, dtype=torch.float32
        )
        if backbone.get_input_embeddings().num_embeddings > config.text_vocab_size:
            # keep the text ids as they are; the rows past text_vocab_size are replaced by our layout
            backbone.resize_token_embeddings(config.text_vocab_size, mean_resizing=False)
        backbone.resize_token_embeddings(layout.vocab_size, mean_resizing=True)
    else:
        backbone_config = dict(config.backbone)
        model_type = backbone_config.pop("model_type")
        backbone_config["vocab_size"] = layout.vocab_size
        hf_config = AutoConfig.for_model(model_type, **backbone_config)
        hf_config._attn_implementation = config.attn_implementation
        backbone = AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)
    if backbone.get_input_embeddings().num_embeddings != layout.vocab_size:
        raise ValueError(
            f"backbone vocabulary has {backbone.get_input_embeddings().num_embeddings} rows, "
            f"the layout needs {layout.vocab_size}"
        )
    return backbone


def _decoder(backbone: PreTrainedModel) -> nn.Module:
    """The inner decoder (`.model` on Llama/Gemma/Qwen2) holding embed_tokens, layers, norm, rotary_emb."""
    inner = getattr(backbone, "model", None)
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    if inner is None or not all(hasattr(inner, name) for name in needed):
        raise ValueError(
            f"{type(backbone).__name__} does not expose .model.{{{', '.join(needed)}}}; "
            "MeDiM supports Llama-, Gemma- and Qwen2-style decoder-only LMs"
        )
    return inner


# ---------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------


class MeDiMModel(nn.Module):
    """Bidirectional, timestep-conditioned denoiser over the shared image+text vocabulary.

    forward(input_ids [B, L], t [B] in [0, 1], attention_mask [B, L] (1 = real token) or None)
        -> logits [B, L, V] (or [B, P, V] for the positions selected by `logits_positions`).
    """

    def __init__(self, config: MeDiMConfig, backbone: PreTrainedModel | None = None):
        super().__init__()
        self.config = config
        self.layout = VocabLayout.from_config(config)
        self.backbone = backbone if backbone is not None else build_backbone(config)
        _decoder(self.backbone)  # fail early on unsupported architectures
        hidden = self.backbone.config.hidden_size
        for layer in self.decoder.layers:
            # SDPA and FlashAttention take causality from this flag, not from the mask
            layer.self_attn.is_causal = config.causal_attention
        self.gradient_checkpointing = False  # recompute layer activations in backward (large backbones)
        # rotary (cos, sin) of positions 0..L-1 per (L, device, dtype): they depend on nothing else, and
        # rebuilding them at every sampling step is measurable on a small CPU
        self._rotary_tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.timestep_embedder = None
        self.adaln = None
        if config.timestep_conditioning != "off":
            self.timestep_embedder = TimestepEmbedder(
                hidden, config.timestep_frequency_dim, input=config.timestep_input
            )
        if config.timestep_conditioning == "adaln":
            # zero-initialised: with the (1 + gate) form the layers start as the pretrained blocks; with the
            # DiT form (gate * branch) they start blank, as in DiT and the official MeDiM code
            self.adaln = nn.ModuleList(
                AdaLNModulation(hidden, config.adaln_input_activation) for _ in self.decoder.layers
            )

    @property
    def decoder(self) -> nn.Module:
        """The backbone's inner decoder (a property, so its weights are not registered twice)."""
        return _decoder(self.backbone)

    @property
    def attn_implementation(self) -> str:
        return self.backbone.config._attn_implementation

    def _attention_mask(
        self,
        key_allowed: torch.Tensor | None,
        query_positions: torch.Tensor,
        key_positions: torch.Tensor,
        dtype,
        device,
    ):
        """Additive mask [B, 1, Q, K] or None. Padding-only unless the causal ablation is on.

        key_allowed [B, K] (True = may be attended to) or None; query/key_positions [Q] / [K]: the sequence
        positions of the queries and keys (causality compares them, so subsets and reordered keys work)."""
        if key_allowed is None and not self.config.causal_attention:
            return None  # bidirectional, no padding: every backend attends everywhere
        if self.attn_implementation.startswith("flash"):
            if key_allowed is not None and not bool(key_allowed.all()):
                raise ValueError("padding masks are not supported with FlashAttention in MeDiM; use sdpa")
            return None  # the is_causal flag carries the causal ablation here
        allowed = torch.ones(1, 1, len(query_positions), len(key_positions), dtype=torch.bool, device=device)
        if key_allowed is not None:
            allowed = allowed & key_allowed.bool()[:, None, None, :]
        if self.config.causal_attention:
            allowed = allowed & (key_positions[None, :] <= query_positions[:, None])
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
        return mask.masked_fill(~allowed, torch.finfo(dtype).min)

    def _rotary(self, hidden: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary (cos, sin) [1, length, head_dim] for positions 0..length-1, built once per length."""
        key = (length, hidden.device, hidden.dtype)
        table = self._rotary_tables.get(key)
        if table is None:
            with torch.no_grad():
                full = torch.arange(length, device=hidden.device)[None]
                table = tuple(part.detach() for part in self.decoder.rotary_emb(hidden, position_ids=full))
            self._rotary_tables[key] = table
        return table

    def forward(
        self,
        input_ids: torch.Tensor,
        t: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        logits_positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden = self.hidden_states(input_ids, t, attention_mask)
        if logits_positions is not None:
            hidden = hidden[:, logits_positions]
        return self.backbone.get_output_embeddings()(hidden)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        t: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        positions: torch.Tensor | None = None,
        key_values: PositionKeyValues | None = None,
    ) -> torch.Tensor:
        """The final-norm hidden states [B, L, D] that the output head reads (forward without the head).

        Callers that need logits only at some positions or for one modality's ids apply the head rows
        themselves (see medim.heads.modality_head): the full-vocabulary head can cost more than the body.

        `positions` [P] runs only those sequence positions of input_ids [B, L] (hidden [B, P, D]), attending to
        them and to the keys/values stored in `key_values` (the complement, recorded by an earlier full pass
        with `key_values.recording`). Logits offsets need full passes.
        """
        batch, length = input_ids.shape
        key_allowed = attention_mask
        if not self.config.attend_to_pad:
            # pad positions are not attended to (the official MeDiM attention mask); queries there still run
            not_pad = input_ids != self.layout.pad_id
            key_allowed = not_pad if key_allowed is None else key_allowed.bool() & not_pad
        all_positions = torch.arange(length, device=input_ids.device)
        query_positions, key_positions = all_positions, all_positions
        if positions is not None:
            if key_values is None or key_values.recording:
                raise ValueError("positions need the recorded keys/values of the other positions")
            if self.config.logits_offsets != (0, 0):
                raise ValueError("a partial pass cannot apply logits_offsets; run all positions")
            query_positions = positions
            key_positions = torch.cat([key_values.positions, positions])
            if key_allowed is not None:
                key_allowed = key_allowed[:, key_positions]
            input_ids = input_ids[:, positions]
        hidden = self.decoder.embed_tokens(input_ids)
        cond = None
        if self.timestep_embedder is not None:
            if t is None:
                raise ValueError("this model is timestep-conditioned: pass t [B] in [0, 1]")
            if t.shape != (batch,):
                raise ValueError(f"t must have shape ({batch},), got {tuple(t.shape)}")
            cond = self.timestep_embedder(t.to(hidden.device))
            if self.adaln is None:  # additive ablation
                hidden = hidden + cond[:, None].to(hidden.dtype)

        position_ids = query_positions[None].expand(batch, -1)
        cos, sin = self._rotary(hidden, length)
        position_embeddings = (cos[:, query_positions], sin[:, query_positions])
        mask = self._attention_mask(key_allowed, query_positions, key_positions, hidden.dtype, hidden.device)

        for index, layer in enumerate(self.decoder.layers):
            args = (index, layer, hidden, cond, position_embeddings, mask, position_ids, key_values)
            if self.gradient_checkpointing and self.training:
                hidden = checkpoint(self._layer, *args, use_reentrant=False)
            else:
                hidden = self._layer(*args)

        if self.config.logits_offsets != (0, 0):
            hidden = hidden[:, self._logits_source(length, hidden.device)]
        return self.decoder.norm(hidden)

    def _layer(
        self, index, layer, hidden, cond, position_embeddings, mask, position_ids, key_values=None
    ) -> torch.Tensor:
        """One decoder layer driven through the backbone's own submodules, with AdaLN-Zero when enabled."""
        adaln = self.adaln is not None
        if adaln:
            shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaln[index](cond)
            if self.config.adaln_gate == "one_plus":
                gate_a, gate_m = 1 + gate_a, 1 + gate_m
        normed = layer.input_layernorm(hidden)
        if adaln:
            normed = modulate(normed, shift_a, scale_a)
        attn_out, _ = layer.self_attn(
            hidden_states=normed,
            position_embeddings=position_embeddings,
            attention_mask=mask,
            position_ids=position_ids,
            past_key_values=key_values,
        )
        hidden = hidden + (gate_a[:, None] * attn_out if adaln else attn_out)
        normed = layer.post_attention_layernorm(hidden)
        if adaln:
            normed = modulate(normed, shift_m, scale_m)
        mlp_out = layer.mlp(normed)
        return hidden + (gate_m[:, None] * mlp_out if adaln else mlp_out)

    def _logits_source(self, length: int, device) -> torch.Tensor:
        """LongTensor [L]: the hidden state each position's logits are read from (p + the modality's offset)."""
        if length != self.layout.seq_len:
            raise ValueError(
                f"logits_offsets need full sequences of {self.layout.seq_len} tokens, got {length}"
            )
        image_offset, text_offset = self.config.logits_offsets
        source = torch.arange(length, device=device)
        source[self.layout.image_slice] += image_offset
        source[self.layout.text_slice] += text_offset
        return source

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
