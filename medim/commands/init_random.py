"""`python -m medim init-random --out DIR`: a tiny randomly initialised checkpoint to exercise the code end to end.

It trains a small BPE on the shipped example reports (or a few built-in sentences) and builds a random VQ, so
every part of the pipeline is real; only the weights are untrained (`info` says so).
"""

from __future__ import annotations

from pathlib import Path

from medim.config import MeDiMConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"
FALLBACK_REPORTS = [
    "FINDINGS: The heart is normal in size. No pleural effusion or pneumothorax. IMPRESSION: No acute process.",
    "FINDINGS: Moderate left pleural effusion. The heart is enlarged. IMPRESSION: Cardiomegaly and effusion.",
    "Hematoxylin and eosin stained tissue with crowded atypical glands and frequent mitoses.",
    "Benign stroma with scattered lymphocytes; no tumour is seen.",
]


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(name, help="write a tiny random checkpoint (for development and tests)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--family", default="llama", choices=["llama", "gemma", "qwen2"])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--grid", type=int, default=4, help="VQ grid side (image tokens = grid^2)")
    parser.add_argument("--codebook", type=int, default=64)
    parser.add_argument("--text-tokens", type=int, default=32)
    parser.add_argument("--text-vocab", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def example_reports(limit: int = 2000) -> list[str]:
    import json

    reports = []
    for manifest in sorted(EXAMPLES.glob("*/metadata.jsonl")):
        for line in manifest.read_text().splitlines():
            if line.strip():
                reports.append(json.loads(line)["report"])
    return reports[:limit] or FALLBACK_REPORTS


def build_random_pipeline(
    *,
    family: str = "llama",
    hidden: int = 64,
    layers: int = 2,
    image_size: int = 32,
    grid: int = 4,
    codebook: int = 64,
    text_tokens: int = 32,
    text_vocab: int = 300,
    seed: int = 0,
):
    import torch

    from medim.modeling import MeDiMModel
    from medim.pipeline import MeDiMPipeline
    from medim.tokenizers.image import VQImageTokenizer
    from medim.tokenizers.text import train_bpe_tokenizer

    torch.manual_seed(seed)
    text_tokenizer = train_bpe_tokenizer(example_reports(), vocab_size=text_vocab, min_frequency=1)
    downsample = image_size // grid
    levels = max(1, downsample.bit_length() - 1)
    if 2**levels != downsample or grid * downsample != image_size:
        raise ValueError(f"image_size {image_size} / grid {grid} must be a power of two")
    image_tokenizer = VQImageTokenizer.from_config(
        image_size=image_size,
        block_out_channels=[16] * (levels + 1),
        num_vq_embeddings=codebook,
        latent_channels=8,
        vq_embed_dim=8,
        norm_num_groups=8,
        layers_per_block=1,
    )
    heads = max(1, hidden // 16)
    config = MeDiMConfig(
        backbone=dict(
            model_type=family,
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            head_dim=hidden // heads,
            max_position_embeddings=4096,
        ),
        text_vocab_size=len(text_tokenizer),
        codebook_size=codebook,
        image_grid=(grid, grid),
        max_text_tokens=text_tokens,
        image_size=image_size,
    )
    info = {
        "kind": "random-init",
        "description": "randomly initialised tiny MeDiM (not trained)",
        "seed": seed,
    }
    return MeDiMPipeline(MeDiMModel(config), text_tokenizer, image_tokenizer, info=info)


def run(args) -> int:
    pipe = build_random_pipeline(
        family=args.family,
        hidden=args.hidden,
        layers=args.layers,
        image_size=args.image_size,
        grid=args.grid,
        codebook=args.codebook,
        text_tokens=args.text_tokens,
        text_vocab=args.text_vocab,
        seed=args.seed,
    )
    root = pipe.save_pretrained(args.out)
    print(f"wrote a random-init MeDiM checkpoint ({pipe.model.num_parameters():,} parameters) to {root}")
    return 0
