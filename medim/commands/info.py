"""`python -m medim info [CHECKPOINT]`: what a checkpoint is, its sizes and an estimate of its cost."""

from __future__ import annotations

import json


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(name, help="describe a checkpoint")
    parser.add_argument(
        "checkpoint", nargs="?", help="local directory or hub id (default: the bundled model)"
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def describe(pipe) -> dict:
    config, layout = pipe.config, pipe.layout
    params = pipe.model.num_parameters()
    backbone = config.backbone
    info = {
        "checkpoint": pipe.info.get("path"),
        "sha256": pipe.checkpoint_hash,
        "kind": pipe.info.get("kind", "unknown"),
        "description": pipe.info.get("description", ""),
        "backbone": f"{backbone['model_type']} hidden={backbone.get('hidden_size')} "
        f"layers={backbone.get('num_hidden_layers')} heads={backbone.get('num_attention_heads')}",
        "parameters": params,
        "image": f"{config.image_size}x{config.image_size} px -> {config.image_grid[0]}x{config.image_grid[1]} "
        f"tokens, codebook {config.codebook_size}",
        "image_tokenizer": pipe.image_tokenizer.describe(),
        "report_tokens": layout.text_tokens,
        "text_vocab": config.text_vocab_size,
        # which report ids training updated, and what the denoiser reads for the others
        "trained_text_ids": "not recorded"
        if pipe.trained_text_ids is None
        else f"{len(pipe.trained_text_ids)} of {config.text_vocab_size}; the others are read "
        + {"<unk>": "as <unk> (word dropout)", "[MASK]": "as [MASK]"}.get(
            pipe.unknown_word_reading, "as written"
        ),
        "sequence_length": layout.seq_len,
        "adaptations": f"causal_attention={config.causal_attention}, timestep={config.timestep_conditioning}, "
        f"gate={config.adaln_gate}, attention={config.attn_implementation}",
        "sampler_defaults": pipe.sampler_config.to_dict(),
        # a full forward pass costs about 2 FLOPs per parameter per token (attention is small at these lengths)
        "gflops_per_step": round(2 * params * layout.seq_len / 1e9, 3),
        "weights_mib_fp32": round(params * 4 / 2**20, 1),
    }
    if info["kind"] == "random-init":
        info["warning"] = "randomly initialised: it exercises the code but generates noise"
    return info


def run(args) -> int:
    from medim.pipeline import MeDiMPipeline

    pipe = MeDiMPipeline.from_pretrained(args.checkpoint, device="cpu")
    info = describe(pipe)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
    return 0
