"""Convert the official MeDiM release (Gemma backbone with AdaLN, Llama-2 text ids, Chameleon VQ-GAN) to a MeDiM
checkpoint directory that `MeDiMPipeline.from_pretrained` loads.

The official model and ours compute the same function once the following are mapped (each is checked, and a
mismatch is a `OfficialCheckpointError` naming the first offending tensor, size or id):

Backbone (`GemmaForCausalLM` with `num_hidden_layers` decoder layers, each with `adaLN_modulation`)::

    model.embed_tokens / lm_head           -> backbone.model.embed_tokens / backbone.lm_head (rows re-ordered)
    model.layers.{i}.<attention, mlp, norms> -> backbone.model.layers.{i}.<same names>
    model.layers.{i}.adaLN_modulation      -> adaln.{i}.linear   (chunks shift/scale/gate x attention/MLP, same order)
    model.time_embedder.mlp.{0,2}          -> timestep_embedder.mlp.{0,2}
    model.norm                             -> backbone.model.norm

The official layers multiply each branch by the gate itself (DiT), feed the timestep embedding to the AdaLN
linear without SiLU, and embed sigma = -log(1 - p) (p = masked fraction) rather than 1000 t: the written config
says so (`adaln_gate="dit"`, `adaln_input_activation="none"`, `timestep_input="loglinear_sigma"`).

Vocabulary (official ids -> ours)::

    [0, T)            Llama-2 ids + <boi>, <eoi>, <eos>   -> the same text ids [0, T)
    T                 [MASK]                              -> mask_id
    T + 1 + c         image code c                        -> image_offset + c   (image_offset = T)
    <boi>, <eoi>      (ids T-3, T-2)                      -> also copied to our boi_id / eoi_id rows
    pad (<unk>, 0)    the tokenizer's pad id              -> also copied to our pad_id row; the text id itself is
                                                             never predicted (`suppressed_text_ids`)

Sequence (official order, reproduced token for token)::

    <boi> image(1024) <eoi> <s> "Image Size: Width is tensor([W]) Height is tensor([H])." <s> report(255) <eos>

The official forward reads the logits of image token k from position k + 1 and of report token j from position
j - 1 (its slices start at 2 and at L - 258): `logits_offsets=(1, -1)`. Its attention mask drops keys that hold
the pad id (`attend_to_pad=False`).

The VQ-GAN is taming-transformers' architecture; diffusers' `VQModel` has the same blocks (asymmetric (0, 1, 0, 1)
padding before each stride-2 convolution, nearest-neighbour upsampling, single-head attention at the listed
resolutions and in the middle block, GroupNorm(32, eps 1e-6)), so it is mapped onto one exactly.

Pickled `.ckpt`/`.bin` files are read with `torch.load(weights_only=True)` only; everything written is
safetensors or JSON.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medim.config import MeDiMConfig, SamplerConfig
from medim.vocab import VocabLayout

# ---------------------------------------------------------------------------------------------------------
# Facts about the official release (from its training and inference code)
# ---------------------------------------------------------------------------------------------------------

OFFICIAL_SPECIAL_TOKENS = ("<boi>", "<eoi>", "<eos>")  # added to the Llama-2 tokenizer in this order
OFFICIAL_REPORT_TOKENS = 256  # report slots, the first holding <s>
OFFICIAL_PAD_TOKEN = "<unk>"  # what the official code pads reports with (it strips '<unk>' when decoding)
# The conditioning sentence is formatted from a collated (width, height) pair, hence the tensor repr.
SIZE_SENTENCE = "Image Size: Width is tensor([{width}]) Height is tensor([{height}])."
CHEST_REPORT_PREFIX = "The image is a radiograph of the chest, showing the thoracic cavity structures. "
PAD_FILL_RGB = (122, 116, 104)  # the official square-padding colour
# Features the converted checkpoint needs from MeDiMConfig (older MeDiM versions would ignore them silently).
REQUIRED_CONFIG_FIELDS = (
    "timestep_input",
    "adaln_input_activation",
    "logits_offsets",
    "text_prefix_ids",
    "text_suffix_ids",
    "attend_to_pad",
    "suppressed_text_ids",
)
_STRIPPED_PREFIXES = ("module.", "_orig_mod.", "backbone.")
_IGNORED_BACKBONE_KEYS = re.compile(r".*rotary_emb\.inv_freq$")


class OfficialCheckpointError(ValueError):
    """The official files do not match the published MeDiM layout; the message names the first mismatch."""


# ---------------------------------------------------------------------------------------------------------
# Reading weights
# ---------------------------------------------------------------------------------------------------------


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle with arbitrary objects, truncated file, ...
        raise OfficialCheckpointError(
            f"could not read {path} with torch.load(weights_only=True) ({type(error).__name__}: {error}); "
            "only tensors and plain containers are accepted (re-save just the state dict, e.g. as safetensors, "
            "where you trust the file)"
        ) from error
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):  # Lightning / taming checkpoints
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise OfficialCheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors from a weights file or a directory of shards (safetensors preferred, then .bin/.pt/.ckpt).

    A `*.index.json` in the directory selects the shards. Wrapper prefixes (`module.`, `_orig_mod.`,
    `backbone.`) are removed from the keys.
    """
    path = Path(path)
    if path.is_dir():
        indexes = sorted(path.glob("*.safetensors.index.json")) or sorted(path.glob("*.bin.index.json"))
        if indexes:
            shards = sorted(set(json.loads(indexes[0].read_text())["weight_map"].values()))
            files = [path / name for name in shards]
        else:
            files = sorted(path.glob("*.safetensors")) or sorted(
                p for pattern in ("*.bin", "*.pt", "*.pth", "*.ckpt") for p in path.glob(pattern)
            )
        if not files:
            raise OfficialCheckpointError(
                f"no weights in {path}: looked for *.safetensors, *.bin, *.pt, *.pth, *.ckpt (or an index.json)"
            )
    elif path.is_file():
        files = [path]
    else:
        raise OfficialCheckpointError(f"weights not found: {path}")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        if not file.is_file():
            raise OfficialCheckpointError(f"shard {file} named by the index is missing")
        state.update(_read_weight_file(file))
    stripped = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _STRIPPED_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        stripped[key] = value
    return stripped


# ---------------------------------------------------------------------------------------------------------
# Vocabulary and sequence template
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfficialVocab:
    """The official id space: text ids [0, T), [MASK] = T, image codes from T + 1."""

    text_vocab_size: int
    codebook_size: int
    bos_id: int
    pad_id: int
    boi_id: int
    eoi_id: int
    eos_id: int

    @property
    def mask_id(self) -> int:
        return self.text_vocab_size

    @property
    def image_offset(self) -> int:
        return self.text_vocab_size + 1

    @property
    def vocab_size(self) -> int:
        return self.image_offset + self.codebook_size


def prepare_text_tokenizer(tokenizer_dir: str | Path, pad_token: str | None = None):
    """Load the Llama-2 tokenizer and add <boi>, <eoi>, <eos> exactly as the official code does.

    Returns (tokenizer, ids) where ids maps "bos", "pad", "<boi>", "<eoi>", "<eos>" to token ids. The three
    added tokens must be the last three ids (they are already there when the directory was saved after adding).
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    except Exception as error:
        raise OfficialCheckpointError(f"could not load a tokenizer from {tokenizer_dir}: {error}") from error
    if not getattr(tokenizer, "is_fast", False):
        raise OfficialCheckpointError(f"{tokenizer_dir} must hold a fast tokenizer (tokenizer.json)")
    vocab = tokenizer.get_vocab()
    missing = [token for token in OFFICIAL_SPECIAL_TOKENS if token not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": list(OFFICIAL_SPECIAL_TOKENS)})
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in OFFICIAL_SPECIAL_TOKENS}
    expected = {token: len(tokenizer) - 3 + i for i, token in enumerate(OFFICIAL_SPECIAL_TOKENS)}
    if ids != expected:
        raise OfficialCheckpointError(
            f"the official special tokens must be the last three ids {expected}, got {ids}: "
            "the tokenizer is not the Llama-2 tokenizer the release was trained with"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = pad_token or OFFICIAL_PAD_TOKEN
    elif pad_token is not None and tokenizer.pad_token != pad_token:
        tokenizer.pad_token = pad_token
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id >= len(tokenizer):
        raise OfficialCheckpointError(
            f"pad token {tokenizer.pad_token!r} is not in the tokenizer's vocabulary"
        )
    if tokenizer.bos_token_id is None:
        raise OfficialCheckpointError(f"tokenizer in {tokenizer_dir} has no BOS token (Llama-2's is <s>)")
    ids.update(bos=tokenizer.bos_token_id, pad=tokenizer.pad_token_id)
    return tokenizer, ids


def size_prefix_ids(tokenizer, bos_id: int, width: int, height: int) -> tuple[int, ...]:
    """Fixed tokens between <eoi> and the report: the BOS-led image-size sentence, then the report's own BOS."""
    sentence = tokenizer(SIZE_SENTENCE.format(width=width, height=height))["input_ids"]
    if not sentence or sentence[0] != bos_id:
        sentence = [bos_id, *sentence]
    return (*sentence, bos_id)


def vocab_source_rows(official: OfficialVocab, layout: VocabLayout) -> torch.Tensor:
    """LongTensor [V_ours]: the official row each of our vocabulary rows is copied from."""
    if layout.text_vocab_size != official.text_vocab_size or layout.codebook_size != official.codebook_size:
        raise OfficialCheckpointError(
            f"layout text/codebook sizes ({layout.text_vocab_size}, {layout.codebook_size}) differ from the "
            f"official ({official.text_vocab_size}, {official.codebook_size})"
        )
    rows = torch.empty(layout.vocab_size, dtype=torch.long)
    rows[: layout.text_vocab_size] = torch.arange(official.text_vocab_size)
    image = slice(layout.image_offset, layout.image_offset + layout.codebook_size)
    rows[image] = official.image_offset + torch.arange(official.codebook_size)
    rows[layout.boi_id] = official.boi_id
    rows[layout.eoi_id] = official.eoi_id
    rows[layout.pad_id] = official.pad_id
    rows[layout.mask_id] = official.mask_id
    return rows


# ---------------------------------------------------------------------------------------------------------
# Backbone
# ---------------------------------------------------------------------------------------------------------


def backbone_config_from_official(hf_config: dict[str, Any], *, num_hidden_layers: int | None = None) -> dict:
    """Our `MeDiMConfig.backbone` dict from the official (Liquid/Gemma) config.json."""
    if hf_config.get("model_type", "gemma") != "gemma":
        raise OfficialCheckpointError(
            f"config.json model_type is {hf_config.get('model_type')!r}, expected 'gemma'"
        )
    # the official GemmaMLP uses hidden_activation, falling back to the tanh GELU when it is unset
    activation = hf_config.get("hidden_activation") or "gelu_pytorch_tanh"
    if activation == "gelu":
        raise OfficialCheckpointError(
            "config.json asks for exact GELU (hidden_activation='gelu'); transformers' Gemma replaces it with the "
            "tanh approximation, so the conversion would not be exact"
        )
    heads = int(hf_config.get("num_attention_heads", 16))
    rope_theta = hf_config.get("rope_theta") or (hf_config.get("rope_parameters") or {}).get(
        "rope_theta", 10000.0
    )
    return dict(
        model_type="gemma",
        hidden_size=int(hf_config["hidden_size"]),
        intermediate_size=int(hf_config["intermediate_size"]),
        num_hidden_layers=int(num_hidden_layers or hf_config["num_hidden_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=int(hf_config.get("num_key_value_heads") or heads),
        head_dim=int(hf_config.get("head_dim", 256)),
        rms_norm_eps=float(hf_config.get("rms_norm_eps", 1e-6)),
        rope_parameters={"rope_type": "default", "rope_theta": float(rope_theta)},
        max_position_embeddings=int(hf_config.get("max_position_embeddings", 8192)),
        attention_bias=bool(hf_config.get("attention_bias", False)),
        hidden_act=activation,
    )


def expected_official_shapes(
    backbone: dict, vocab_size: int, frequency_dim: int
) -> dict[str, tuple[int, ...]]:
    """Official key -> shape for a backbone config (lm_head.weight is optional: absent when tied)."""
    d, inner = backbone["hidden_size"], backbone["intermediate_size"]
    q, kv = (
        backbone["num_attention_heads"] * backbone["head_dim"],
        backbone["num_key_value_heads"] * backbone["head_dim"],
    )
    shapes = {
        "model.embed_tokens.weight": (vocab_size, d),
        "model.norm.weight": (d,),
        "model.time_embedder.mlp.0.weight": (d, frequency_dim),
        "model.time_embedder.mlp.0.bias": (d,),
        "model.time_embedder.mlp.2.weight": (d, d),
        "model.time_embedder.mlp.2.bias": (d,),
    }
    for i in range(backbone["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update(
            {
                p + "self_attn.q_proj.weight": (q, d),
                p + "self_attn.k_proj.weight": (kv, d),
                p + "self_attn.v_proj.weight": (kv, d),
                p + "self_attn.o_proj.weight": (d, q),
                p + "mlp.gate_proj.weight": (inner, d),
                p + "mlp.up_proj.weight": (inner, d),
                p + "mlp.down_proj.weight": (d, inner),
                p + "input_layernorm.weight": (d,),
                p + "post_attention_layernorm.weight": (d,),
                p + "adaLN_modulation.weight": (6 * d, d),
                p + "adaLN_modulation.bias": (6 * d,),
            }
        )
        if backbone["attention_bias"]:
            shapes.update({p + "self_attn.q_proj.bias": (q,), p + "self_attn.k_proj.bias": (kv,)})
            shapes.update({p + "self_attn.v_proj.bias": (kv,), p + "self_attn.o_proj.bias": (d,)})
    return shapes


def _natural_key(key: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def check_official_backbone(state: dict[str, torch.Tensor], backbone: dict, official: OfficialVocab) -> None:
    """Raise OfficialCheckpointError at the first difference between the weights and the published layout."""
    embed = state.get("model.embed_tokens.weight")
    if embed is None:
        raise OfficialCheckpointError(
            f"model.embed_tokens.weight is missing; the weights start with keys {sorted(state, key=_natural_key)[:3]}"
        )
    if embed.shape[0] != official.vocab_size:
        raise OfficialCheckpointError(
            f"model.embed_tokens.weight has {embed.shape[0]} rows but the official layout needs "
            f"{official.vocab_size} = {official.text_vocab_size} text ids (Llama-2 + <boi>/<eoi>/<eos>) + 1 [MASK] + "
            f"{official.codebook_size} image codes; is this the MeDiM checkpoint rather than the base LM?"
        )
    layers = {int(m.group(1)) for k in state if (m := re.match(r"model\.layers\.(\d+)\.", k))}
    if len(layers) != backbone["num_hidden_layers"]:
        raise OfficialCheckpointError(
            f"config.json says num_hidden_layers={backbone['num_hidden_layers']} but the weights hold "
            f"{len(layers)} decoder layers; pass --num-hidden-layers {len(layers)} (the release keeps 10 of "
            "Liquid's 28 layers)"
        )
    frequency_dim = state.get("model.time_embedder.mlp.0.weight", torch.empty(0, 256)).shape[-1]
    shapes = expected_official_shapes(backbone, official.vocab_size, frequency_dim)
    for key in sorted(shapes, key=_natural_key):
        if key not in state:
            raise OfficialCheckpointError(f"{key} is missing from the official weights")
        if tuple(state[key].shape) != shapes[key]:
            raise OfficialCheckpointError(
                f"{key} has shape {list(state[key].shape)} but the config (hidden_size={backbone['hidden_size']}, "
                f"intermediate_size={backbone['intermediate_size']}, heads={backbone['num_attention_heads']}, "
                f"head_dim={backbone['head_dim']}) implies {list(shapes[key])}"
            )
    allowed = set(shapes) | {"lm_head.weight"}
    extra = sorted(
        (k for k in state if k not in allowed and not _IGNORED_BACKBONE_KEYS.match(k)), key=_natural_key
    )
    if extra:
        raise OfficialCheckpointError(
            f"unexpected tensor {extra[0]} (and {len(extra) - 1} more) in the official weights"
        )
    if "lm_head.weight" in state and tuple(state["lm_head.weight"].shape) != tuple(embed.shape):
        raise OfficialCheckpointError(
            f"lm_head.weight has shape {list(state['lm_head.weight'].shape)}, expected {list(embed.shape)}"
        )


def convert_backbone_state(
    state: dict[str, torch.Tensor], rows: torch.Tensor, *, tied: bool
) -> dict[str, torch.Tensor]:
    """Official backbone tensors -> our MeDiMModel state dict (vocabulary rows re-ordered by `rows`)."""
    out = {}
    for key, value in state.items():
        if _IGNORED_BACKBONE_KEYS.match(key) or key in ("model.embed_tokens.weight", "lm_head.weight"):
            continue
        if m := re.match(r"model\.layers\.(\d+)\.adaLN_modulation\.(weight|bias)$", key):
            out[f"adaln.{m.group(1)}.linear.{m.group(2)}"] = value
        elif key.startswith("model.time_embedder."):
            out["timestep_embedder." + key[len("model.time_embedder.") :]] = value
        else:
            out["backbone." + key] = value
    head = state.get("lm_head.weight", state["model.embed_tokens.weight"])
    out["backbone.lm_head.weight"] = head[rows].contiguous()
    if not tied:  # tied weights are stored once, under lm_head, as safetensors.save_model does
        out["backbone.model.embed_tokens.weight"] = state["model.embed_tokens.weight"][rows].contiguous()
    return out


# ---------------------------------------------------------------------------------------------------------
# VQ-GAN (taming-transformers / Chameleon) -> diffusers.VQModel
# ---------------------------------------------------------------------------------------------------------


def read_vqgan_yaml(path: str | Path) -> dict[str, Any]:
    """`model.params` of a taming VQ-GAN yaml (embed_dim, n_embed, ddconfig) with the defaults filled in."""
    import yaml

    try:
        params = yaml.safe_load(Path(path).read_text())["model"]["params"]
        ddconfig = dict(params["ddconfig"])
        result = {
            "embed_dim": int(params["embed_dim"]),
            "n_embed": int(params["n_embed"]),
            "ddconfig": ddconfig,
        }
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as error:
        raise OfficialCheckpointError(
            f"{path} is not a taming VQ-GAN config (model.params.ddconfig): {error}"
        ) from error
    unsupported = {
        "double_z": (ddconfig.get("double_z", True), False),
        "attn_type": (ddconfig.get("attn_type", "vanilla"), "vanilla"),
        "resamp_with_conv": (ddconfig.get("resamp_with_conv", True), True),
        "give_pre_end": (ddconfig.get("give_pre_end", False), False),
        "tanh_out": (ddconfig.get("tanh_out", False), False),
        "use_linear_attn": (ddconfig.get("use_linear_attn", False), False),
        "remap": (params.get("remap"), None),
    }
    for name, (value, needed) in unsupported.items():
        if value != needed:
            raise OfficialCheckpointError(f"{path}: {name}={value!r} is not supported (expected {needed!r})")
    if ddconfig.get("in_channels") != 3 or ddconfig.get("out_ch") != 3:
        raise OfficialCheckpointError(
            f"{path}: expected 3 input/output channels, got {ddconfig.get('in_channels')}"
        )
    return result


def vq_config_from_taming(vqgan: dict[str, Any]):
    """The diffusers VQModel architecture equal to a taming VQ-GAN config."""
    from medim.tokenizers.image import VQConfig

    dd = vqgan["ddconfig"]
    levels = len(dd["ch_mult"])
    attn = set(dd.get("attn_resolutions", []))
    resolution = int(dd["resolution"])

    def has_attention(level: int) -> bool:
        return resolution // 2**level in attn

    return VQConfig(
        image_size=resolution,
        block_out_channels=tuple(dd["ch"] * m for m in dd["ch_mult"]),
        layers_per_block=int(dd["num_res_blocks"]),
        latent_channels=int(dd["z_channels"]),
        vq_embed_dim=vqgan["embed_dim"],
        num_vq_embeddings=vqgan["n_embed"],
        norm_num_groups=32,  # taming's Normalize()
        mid_block_add_attention=True,
        down_block_types=tuple(
            "AttnDownEncoderBlock2D" if has_attention(i) else "DownEncoderBlock2D" for i in range(levels)
        ),
        # diffusers' up_blocks[j] is taming's decoder.up[levels - 1 - j]
        up_block_types=tuple(
            "AttnUpDecoderBlock2D" if has_attention(levels - 1 - j) else "UpDecoderBlock2D"
            for j in range(levels)
        ),
    )


_RESNET_PARTS = {
    "norm1": "norm1",
    "conv1": "conv1",
    "norm2": "norm2",
    "conv2": "conv2",
    "nin_shortcut": "conv_shortcut",
}
_ATTN_PARTS = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def _taming_key_to_diffusers(key: str, levels: int) -> str | None:
    """Rename one taming VQ-GAN key; None for training-only tensors (the `loss.` discriminator/LPIPS)."""
    if key.startswith("loss."):
        return None
    for part, new in (("norm_out", "conv_norm_out"),):
        key = re.sub(rf"^(encoder|decoder)\.{part}\.", rf"\1.{new}.", key)
    key = re.sub(
        r"^(encoder|decoder)\.mid\.block_([12])\.",
        lambda m: f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}.",
        key,
    )
    key = re.sub(r"^(encoder|decoder)\.mid\.attn_1\.", r"\1.mid_block.attentions.0.", key)
    key = re.sub(r"^encoder\.down\.(\d+)\.block\.", r"encoder.down_blocks.\1.resnets.", key)
    key = re.sub(r"^encoder\.down\.(\d+)\.attn\.", r"encoder.down_blocks.\1.attentions.", key)
    key = re.sub(r"^encoder\.down\.(\d+)\.downsample\.", r"encoder.down_blocks.\1.downsamplers.0.", key)
    up = re.match(r"^decoder\.up\.(\d+)\.(block|attn|upsample)\.(.*)$", key)
    if up:
        block = levels - 1 - int(up[1])
        kind = {"block": "resnets.", "attn": "attentions.", "upsample": "upsamplers.0."}[up[2]]
        key = f"decoder.up_blocks.{block}.{kind}{up[3]}"
    key = re.sub(
        r"\.resnets\.(\d+)\.(norm1|conv1|norm2|conv2|nin_shortcut)\.",
        lambda m: f".resnets.{m[1]}.{_RESNET_PARTS[m[2]]}.",
        key,
    )
    key = re.sub(
        r"\.attentions\.(\d+)\.(norm|q|k|v|proj_out)\.",
        lambda m: f".attentions.{m[1]}.{_ATTN_PARTS[m[2]]}.",
        key,
    )
    return key


def convert_vqgan(state: dict[str, torch.Tensor], vqgan: dict[str, Any]):
    """A `VQImageTokenizer` holding the taming VQ-GAN weights (exact: same blocks, 1x1 attention convs as linears)."""
    from medim.tokenizers.image import VQImageTokenizer

    vq_config = vq_config_from_taming(vqgan)
    model = vq_config.build_vq_model()
    expected = model.state_dict()
    levels = len(vqgan["ddconfig"]["ch_mult"])
    converted = {}
    for key in sorted(state, key=_natural_key):
        new = _taming_key_to_diffusers(key, levels)
        if new is None:
            continue
        if new not in expected:
            raise OfficialCheckpointError(
                f"unexpected VQ-GAN tensor {key} (no {new} in the mapped architecture)"
            )
        value = state[key]
        if ".attentions." in new and new.endswith(".weight") and value.ndim == 4:
            value = value[:, :, 0, 0]  # 1x1 convolution == linear
        if tuple(value.shape) != tuple(expected[new].shape):
            raise OfficialCheckpointError(
                f"VQ-GAN tensor {key} has shape {list(value.shape)} but vqgan.yaml implies {list(expected[new].shape)}"
            )
        converted[new] = value.to(expected[new].dtype)
    missing = sorted(set(expected) - set(converted), key=_natural_key)
    if missing:
        raise OfficialCheckpointError(
            f"VQ-GAN weights lack {missing[0]} (and {len(missing) - 1} more) for vqgan.yaml"
        )
    model.load_state_dict(converted, strict=True)
    return VQImageTokenizer(model, vq_config.image_size).eval()


# ---------------------------------------------------------------------------------------------------------
# Sampler preset and cost estimate
# ---------------------------------------------------------------------------------------------------------


def official_sampler_config() -> SamplerConfig:
    """The official inference settings: 128 MaskGIT steps, arccos schedule, plain categorical sampling, Gumbel
    confidence noise 10 x t, guidance 5 ramped linearly from 0 as t goes from 1 to 0."""
    return SamplerConfig(
        steps=128,
        schedule="arccos",
        temperature=1.0,
        confidence_noise=10.0,
        top_k=None,
        top_p=None,
        guidance_scale=5.0,
        guidance_schedule="linear",
    )


def _significant(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}")


def estimate_cost(
    config: MeDiMConfig, *, parameters: int, guidance: bool = True, steps: int = 128
) -> dict[str, Any]:
    """Memory and time estimates for one sample of `steps` MaskGIT steps (see `assumptions` in the result)."""
    layout = VocabLayout.from_config(config)
    b = config.backbone
    tokens, batch = layout.seq_len, 2 if guidance else 1
    d, q = b["hidden_size"], b["num_attention_heads"] * b["head_dim"]
    kv = b["num_key_value_heads"] * b["head_dim"]
    # weights applied to every token: attention projections, GeGLU MLP, the output head (AdaLN and the
    # timestep MLP run once per sequence and are negligible)
    per_token = b["num_hidden_layers"] * (2 * d * q + 2 * d * kv + 3 * d * b["intermediate_size"])
    per_token += layout.vocab_size * d
    attention = 4 * b["num_hidden_layers"] * tokens**2 * q
    flops = batch * (2 * per_token * tokens + attention)
    logits_bytes = batch * tokens * layout.vocab_size * 4
    weights_fp32 = parameters * 4
    gpu_bytes = weights_fp32 + parameters * 2 + 4 * logits_bytes
    effective_tflops = 400 * 0.4
    return {
        "parameters": parameters,
        "sequence_length": tokens,
        "step_tflop": _significant(flops / 1e12),
        "estimated_step_seconds_h100_bf16": _significant(flops / (effective_tflops * 1e12)),
        "estimated_sample_seconds_h100_bf16": _significant(steps * flops / (effective_tflops * 1e12)),
        "estimated_gpu_memory_gib": _significant(gpu_bytes / 2**30),
        "estimated_cpu_memory_gib_to_load": _significant(2 * weights_fp32 / 2**30),
        "assumptions": (
            f"batch {batch} per sample ({'conditional + unconditional for guidance' if guidance else 'no guidance'}); "
            "FLOPs = 2 x per-token weights (attention, MLP, head) x tokens + 4 x layers x tokens^2 x attention "
            "width; H100 bf16 dense ~400 TFLOP/s at 40% utilisation; the pipeline keeps fp32 weights and runs bf16 autocast (fp32 weights "
            "+ bf16 copies + 4 fp32 logits-sized buffers)"
        ),
    }


# ---------------------------------------------------------------------------------------------------------
# The conversion
# ---------------------------------------------------------------------------------------------------------


def _check_core_support() -> None:
    names = {f.name for f in dataclasses.fields(MeDiMConfig)}
    missing = [name for name in REQUIRED_CONFIG_FIELDS if name not in names]
    if missing:
        raise OfficialCheckpointError(
            f"this MeDiM version cannot reproduce the official model: MeDiMConfig lacks {missing}"
        )


def _unique_parameter_count(config: MeDiMConfig) -> tuple[int, dict[str, tuple[int, ...]]]:
    """Parameters (tied ones once) and our state-dict shapes, from a model built on the meta device."""
    from medim.modeling import MeDiMModel

    with torch.device("meta"):
        model = MeDiMModel(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return sum(p.numel() for p in model.parameters()), shapes


def convert(
    backbone_dir: str | Path,
    vqgan_ckpt: str | Path,
    vqgan_config: str | Path,
    tokenizer_dir: str | Path,
    out: str | Path,
    *,
    num_hidden_layers: int | None = None,
    image_size_text: tuple[int, int] = (512, 512),
    report_tokens: int = OFFICIAL_REPORT_TOKENS,
    pad_token: str | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Convert the official release into a MeDiM checkpoint directory; returns its path.

    Args:
        backbone_dir: directory with config.json and the backbone weights (safetensors or .bin shards).
        vqgan_ckpt / vqgan_config: Chameleon's vqgan.ckpt and vqgan.yaml.
        tokenizer_dir: the Llama-2 tokenizer (with or without the added <boi>/<eoi>/<eos>).
        image_size_text: (width, height) written in the conditioning sentence (the original image size in
            training; 512 x 512 describes a square image).
        report_tokens: the official report slots (256, the first one holding <s>).
        dtype: cast floating weights (default: keep the stored dtype).
    """
    from safetensors.torch import save_file

    _check_core_support()
    backbone_dir, out = Path(backbone_dir), Path(out)
    config_path = backbone_dir / "config.json"
    if not config_path.is_file():
        raise OfficialCheckpointError(
            f"{config_path} is missing (the backbone directory needs its config.json)"
        )
    hf_config = json.loads(config_path.read_text())
    backbone = backbone_config_from_official(hf_config, num_hidden_layers=num_hidden_layers)

    vqgan = read_vqgan_yaml(vqgan_config)
    image_tokenizer = convert_vqgan(load_weights(vqgan_ckpt), vqgan)
    tokenizer, ids = prepare_text_tokenizer(tokenizer_dir, pad_token)
    official = OfficialVocab(
        text_vocab_size=len(tokenizer),
        codebook_size=vqgan["n_embed"],
        bos_id=ids["bos"],
        pad_id=ids["pad"],
        boi_id=ids["<boi>"],
        eoi_id=ids["<eoi>"],
        eos_id=ids["<eos>"],
    )

    state = load_weights(backbone_dir)
    check_official_backbone(state, backbone, official)
    tied = "lm_head.weight" not in state or torch.equal(
        state["lm_head.weight"], state["model.embed_tokens.weight"]
    )
    backbone["tie_word_embeddings"] = tied
    grid = image_tokenizer.grid_size
    config = MeDiMConfig(
        backbone=backbone,
        text_vocab_size=official.text_vocab_size,
        codebook_size=official.codebook_size,
        image_grid=grid,
        max_text_tokens=report_tokens - 1,
        causal_attention=False,
        timestep_conditioning="adaln",
        adaln_gate="dit",
        timestep_frequency_dim=int(state["model.time_embedder.mlp.0.weight"].shape[1]),
        attn_implementation="sdpa",
        image_size=image_tokenizer.image_size,
        timestep_input="loglinear_sigma",
        adaln_input_activation="none",
        logits_offsets=(1, -1),
        text_prefix_ids=size_prefix_ids(tokenizer, official.bos_id, *image_size_text),
        text_suffix_ids=(official.eos_id,),
        attend_to_pad=False,
        suppressed_text_ids=(official.pad_id,),
    )
    layout = VocabLayout.from_config(config)
    ours = convert_backbone_state(state, vocab_source_rows(official, layout), tied=tied)
    del state
    parameters, shapes = _unique_parameter_count(config)
    for key in sorted(shapes, key=_natural_key):
        if key not in ours and not (tied and key == "backbone.model.embed_tokens.weight"):
            raise OfficialCheckpointError(f"converted weights lack {key}")
        if key in ours and tuple(ours[key].shape) != shapes[key]:
            raise OfficialCheckpointError(
                f"converted {key} has shape {list(ours[key].shape)}, expected {list(shapes[key])}"
            )
    if dtype is not None:
        ours = {k: v.to(dtype) if v.is_floating_point() else v for k, v in ours.items()}

    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "medim_config.json")
    save_file(
        {k: v.contiguous() for k, v in ours.items()},
        str(out / "model.safetensors"),
        metadata={"format": "pt"},
    )
    official_sampler_config().save(out / "sampler_config.json")
    tokenizer.save_pretrained(out / "text_tokenizer")
    image_tokenizer.save_pretrained(out / "image_tokenizer")
    info = {
        "kind": "converted-official",
        "description": "The official MeDiM release (Liquid/Gemma backbone, Chameleon VQ-GAN) converted to MeDiM's format",
        "requires_gpu": True,
        "noise_schedule": "loglinear",
        "source": {
            "backbone": str(backbone_dir),
            "vqgan_ckpt": str(vqgan_ckpt),
            "tokenizer": str(tokenizer_dir),
        },
        "official_vocabulary": {
            "text_vocab_size": official.text_vocab_size,
            "mask_id": official.mask_id,
            "image_offset": official.image_offset,
            "special_ids": {
                "bos": official.bos_id,
                "pad": official.pad_id,
                "<boi>": official.boi_id,
                "<eoi>": official.eoi_id,
                "<eos>": official.eos_id,
            },
        },
        "vocabulary_mapping": {
            "text": f"official [0, {official.text_vocab_size}) -> ours [0, {layout.text_vocab_size})",
            "image": f"official {official.image_offset} + c -> ours {layout.image_offset} + c",
            "boi": [official.boi_id, layout.boi_id],
            "eoi": [official.eoi_id, layout.eoi_id],
            "pad": [official.pad_id, layout.pad_id],
            "mask": [official.mask_id, layout.mask_id],
        },
        "image_size_sentence": SIZE_SENTENCE.format(width=image_size_text[0], height=image_size_text[1]),
        "chest_report_prefix": CHEST_REPORT_PREFIX,
        "official_square_pad_rgb": list(PAD_FILL_RGB),
        **estimate_cost(config, parameters=parameters, steps=official_sampler_config().steps),
    }
    (out / "checkpoint_info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return out


def describe_layout(config: MeDiMConfig) -> str:
    """One line per sequence segment, for logs."""
    layout = VocabLayout.from_config(config)
    parts = [
        "<boi>",
        f"image x{layout.image_tokens}",
        "<eoi>",
        f"prefix x{len(config.text_prefix_ids)}",
        f"report x{layout.text_tokens}",
        f"suffix x{len(config.text_suffix_ids)}",
    ]
    return " ".join(parts) + f" = {layout.seq_len} tokens"
