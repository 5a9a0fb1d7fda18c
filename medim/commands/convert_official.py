"""`python -m medim convert-official ...`: turn the official MeDiM release into a checkpoint our app and CLI load."""

from __future__ import annotations


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(
        name,
        help="convert the official MeDiM weights (Gemma backbone + Chameleon VQ-GAN) to a MeDiM checkpoint",
        description="Convert the official MeDiM release. Weights are read with safetensors or "
        "torch.load(weights_only=True); the output directory holds only safetensors and JSON.",
    )
    parser.add_argument(
        "--backbone", required=True, help="directory with config.json and the backbone weights"
    )
    parser.add_argument("--vqgan-ckpt", required=True, help="Chameleon's vqgan.ckpt")
    parser.add_argument("--vqgan-config", required=True, help="Chameleon's vqgan.yaml")
    parser.add_argument("--tokenizer", required=True, help="the Llama-2 tokenizer directory (tokenizer.json)")
    parser.add_argument("--out", required=True, help="output checkpoint directory")
    parser.add_argument(
        "--num-hidden-layers", type=int, help="override config.json's layer count (the release keeps 10)"
    )
    parser.add_argument(
        "--image-size-text",
        default="512x512",
        help="WIDTHxHEIGHT written in the official 'Image Size' conditioning sentence (default 512x512)",
    )
    parser.add_argument(
        "--pad-token", help="pad token when the tokenizer has none (default <unk>, as officially)"
    )
    parser.add_argument(
        "--dtype", choices=["keep", "float32", "bfloat16"], default="keep", help="stored weight dtype"
    )
    parser.set_defaults(func=run)


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--image-size-text must look like 512x512, got {text!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"--image-size-text must be positive, got {text!r}")
    return width, height


def run(args) -> int:
    import torch

    from medim.config import MeDiMConfig
    from medim.convert_official import convert, describe_layout

    dtype = {"keep": None, "float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    out = convert(
        args.backbone,
        args.vqgan_ckpt,
        args.vqgan_config,
        args.tokenizer,
        args.out,
        num_hidden_layers=args.num_hidden_layers,
        image_size_text=_size(args.image_size_text),
        pad_token=args.pad_token,
        dtype=dtype,
    )
    print(f"wrote the converted official MeDiM checkpoint to {out}")
    print(f"sequence: {describe_layout(MeDiMConfig.load(out / 'medim_config.json'))}")
    print(
        f"run it: python -m medim generate --checkpoint {out} --task report2image --report '...' (needs a GPU)"
    )
    return 0
