"""Latency per sample of MeDiM (MaskGIT, K steps) vs autoregressive decoding with a KV cache, with quality.

    python -m benchmarks.latency [--checkpoint assets/default] [--steps 4 8 12 16 24 32] [--guidance 1.5]
                                 [--runs 5] [--threads 2] [--quality-n 40] [--judge assets/judge]

For report→image, image→report and pair, with and without classifier-free guidance: the pipeline's default
path (`MeDiMPipeline.run`, end to end from the report/PIL image to PIL images and text, VQ decode included) at
each K, and the AR baseline (benchmarks/ar_baseline.py: the same backbone weights run causally through Hugging
Face's forward with a DynamicCache, condition prefilled, one token per forward, sampled from the modality slice,
then the same VQ decode). Latency is the median of `runs` batch-1 calls after one warm-up call, threads pinned.
The AR baseline decodes the report's length + 1 report tokens (what a trained AR model would emit before its
end token), MeDiM fills its whole report slot.

Quality at each K, on the first `quality-n` examples of assets/examples/test: image→report CE-F1 (labeler
findings of generated vs reference reports); report→image and pair: the consistency judge's finding F1 between
the generated image and its report, when a judge is available (else "—"). The AR rows' quality is that of
MeDiM's weights run causally, which were never trained for it: they show cost, not a competitor's quality.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.ar_baseline import ar_run
from benchmarks.common import (
    DEFAULT_CHECKPOINT,
    DEFAULT_JUDGE,
    GUIDED_ROWS_SCALE,
    LoadRecord,
    ce_f1,
    default_sample,
    default_sample_timing,
    judge_f1,
    load_examples,
    load_judge,
    machine_description,
    markdown_table,
    measure,
    pinned_threads,
    shown_path,
    write_result,
)

TASKS = ("report2image", "image2report", "pair")
TASK_NAMES = {"report2image": "report→image", "image2report": "image→report", "pair": "pair"}


def report_length(pipe, report: str) -> int:
    """Report tokens a trained AR model would emit for this report: its tokens + an end token (capped)."""
    ids = pipe.text_tokenizer(" ".join(report.split()), add_special_tokens=False)["input_ids"]
    return min(len(ids) + 1, pipe.layout.text_tokens)


def task_inputs(task: str, examples) -> dict:
    if task == "report2image":
        return {"report": [e.report for e in examples]}
    if task == "image2report":
        return {"image": [e.image for e in examples]}
    return {}


def medim_generate(pipe, task: str, examples, steps: int, guidance: float, seed: int = 0):
    """MeDiM end to end for a batch -> (images, reports)."""
    result = default_sample(pipe, task, examples, steps, guidance, seed)
    return result.images, result.reports


def ar_generate_batch(pipe, task: str, examples, guidance: float, seed: int = 0):
    """The AR baseline end to end for a batch -> (images, reports)."""
    text_tokens = max(report_length(pipe, e.report) for e in examples)
    if task == "pair":
        images, reports = [], []
        for index in range(len(examples)):  # pair has no per-example input: one sequence per call
            i, r = ar_run(pipe, task, text_tokens=text_tokens, guidance=guidance, seed=seed + index)
            images += i
            reports += r
        return images, reports
    return ar_run(
        pipe, task, text_tokens=text_tokens, guidance=guidance, seed=seed, **task_inputs(task, examples)
    )


def quality(task: str, examples, images, reports, judge) -> float | None:
    """The task's quality number (see the module docstring); None when it needs a judge and there is none."""
    if task == "image2report":
        return ce_f1(reports, [e.report for e in examples], [e.domain for e in examples])
    if judge is None:
        return None
    if task == "report2image":
        return judge_f1(judge, images, [e.report for e in examples], [e.domain for e in examples])
    from medim.metrics.labeler import infer_domain

    return judge_f1(judge, images, reports, [infer_domain(r) for r in reports])


def batched_quality(task, examples, generate, judge, batch_size: int) -> float | None:
    images, reports = [], []
    for start in range(0, len(examples), batch_size):
        i, r = generate(examples[start : start + batch_size])
        images += i
        reports += r
    return quality(task, examples, images, reports, judge)


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 12, 16, 24, 32])
    parser.add_argument(
        "--guidance",
        type=float,
        default=GUIDED_ROWS_SCALE,
        help="the guided rows' scale, the default sampler's (0 rows always run)",
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quality-n", type=int, default=40, help="test examples for quality (0: skip)")
    parser.add_argument("--batch-size", type=int, default=20, help="batch for the quality runs")
    parser.add_argument("--judge", default=str(DEFAULT_JUDGE))
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error(f"--runs must be >= 5 for a median worth reporting, got {args.runs}")
    pinned_threads(args.threads)
    load = LoadRecord()

    from medim.pipeline import MeDiMPipeline

    pipe = MeDiMPipeline.from_pretrained(args.checkpoint, device="cpu")
    judge = load_judge(Path(args.judge)) if args.judge else None
    examples = load_examples(max(args.quality_n, 1))
    probe = examples[:1]
    rows = []
    headline = {}
    for task in args.tasks:
        for guidance in (0.0, args.guidance):
            ar_time = measure(lambda t=task, g=guidance: ar_generate_batch(pipe, t, probe, g), runs=args.runs)
            ar_quality = None
            if args.quality_n:
                ar_quality = batched_quality(
                    task,
                    examples,
                    lambda b, t=task, g=guidance: ar_generate_batch(pipe, t, b, g),
                    judge,
                    args.batch_size,
                )
            rows.append(
                [
                    TASK_NAMES[task],
                    guidance,
                    "AR + KV cache (MeDiM weights run causally, not an AR-trained model)",
                    f"{ar_time.median * 1e3:.0f}",
                    "1.00",
                    fmt(ar_quality),
                ]
            )
            for steps in args.steps:
                timing = default_sample_timing(pipe, task, probe, steps, guidance, runs=args.runs)
                medim_quality = None
                if args.quality_n:
                    medim_quality = batched_quality(
                        task,
                        examples,
                        lambda b, t=task, k=steps, g=guidance: medim_generate(pipe, t, b, k, g),
                        judge,
                        args.batch_size,
                    )
                speedup = ar_time.median / timing.median
                rows.append(
                    [
                        TASK_NAMES[task],
                        guidance,
                        f"MeDiM K={steps}",
                        f"{timing.median * 1e3:.0f}",
                        f"{speedup:.2f}",
                        fmt(medim_quality),
                    ]
                )
                print(" | ".join(str(v) for v in rows[-1]), flush=True)
                # the headline compares the task's own default K, unguided
                if steps == pipe.sampler_config.for_task(task).steps and guidance == 0:
                    headline[task] = (speedup, timing.median, ar_time.median)

    quality_note = (
        f"Quality on {args.quality_n} test examples: image→report CE-F1 (micro); report→image and pair: "
        f"consistency-judge finding F1 ({'judge ' + shown_path(args.judge) if judge else 'no judge available: —'})."
    )
    header = ["task", "guidance", "method", "ms / sample (median)", "speed-up vs AR", "quality"]
    table = markdown_table(header, rows)
    lines = [
        f"- {TASK_NAMES[t]}: MeDiM K={pipe.sampler_config.for_task(t).steps} {m * 1e3:.0f} ms vs AR {a * 1e3:.0f} ms "
        f"({s:.2f}× faster)"
        for t, (s, m, a) in headline.items()
    ]
    print(table)
    print("\n".join(lines))
    machine = machine_description()
    path = write_result(
        "latency",
        "MeDiM vs autoregressive decoding with a KV cache (same backbone)",
        [quality_note, table, "Default settings, no guidance:", "\n".join(lines)],
        machine,
        args.out,
        load,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
