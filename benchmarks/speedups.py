"""Before/after table of MeDiM's inference speedups, each timed side by side with its quality cost.

    python -m benchmarks.speedups [--checkpoint assets/default] [--runs 5] [--threads 2] [--quality-n 40]
                                  [--guidance 1.5]

Rows, per task at the checkpoint's default K (batch 1, median of `runs` after a warm-up, threads pinned):

- before: the original path (full-vocabulary head at every position, MaskGIT sampler over the full
  [B, L, V] logits with torch.multinomial — benchmarks/legacy.py);
- sampler: masked rows only + inverse-CDF draws (now the default sampler, full head);
- default: the pipeline as shipped (that sampler + the restricted output head; every row shares the model's one
  forward pass, with its rotary table built once per length);
- two-pass guidance (guidance rows): conditional and unconditional passes run one after the other instead of
  as one batch of 2B;
- approximate: condition key/value cache (refresh never / every 4 steps), confidence-threshold sampler
  (τ = 0.9, 0.7), int8 dynamic quantisation (medim.speedups);
- threads: the default path with 1 thread instead of 2.

Columns: ms per sample, speed-up vs before, same tokens as the default path for the probe (same seed), denoising
passes used, and quality on `quality-n` test examples (image→report CE-F1; report→image judge finding F1 when a
judge exists). Exact rows give the default's tokens, so their quality is the default's by construction.
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import (
    DEFAULT_CHECKPOINT,
    DEFAULT_JUDGE,
    GUIDED_ROWS_SCALE,
    LoadRecord,
    default_sample_timing,
    load_examples,
    load_judge,
    machine_description,
    markdown_table,
    measure,
    pinned_threads,
    shown_path,
    write_result,
)
from benchmarks.latency import TASK_NAMES, fmt, quality, task_inputs
from benchmarks.legacy import LegacyMaskGITSampler
from medim.heads import restricted_logits
from medim.sampling import ThresholdSampler, unconditional_input
from medim.speedups import ConditionCache, quantize_int8


@dataclass
class Output:
    images: list
    reports: list[str]
    tokens: torch.Tensor
    passes: int


class Runner:
    """Runs a task through `pipe.stream` with a chosen sampler, denoiser, head and thread count."""

    def __init__(
        self,
        pipe,
        *,
        restrict_head: bool = True,
        sampler: Callable | None = None,
        denoiser: Callable | None = None,
        threads: int | None = None,
    ):
        self.pipe = pipe
        self.restrict_head = restrict_head
        self.sampler = sampler  # config -> sampler
        self.denoiser = denoiser  # pipe -> callable
        self.threads = threads

    def __call__(self, task: str, examples, steps: int, guidance: float, seed: int = 0) -> Output:
        pipe = self.pipe
        saved_threads, saved_head = torch.get_num_threads(), pipe.restrict_head
        if self.threads:
            torch.set_num_threads(self.threads)
        pipe.restrict_head = self.restrict_head
        try:
            inputs = task_inputs(task, examples)
            x_init, generate, _ = pipe.prepare(
                task, num_samples=len(examples) if task == "pair" else 1, **inputs
            )
            config = pipe.sampler_settings(None, {"steps": steps, "guidance_scale": guidance})
            base = self.denoiser(pipe) if self.denoiser else pipe.denoise_logits
            passes = 0

            def counted(*args):
                nonlocal passes
                passes += 1
                return base(*args)

            states = pipe.stream(
                x_init,
                generate,
                sampler_config=config,
                seed=seed,
                decode_images=False,
                sampler=self.sampler(pipe.layout, config) if self.sampler else None,
                denoiser=counted,
            )
            state = collections.deque(states, maxlen=1)[0]
            images = pipe.decode_images(pipe.layout.image_codes(state.tokens).clamp_min(0))
            return Output(images, state.reports, state.tokens, passes)
        finally:
            torch.set_num_threads(saved_threads)
            pipe.restrict_head = saved_head


def two_pass_denoiser(pipe):
    """Guidance with the conditional and unconditional inputs as two forwards (what batching replaced)."""

    @torch.no_grad()
    def call(x_t, generate, guidance):
        if guidance == 0:
            return pipe.denoise_logits(x_t, generate, guidance)
        masked_fraction = (x_t == pipe.layout.mask_id).sum(-1).float() / generate.sum(-1).clamp_min(1).float()
        t = pipe.noise_schedule.t_for_mask_probability(masked_fraction.clamp(0, 1))
        cond = pipe.model.hidden_states(x_t, t)
        uncond = pipe.model.hidden_states(unconditional_input(x_t, generate, pipe.layout), t)
        return restricted_logits(pipe.model, torch.cat([cond, uncond]), x_t == pipe.layout.mask_id, guidance)

    return call


def build_modes(pipe, args) -> list[tuple[str, bool, Runner, str]]:
    """(name, exact, runner, note) for every row."""
    from medim.pipeline import MeDiMPipeline

    modes = [
        (
            "before: full head + multinomial sampler",
            False,
            Runner(pipe, restrict_head=False, sampler=LegacyMaskGITSampler),
            "original path (other RNG draws)",
        ),
        ("sampler: masked rows + inverse CDF", True, Runner(pipe, restrict_head=False), "full head"),
        ("default: + restricted head", True, Runner(pipe), "shipped default"),
        ("two-pass guidance", True, Runner(pipe, denoiser=two_pass_denoiser), "guidance rows only"),
        (
            "condition KV cache, computed once",
            False,
            Runner(pipe, denoiser=lambda p: ConditionCache(p)),
            "approximate",
        ),
        (
            "condition KV cache, refresh every 4",
            False,
            Runner(pipe, denoiser=lambda p: ConditionCache(p, refresh_every=4)),
            "approximate",
        ),
        (
            "threshold sampler τ=0.9",
            False,
            Runner(pipe, sampler=lambda layout, config: ThresholdSampler(layout, config, 0.9)),
            "adaptive steps",
        ),
        (
            "threshold sampler τ=0.7",
            False,
            Runner(pipe, sampler=lambda layout, config: ThresholdSampler(layout, config, 0.7)),
            "adaptive steps",
        ),
    ]
    quantised = MeDiMPipeline(
        quantize_int8(pipe.model), pipe.text_tokenizer, pipe.image_tokenizer, pipe.sampler_config, pipe.info
    )
    modes.append(("int8 dynamic quantisation", False, Runner(quantised), "torch.ao quantize_dynamic"))
    modes.append((f"threads: 1 instead of {torch.get_num_threads()}", True, Runner(pipe, threads=1), ""))
    return modes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--tasks", nargs="+", default=["report2image", "image2report", "pair"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="K (default: the checkpoint's)")
    parser.add_argument(
        "--guidance",
        type=float,
        default=GUIDED_ROWS_SCALE,
        help="scale of the guided rows, the default sampler's (0: none)",
    )
    parser.add_argument("--quality-n", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--judge", default=str(DEFAULT_JUDGE))
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    pinned_threads(args.threads)
    load = LoadRecord()

    from medim.pipeline import MeDiMPipeline

    pipe = MeDiMPipeline.from_pretrained(args.checkpoint, device="cpu")
    steps = args.steps or pipe.sampler_config.steps
    judge = load_judge(Path(args.judge)) if args.judge else None
    examples = load_examples(max(args.quality_n, 1))
    probe = examples[:1]
    modes = build_modes(pipe, args)
    sections = []
    summary = []
    for task in args.tasks:
        for guidance in sorted({0.0, args.guidance}):
            reference = modes[2][2](task, probe, steps, guidance)
            rows = []
            before = None
            default_quality = None
            for name, exact, runner, note in modes:
                if name.startswith("two-pass") and guidance == 0:
                    continue
                if name.startswith("condition KV") and task == "pair":
                    continue  # pair has no condition to cache
                if name.startswith("default"):  # the row latency.md and floor.md report too
                    timing = default_sample_timing(pipe, task, probe, steps, guidance, runs=args.runs)
                else:
                    timing = measure(
                        lambda r=runner, t=task, g=guidance: r(t, probe, steps, g), runs=args.runs
                    )
                out = runner(task, probe, steps, guidance)
                same = bool(torch.equal(out.tokens, reference.tokens))
                value = None
                if args.quality_n and (not exact or name.startswith("default")):
                    images, reports = [], []
                    for start in range(0, len(examples), args.batch_size):
                        batch = examples[start : start + args.batch_size]
                        generated = runner(task, batch, steps, guidance, seed=start)
                        images += generated.images
                        reports += generated.reports
                    value = quality(task, examples, images, reports, judge)
                    if name.startswith("default"):
                        default_quality = value
                elif exact:
                    value = default_quality
                before = before or timing.median
                rows.append(
                    [
                        name,
                        f"{timing.median * 1e3:.0f}",
                        f"{before / timing.median:.2f}",
                        "yes" if same else "no",
                        out.passes,
                        fmt(value),
                        note,
                    ]
                )
                print(f"{TASK_NAMES[task]} g={guidance}: " + " | ".join(str(v) for v in rows[-1]), flush=True)
                if name.startswith("default"):
                    summary.append(
                        f"- {TASK_NAMES[task]}, guidance {guidance}: before {before * 1e3:.0f} ms → "
                        f"default {timing.median * 1e3:.0f} ms ({before / timing.median:.2f}×)"
                    )
            header = [
                "mode",
                "ms / sample",
                "speed-up vs before",
                "same tokens as default",
                "passes",
                "quality",
                "note",
            ]
            sections.append(
                f"## {TASK_NAMES[task]}, K = {steps}, guidance {guidance}\n\n" + markdown_table(header, rows)
            )
            print(sections[-1])
    quality_note = (
        f"Quality on {args.quality_n} test examples: image→report CE-F1 (micro), report→image and pair the "
        f"consistency judge's finding F1 ({'judge ' + shown_path(args.judge) if judge else 'no judge available: —'}). "
        "Exact rows produce the default's tokens, so they carry its quality."
    )
    sections = [quality_note, *sections, "Summary:", "\n".join(summary)]
    path = write_result(
        "speedups", "MeDiM inference speedups: before/after", sections, machine_description(), args.out, load
    )
    print("\n".join(summary))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
