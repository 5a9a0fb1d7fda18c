"""Training throughput of the demo-cpu preset: tokens/s and model-FLOPs utilisation (MFU) of a few steps.

    python -m benchmarks.training [--config demo-cpu] [--steps 5] [--threads 2] [--batch-size N]

Builds the denoiser from the preset (train/configs/demo-cpu.yaml; sizes from its tokenizer/VQ/data sections),
then times `steps` full optimisation steps (diffusion masking, forward, eq. 6 loss, backward, clip, AdamW) on
random well-formed sequences after two warm-up steps. MFU = 3 × forward FLOPs per step / step time / measured
fp32 GEMM throughput. It never runs the real training. When the real run's log exists
(<output_dir>/logs/train.csv, or `--log` for a run written elsewhere) its median tokens/s is shown beside.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import torch

from benchmarks.common import (
    REPO,
    gemm_gflops,
    machine_description,
    markdown_table,
    measure,
    pinned_threads,
    write_result,
)
from benchmarks.flops import training_step_flops


def model_from_preset(config, tokenizers: Path | None = None):
    """A randomly initialised MeDiMModel with the preset's sizes, built exactly as the medim stage builds it
    (`train.stages.medim.build_model_config`) with the tokenizers of a trained pipeline directory (default: the
    published default, which this preset trains), so the vocabulary is the real one, not the BPE target size."""
    from medim.modeling import MeDiMModel
    from medim.pipeline import DEFAULT_CHECKPOINT
    from medim.tokenizers.image import load_image_tokenizer
    from medim.tokenizers.text import load_text_tokenizer
    from train.stages.medim import build_model_config

    root = Path(tokenizers) if tokenizers is not None else DEFAULT_CHECKPOINT
    text_tokenizer = load_text_tokenizer(root / "text_tokenizer")
    image_tokenizer = load_image_tokenizer(root / "image_tokenizer")
    return MeDiMModel(build_model_config(config, text_tokenizer, image_tokenizer))


def random_sequences(layout, batch: int, generator: torch.Generator) -> torch.Tensor:
    """Well-formed clean sequences [B, L]: random codes and reports of random length, right-padded."""
    codes = torch.randint(0, layout.codebook_size, (batch, layout.image_tokens), generator=generator)
    text = torch.randint(0, layout.text_vocab_size, (batch, layout.text_tokens), generator=generator)
    lengths = torch.randint(layout.text_tokens // 3, layout.text_tokens + 1, (batch, 1), generator=generator)
    text = torch.where(torch.arange(layout.text_tokens)[None] < lengths, text, layout.pad_id)
    return layout.pack(text, codes)


def logged_tokens_per_second(config, log: Path | None = None) -> float | None:
    log = Path(log) if log else REPO / config.output_dir / "logs" / "train.csv"
    if not log.is_file():
        return None
    values = [float(row["tokens_per_s"]) for row in csv.DictReader(log.open()) if row.get("tokens_per_s")]
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="demo-cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument(
        "--log", type=Path, help="a real run's logs/train.csv (default: the preset's output_dir)"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    pinned_threads(args.threads)

    from medim.diffusion import diffusion_loss, make_training_batch
    from train.config import load_config

    config = load_config(args.config)
    batch = args.batch_size or config.optim.batch_size
    torch.manual_seed(config.seed)
    model = model_from_preset(config).train()
    layout = model.layout
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        x0 = random_sequences(layout, batch, generator)
        masked = make_training_batch(x0, layout, config.diffusion, generator=generator)
        logits = model(masked.xt, masked.t)
        loss, _ = diffusion_loss(logits, masked, layout, config.diffusion)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.clip_grad)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    timing = measure(step, runs=args.steps, warmup=2)
    peak = gemm_gflops(2048) * 1e9
    tokens = batch * layout.seq_len
    flops = training_step_flops(model, batch)
    seconds = timing.median
    logged = logged_tokens_per_second(config, args.log)
    rows = [
        [
            args.config,
            f"{model.num_parameters():,}",
            batch,
            layout.seq_len,
            f"{seconds:.2f}",
            f"{tokens / seconds:,.0f}",
            f"{flops / seconds / 1e9:.1f}",
            f"{peak / 1e9:.1f}",
            f"{100 * flops / seconds / peak:.0f}%",
            "—" if logged is None else f"{logged:,.0f}",
        ]
    ]
    header = [
        "preset",
        "parameters",
        "batch",
        "L",
        "s / step (median)",
        "tokens/s",
        "model GFLOP/s",
        "GEMM GFLOP/s",
        "MFU",
        "tokens/s in the real run's log",
    ]
    table = markdown_table(header, rows)
    print(table)
    path = write_result(
        "training", "Training throughput (demo-cpu preset)", [table], machine_description(), args.out
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
