"""Sampler settings of a checkpoint, compared on the validation split (no training: what K, temperature and the
confidence noise do to the findings a trained model writes and draws).

    python -m benchmarks.sampler --checkpoint assets/default --corpus runs/corpus --pairs 100

Each setting overrides the checkpoint's sampler_config.json; the scores are the recipe search's generation
proxies on `pairs` **validation** pairs from `--first` (default 0), seed 0: image→report CE macro-F1 and report→image judge
macro-F1 per domain, with each one's chance level. Results: benchmarks/results/sampler.md (+ sampler.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.common import (
    REPO,
    RESULTS,
    chosen,
    load_judge,
    machine_description,
    markdown_table,
    write_result,
)

# name -> (SamplerConfig overrides, what it tests)
SETTINGS: dict[str, tuple[dict, str]] = {
    "default": ({}, "the checkpoint's sampler_config.json"),
    "steps24": ({"steps": 24}, "twice the MaskGIT steps"),
    "temp0.7": ({"temperature": 0.7}, "sampling temperature 0.7"),
    "no_noise": (
        {"confidence_noise": 0.0},
        "commit the most confident tokens first, no Gumbel noise on confidence",
    ),
    "linear": ({"schedule": "linear"}, "linear unmasking schedule"),
    "steps32": ({"steps": 32}, "32 MaskGIT steps"),
    "steps24_temp0.7": ({"steps": 24, "temperature": 0.7}, "24 steps at temperature 0.7"),
    "guidance1.5": ({"guidance_scale": 1.5}, "classifier-free guidance 1.5 (condition blanked to [MASK])"),
    "guidance3": ({"guidance_scale": 3.0}, "classifier-free guidance 3"),
    "k12_noise1": (
        {"steps": 12, "confidence_noise": 1.0},
        "12 steps with confidence noise 1: the shared settings (image→report before its own settings)",
    ),
    "steps48": ({"steps": 48, "confidence_noise": 1.0}, "48 MaskGIT steps, confidence noise 1"),
    "steps48_no_noise": ({"steps": 48, "confidence_noise": 0.0}, "48 steps, most confident first"),
    "steps32_no_noise_temp0.7": (
        {"steps": 32, "confidence_noise": 0.0, "temperature": 0.7},
        "32 steps, most confident first, temperature 0.7",
    ),
    "steps48_no_noise_temp0.7": (
        {"steps": 48, "confidence_noise": 0.0, "temperature": 0.7},
        "48 steps, most confident first, temperature 0.7",
    ),
    "guidance1.5_linear": (
        {"guidance_scale": 1.5, "guidance_schedule": "linear"},
        "guidance ramped from 0 to 1.5 over the steps",
    ),
    "one_code_group": (
        {"one_code_group": True},
        "each image drawn from one group of codes (a routed tokenizer's grey or colour codes)",
    ),
}
DOMAINS = ("chest_xray", "pathology")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sampler", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", default=str(REPO / "assets" / "default"))
    parser.add_argument("--corpus", required=True, help="synthetic corpus root with a val/ split")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument(
        "--first", type=int, default=0, help="index of the first validation pair (a second draw: --first 400)"
    )
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"subset of {','.join(SETTINGS)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--tasks",
        default="report2image,image2report",
        help="score one direction only (image2report: CE-F1; report2image: judge F1)",
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device of the denoiser (cpu, cuda); the judge runs on the CPU"
    )
    parser.add_argument("--judge", default=str(REPO / "assets" / "judge"))
    parser.add_argument("--out", default=str(RESULTS / "sampler.md"))
    args = parser.parse_args(argv)
    names = chosen(parser, args.settings, SETTINGS, "settings")
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    import torch

    from medim.data.synthetic import corpus_recipe
    from medim.evaluation import finding_scores, load_eval_dataset
    from medim.pipeline import MeDiMPipeline

    torch.set_num_threads(args.threads)
    machine = machine_description()
    if args.device != "cpu":
        name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else args.device
        machine["denoiser device"] = f"{args.device} ({name})"
    pipe = MeDiMPipeline.from_pretrained(args.checkpoint, device=args.device)
    dataset = load_eval_dataset(args.corpus, "val")
    if not 0 <= args.first < len(dataset):
        parser.error(f"--first {args.first} is outside the {len(dataset)} validation pairs")
    records = [dataset[i] for i in range(args.first, min(args.first + args.pairs, len(dataset)))]
    judge = load_judge(Path(args.judge))
    # The synthetic corpus's templates also say whether the written reports read as reports.
    form = "image2report" in tasks and corpus_recipe(args.corpus) is not None
    results = {}
    for name in names:
        overrides, note = SETTINGS[name]
        results[name] = {
            "note": note,
            "overrides": overrides,
            "scores": finding_scores(pipe, records, judge, sampler=overrides, tasks=tasks, report_form=form),
        }
        print(f"[sampler] {name}: {json.dumps(results[name]['scores'])}", flush=True)
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    metrics = [m for m, task in (("ce_f1", "image2report"), ("judge_f1", "report2image")) if task in tasks]
    titles = {"ce_f1": "CE-F1", "judge_f1": "judge F1"}
    header = ["setting", "what it tests", *[f"{titles[m]} {d} (chance)" for m in metrics for d in DOMAINS]]
    if form:
        header += [f"well-formed sentences / reports {d}" for d in DOMAINS]
    rows = []
    for name, entry in results.items():
        s = entry["scores"]
        cells = [f"{s[f'{m}/{d}']:.3f} ({s[f'{m}_chance/{d}']:.3f})" for m in metrics for d in DOMAINS]
        if form:
            cells += [f"{s[f'form_sentences/{d}']:.3f} / {s[f'form_reports/{d}']:.3f}" for d in DOMAINS]
        rows.append([name, entry["note"], *cells])
    sections = [
        f"Checkpoint `{Path(args.checkpoint).name}` (sha256 {pipe.checkpoint_hash[:12]}), validation pairs "
        f"{args.first}–{args.first + len(records) - 1} ({len(records)}), seed 0, batch 50; each setting overrides "
        "the checkpoint's sampler_config.json.",
        markdown_table(header, rows),
    ]
    write_result("sampler", "Sampler settings on the validation split", sections, machine, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
