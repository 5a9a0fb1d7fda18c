"""How close MeDiM runs to this machine's matmul floor: measured time / (FLOPs ÷ measured GEMM throughput).

    python -m benchmarks.floor [--checkpoint assets/default] [--threads 2] [--runs 10]

The floor of a pass is its FLOP count (benchmarks/flops.py: 2·params·L + attention + head) divided by the
throughput of one large fp32 GEMM measured in the same run. Rows: the model's full forward (full-vocabulary head)
at batch 1 and 8, the pipeline's default denoising step (restricted head), and a whole report→image sample at
the default K (denoising steps + sampler + VQ decode) against K step floors.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import (
    DEFAULT_CHECKPOINT,
    LoadRecord,
    default_sample_timing,
    gemm_gflops,
    load_examples,
    machine_description,
    markdown_table,
    measure,
    pinned_threads,
    write_result,
)
from benchmarks.flops import forward_flops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--gemm-size", type=int, default=2048)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    pinned_threads(args.threads)
    load = LoadRecord()

    from medim.pipeline import MeDiMPipeline

    pipe = MeDiMPipeline.from_pretrained(args.checkpoint, device="cpu")
    model, layout = pipe.model, pipe.layout
    peak = gemm_gflops(args.gemm_size, runs=args.runs) * 1e9
    rows = []

    def row(name: str, flops: float, seconds: float, note: str = "") -> None:
        floor = flops / peak
        rows.append(
            [
                name,
                f"{flops / 1e9:.3f}",
                f"{seconds * 1e3:.1f}",
                f"{floor * 1e3:.1f}",
                f"{seconds / floor:.2f}",
                f"{100 * floor / seconds:.0f}%",
                note,
            ]
        )

    with torch.no_grad():
        for batch in (1, 8):
            x = torch.randint(0, layout.image_offset, (batch, layout.seq_len))
            t = torch.full((batch,), 0.5)
            timing = measure(lambda x=x, t=t: model(x, t), runs=args.runs, warmup=3)
            row(
                f"full forward, batch {batch}",
                forward_flops(model, batch).total / batch,
                timing.median / batch,
                "per sequence; full-vocab head at all L",
            )

        example = load_examples(1)[0]
        x_init, generate, _ = pipe.prepare("report2image", report=example.report)
        timing = measure(lambda: pipe.denoise_logits(x_init, generate, 0.0), runs=args.runs, warmup=3)
        masked = int(generate[0].sum())
        flops = forward_flops(model, 1, head_positions=masked, head_width=layout.codebook_size).total
        row(
            "default denoising step (report→image, first step)",
            flops,
            timing.median,
            "restricted head: image rows at masked positions",
        )

        steps = pipe.sampler_config.steps
        # the same row as latency.md's and speedups.md's default sample (one measurement in a benchmarks.speed run)
        timing = default_sample_timing(
            pipe, "report2image", [example], steps, 0.0, runs=max(5, args.runs // 2)
        )
        # floor for a sample: K full bodies; the head shrinks with the masks but we charge every step in full
        row(
            f"report→image sample, K={steps} (steps + sampler + VQ decode)",
            steps * flops,
            timing.median,
            "floor counts only the K denoising passes",
        )

    header = ["what", "GFLOP", "measured ms", "floor ms", "measured/floor", "of peak", "note"]
    table = markdown_table(header, rows)
    machine = machine_description()
    summary = (
        f"Measured fp32 GEMM ({args.gemm_size}²): {peak / 1e9:.1f} GFLOP/s with {torch.get_num_threads()} "
        f"threads; model {model.num_parameters():,} parameters, L = {layout.seq_len}."
    )
    print(summary)
    print(table)
    path = write_result("floor", "MeDiM vs the matmul floor", [summary, table], machine, args.out, load)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
