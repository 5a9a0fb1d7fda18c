"""The official MeDiM denoiser written from its published layer equations (Gemma decoder layers with DiT AdaLN),
used as the reference that the converted MeDiMModel must match; plus builders for random official weights.

Per layer (x the residual stream, c the timestep embedding):
    shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = adaLN_modulation(c).chunk(6)       (no SiLU before it)
    x = x + gate_a * Attn(RMSNorm_in(x) * (1 + scale_a) + shift_a)                          (bidirectional)
    x = x + gate_m * MLP(RMSNorm_post(x) * (1 + scale_m) + shift_m)
with Gemma's RMSNorm(x) = x / rms(x) * (1 + w), embeddings scaled by sqrt(hidden), GeGLU (tanh GELU) MLP, RoPE,
and c = MLP(sinusoid(sigma)) with sinusoid = [cos, sin](sigma * 10000^(-k / 128)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

TINY_GEMMA = dict(
    model_type="gemma",
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    max_position_embeddings=512,
    hidden_act="gelu",  # legacy key the official MLP ignores: it reads hidden_activation (None -> tanh GELU)
    hidden_activation=None,
    vocab_size=1000,  # the base LM's size before the official resize; weights decide
)


def random_official_state(config: dict, vocab_size: int, *, tied: bool = True, seed: int = 0) -> dict:
    """Random tensors under the official key names (GemmaForCausalLM + adaLN_modulation + time_embedder)."""
    g = torch.Generator().manual_seed(seed)
    d, inner = config["hidden_size"], config["intermediate_size"]
    q = config["num_attention_heads"] * config["head_dim"]
    kv = config["num_key_value_heads"] * config["head_dim"]

    def rnd(*shape, scale=None):
        scale = scale if scale is not None else shape[-1] ** -0.5
        return torch.randn(*shape, generator=g) * scale

    state = {
        "model.embed_tokens.weight": rnd(vocab_size, d, scale=0.1),
        "model.norm.weight": rnd(d, scale=0.3),
        "model.time_embedder.mlp.0.weight": rnd(d, 256),
        "model.time_embedder.mlp.0.bias": rnd(d, scale=0.1),
        "model.time_embedder.mlp.2.weight": rnd(d, d),
        "model.time_embedder.mlp.2.bias": rnd(d, scale=0.1),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        state.update(
            {
                p + "self_attn.q_proj.weight": rnd(q, d),
                p + "self_attn.k_proj.weight": rnd(kv, d),
                p + "self_attn.v_proj.weight": rnd(kv, d),
                p + "self_attn.o_proj.weight": rnd(d, q),
                p + "mlp.gate_proj.weight": rnd(inner, d),
                p + "mlp.up_proj.weight": rnd(inner, d),
                p + "mlp.down_proj.weight": rnd(d, inner),
                p + "input_layernorm.weight": rnd(d, scale=0.3),
                p + "post_attention_layernorm.weight": rnd(d, scale=0.3),
                # non-zero so the timestep path matters (the released weights are trained, not zero-initialised)
                p + "adaLN_modulation.weight": rnd(6 * d, d, scale=0.3 * d**-0.5),
                p + "adaLN_modulation.bias": rnd(6 * d, scale=0.3)
                + torch.tensor([0.0, 0.0, 1.0] * 2).repeat_interleave(d),
            }
        )
    if not tied:
        state["lm_head.weight"] = rnd(vocab_size, d, scale=0.1)
    return state


def _rms_norm(x, weight, eps):
    x32 = x.float()
    return x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + weight.float())


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def official_forward(state: dict, config: dict, input_ids, sigma, attention_mask) -> torch.Tensor:
    """Full-sequence logits [B, L, V] of the official GemmaForCausalLM (before its slicing).

    input_ids [B, L] official ids; sigma [B] the log-linear total noise; attention_mask [B, L] (0 = key dropped).
    """
    d, hd = config["hidden_size"], config["head_dim"]
    heads, kv_heads, eps = (
        config["num_attention_heads"],
        config["num_key_value_heads"],
        config["rms_norm_eps"],
    )
    batch, length = input_ids.shape
    x = state["model.embed_tokens.weight"][input_ids] * torch.tensor(d**0.5)

    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = sigma.float()[:, None] * freqs[None]
    features = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    c = F.linear(features, state["model.time_embedder.mlp.0.weight"], state["model.time_embedder.mlp.0.bias"])
    c = F.linear(
        F.silu(c), state["model.time_embedder.mlp.2.weight"], state["model.time_embedder.mlp.2.bias"]
    )

    inv_freq = 1.0 / (config["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    angles = torch.arange(length, dtype=torch.float32)[:, None] * inv_freq[None]
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    bias = torch.zeros(batch, 1, 1, length).masked_fill(
        attention_mask[:, None, None, :] == 0, torch.finfo(torch.float32).min
    )

    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        mod = F.linear(c, state[p + "adaLN_modulation.weight"], state[p + "adaLN_modulation.bias"])
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = (m[:, None] for m in mod.chunk(6, dim=1))

        h = _rms_norm(x, state[p + "input_layernorm.weight"], eps) * (1 + scale_a) + shift_a
        q = F.linear(h, state[p + "self_attn.q_proj.weight"]).view(batch, length, heads, hd).transpose(1, 2)
        k = (
            F.linear(h, state[p + "self_attn.k_proj.weight"])
            .view(batch, length, kv_heads, hd)
            .transpose(1, 2)
        )
        v = (
            F.linear(h, state[p + "self_attn.v_proj.weight"])
            .view(batch, length, kv_heads, hd)
            .transpose(1, 2)
        )
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        k, v = k.repeat_interleave(heads // kv_heads, 1), v.repeat_interleave(heads // kv_heads, 1)
        weights = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(hd) + bias, dim=-1)
        attn = (weights @ v).transpose(1, 2).reshape(batch, length, heads * hd)
        x = x + gate_a * F.linear(attn, state[p + "self_attn.o_proj.weight"])

        h = _rms_norm(x, state[p + "post_attention_layernorm.weight"], eps) * (1 + scale_m) + shift_m
        gate = F.gelu(F.linear(h, state[p + "mlp.gate_proj.weight"]), approximate="tanh")
        mlp = F.linear(gate * F.linear(h, state[p + "mlp.up_proj.weight"]), state[p + "mlp.down_proj.weight"])
        x = x + gate_m * mlp

    x = _rms_norm(x, state["model.norm.weight"], eps)
    return F.linear(x, state.get("lm_head.weight", state["model.embed_tokens.weight"]))


def official_logits(
    state, config, input_ids, sigma, attention_mask, *, image_tokens: int, report_tokens: int
):
    """The official forward's outputs: (image logits [B, N, V], report logits [B, T, V]) cut where its
    GemmaForCausalLM cuts them (image from position 2, report from L - T - 2)."""
    logits = official_forward(state, config, input_ids, sigma, attention_mask)
    length = input_ids.shape[1]
    return logits[:, 2 : 2 + image_tokens], logits[:, length - report_tokens - 2 : length - 2]


def official_sigma(t) -> torch.Tensor:
    """The official log-linear total noise at its time t (masked fraction (1 - 1e-3) t)."""
    return -torch.log1p(-(1 - 1e-3) * t)
