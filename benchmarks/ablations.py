"""Component ablations (the paper's Table 4): retrain the small default configuration with each switch flipped.

    python -m benchmarks.ablations [--config demo-cpu] [--max-steps 600 | --max-minutes 20] [--seed 0]
                                   [--variants baseline,causal,no-timestep,additive] [--eval-limit 200]
                                   [--work-dir runs/ablations] [--judge assets/judge] [--dry-run]

Every variant is trained by the training package (`python -m train all --config CFG key=value ...`) under the
same budget and seed on the same synthetic corpus (``data.root`` shared), and all variants after the baseline
reuse the baseline's text and VQ tokenizers (``tokenizer.path`` / ``vq.path``), so only the denoiser differs:

- ``baseline``     MeDiM: bidirectional attention, timestep AdaLN;
- ``causal``       ``model.causal_attention=true`` (the backbone's causal mask kept);
- ``no-timestep``  ``model.timestep_conditioning=off`` (no timestep embedding, plain LayerNorm);
- ``additive``     ``model.timestep_conditioning=additive`` (timestep embedding added to the tokens, no AdaLN).

When the preset pretrains (demo-cpu does: a causal LM first, then the ``medim`` stage adapts it), the pretraining
runs once, in the baseline, and every other variant's ``medim`` stage adapts that same export
(``model.init_from=<work-dir>/baseline/pretrain``), as the paper's ablations all start from one pretrained LLM; the
variants then differ only in the switch and share the baseline's token cache.

Each checkpoint is then evaluated the same way (`python -m medim evaluate`, report→image and image→report on the
first ``eval-limit`` test pairs, same sampler settings and seed) and the Table-4-style comparison is written to
benchmarks/results/ablations.md (means over the two domains, as the paper's mB-1 ... mFID). A steps budget
(``--max-steps``) gives every variant the same number of updates; a minutes budget is only fair on an otherwise
idle machine. A variant whose training or evaluation fails is reported as such; the others still run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from benchmarks.common import LoadRecord, link_shared_cache, machine_description, shown_path, write_result

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "ablations.md"

VARIANTS = {
    "baseline": ("MeDiM (bidirectional, timestep AdaLN)", []),
    "causal": ("w/ causal mask", ["model.causal_attention=true"]),
    "no-timestep": ("w/o timestep embedding", ["model.timestep_conditioning=off"]),
    "additive": ("w/o AdaLN (additive timestep)", ["model.timestep_conditioning=additive"]),
}

# (column title, path in metrics.json under a domain's entry, digits); averaged over domains
REPORT_COLUMNS = [
    ("mB-1 ↑", ("image2report", "text", "coco_bleu_1"), 3),
    ("mB-2 ↑", ("image2report", "text", "coco_bleu_2"), 3),
    ("mB-3 ↑", ("image2report", "text", "coco_bleu_3"), 3),
    ("mMTR ↑", ("image2report", "text", "coco_meteor"), 3),
    ("mR-L ↑", ("image2report", "text", "coco_rouge_l"), 3),
    ("mCE-F1 ↑", ("image2report", "ce", "f1_micro"), 3),
]
IMAGE_COLUMNS = [
    ("mFID ↓", ("report2image", "fid", "value"), 2),
    ("mIS ↑", ("report2image", "is", "mean"), 2),
    ("m domain FD ↓", ("report2image", "domain_fd", "value"), 2),
    ("m judge F1 ↑", ("report2image", "consistency", "f1_micro"), 3),
]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="demo-cpu", help="training preset or YAML file")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--max-steps", type=int, help="optimizer steps per variant (the fair budget)")
    budget.add_argument("--max-minutes", type=float, help="wall-clock minutes per variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {list(VARIANTS)}"
    )
    parser.add_argument("--work-dir", default=str(REPO / "runs" / "ablations"))
    parser.add_argument(
        "--corpus", help="an existing synthetic corpus to train and evaluate on (default: <work-dir>/corpus)"
    )
    parser.add_argument("--eval-limit", type=int, default=200, help="test pairs evaluated per variant")
    parser.add_argument("--eval-steps", type=int, help="MaskGIT steps for evaluation (default: checkpoint's)")
    parser.add_argument(
        "--judge", help="consistency judge (default: assets/judge, else trained on the corpus)"
    )
    parser.add_argument("--inception", help="local Inception-v3 file for FID/IS")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument(
        "--skip-existing", action="store_true", help="reuse variants already trained/evaluated"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument(
        "--override", action="append", default=[], help="extra key=value for every training run"
    )
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or not names:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    args.variants = names
    from train.config import load_config

    # the preset (with the overrides) pretrains a causal LM before `medim`: the baseline does it for all variants
    args.shared_pretraining = (
        "baseline" in names and load_config(args.config, list(args.override)).pretrain.enabled
    )
    return args


def corpus_dir(args, work: Path) -> Path:
    return Path(args.corpus).resolve() if args.corpus else work / "corpus"


def shares_pretraining(args, name: str) -> bool:
    """A variant other than the baseline adapts the baseline's pretraining export instead of pretraining again."""
    return name != "baseline" and args.shared_pretraining


def training_command(args, name: str, work: Path) -> list[str]:
    """`python -m train all ...` for one variant (baseline tokenizers and pretraining reused by the others)."""
    overrides = [f"output_dir={work / name}", f"seed={args.seed}", f"data.root={corpus_dir(args, work)}"]
    if args.max_steps:
        overrides.append(f"optim.max_steps={args.max_steps}")
    if args.max_minutes:
        overrides.append(f"optim.max_minutes={args.max_minutes}")
    if name != "baseline" and "baseline" in args.variants:
        overrides += [
            f"tokenizer.path={work / 'baseline' / 'text_tokenizer'}",
            f"vq.path={work / 'baseline' / 'image_tokenizer'}",
        ]
    overrides += VARIANTS[name][1] + list(args.override)
    if shares_pretraining(args, name):
        # the medim stage alone, adapting the baseline's pretrained LM (the tokenizers come with it)
        overrides.append(f"model.init_from={work / 'baseline' / 'pretrain'}")
        return [sys.executable, "-m", "train", "medim", "--config", args.config, *overrides]
    return [sys.executable, "-m", "train", "all", "--config", args.config, *overrides]


def share_cache(work: Path, name: str) -> None:
    """Point a variant's token cache at the baseline's: same tokenizers and corpus, so the same tokens."""
    if name != "baseline":
        link_shared_cache(work / "baseline" / "cache", work / name)


def evaluation_command(args, name: str, work: Path, judge: Path | None) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "medim",
        "evaluate",
        "--checkpoint",
        str(work / name / "medim"),
        "--data",
        str(corpus_dir(args, work)),
        "--split",
        "test",
        "--tasks",
        "report2image,image2report",
        "--limit",
        str(args.eval_limit),
        "--seed",
        str(args.seed),
        "--out",
        str(work / name / "eval"),
        "--no-progress",
    ]
    if judge is not None:
        command += ["--judge", str(judge)]
    if args.inception:
        command += ["--inception", args.inception]
    if args.eval_steps:
        command += ["--steps", str(args.eval_steps)]
    return command


def judge_command(corpus: Path, work: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "medim.metrics.judge",
        "train",
        "--corpus",
        str(corpus),
        "--out",
        str(work / "judge"),
    ]


def _run(command: list[str], dry_run: bool) -> bool:
    print("$ " + shlex.join(command), flush=True)
    if dry_run:
        return True
    return subprocess.run(command, cwd=REPO).returncode == 0


def _value(metrics: dict, path: tuple[str, ...]) -> float | None:
    """Mean over domains of metrics[task]["per_domain"][domain][...path]; None when any domain lacks it."""
    task, *keys = path
    values = []
    for entry in metrics.get(task, {}).get("per_domain", {}).values():
        for key in keys:
            entry = entry.get(key) if isinstance(entry, dict) else None
        if not isinstance(entry, int | float):
            return None
        values.append(float(entry))
    return sum(values) / len(values) if values else None


def comparison_table(rows: list[tuple[str, dict | None, str]]) -> str:
    """Markdown table: one row per (label, metrics or None, status)."""
    columns = REPORT_COLUMNS + IMAGE_COLUMNS
    lines = [
        "| Settings | "
        + " | ".join(title for title, _, _ in columns)
        + " | val loss ↓ (image / report NLL) | training | status |",
        "|" + "---|" * (len(columns) + 4),
    ]
    for label, metrics, status in rows:
        cells = []
        for _, path, digits in columns:
            value = _value(metrics, path) if metrics else None
            cells.append("—" if value is None else f"{value:.{digits}f}")
        training = (metrics or {}).get("training", {})
        steps = training.get("steps")
        train_cell = f"{steps} steps, {training.get('wall_minutes')} min" if steps is not None else "—"
        val = training.get("final_val") or {}
        val_cell = (
            f"{val['val_loss']:.3f} ({val['val_nll_image']:.2f} / {val['val_nll_text']:.2f})"
            if {"val_loss", "val_nll_image", "val_nll_text"} <= set(val)
            else "—"
        )
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {val_cell} | {train_cell} | {status} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    load = LoadRecord()
    work = Path(args.work_dir).resolve()
    if not args.max_steps and not args.max_minutes:
        print("note: no --max-steps/--max-minutes: every variant uses the preset's own budget")
    judge = Path(args.judge) if args.judge else (REPO / "assets" / "judge")
    rows = []
    for name in args.variants:
        label = VARIANTS[name][0]
        export = work / name / "medim"
        metrics_path = work / name / "eval" / "metrics.json"
        if not (args.skip_existing and (export / "medim_config.json").is_file()):
            if not args.dry_run:
                share_cache(work, name)
            if not _run(training_command(args, name, work), args.dry_run):
                rows.append((label, None, "training failed"))
                continue
        if name == args.variants[0] and not (judge / "judge.json").is_file():
            judge = work / "judge"  # no bundled judge: train one on the shared corpus (minutes)
            if not (judge / "judge.json").is_file() and not _run(
                judge_command(corpus_dir(args, work), work), args.dry_run
            ):
                judge = None
        if not (args.skip_existing and metrics_path.is_file()):
            if not _run(evaluation_command(args, name, work, judge), args.dry_run):
                rows.append((label, None, "evaluation failed"))
                continue
        if args.dry_run:
            continue
        metrics = json.loads(metrics_path.read_text())
        info_path = export / "checkpoint_info.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        metrics["training"] = {
            "steps": info.get("steps"),
            "wall_minutes": info.get("wall_minutes"),
            "final_val": info.get("final_val"),
        }
        rows.append((label, metrics, "ok"))
    if args.dry_run:
        return 0
    budget = (
        f"{args.max_steps} steps"
        if args.max_steps
        else (f"{args.max_minutes} minutes" if args.max_minutes else "the preset's budget")
    )
    shared = (
        " The causal-LM pretraining ran once, in the baseline; every other variant's medim stage adapts that same "
        "export, so the variants differ only in the switch."
        if any(shares_pretraining(args, name) for name in args.variants)
        else ""
    )
    description = (
        f"Preset `{args.config}`, seed {args.seed}, budget {budget} per variant (medim stage), shared corpus "
        f"`{shown_path(corpus_dir(args, work))}`; evaluated on the first {args.eval_limit} test pairs (report→image, "
        "image→report). Report metrics are corpus-level (pycocoevalcap); m = mean over the chest X-ray and pathology "
        f"domains. Domain FD and judge F1 use the consistency judge `{shown_path(judge) if judge else 'none'}`; FID/IS "
        "need a local Inception-v3 (— when absent). Validation loss is the eq. 6 loss of the EMA weights at the end "
        "of training (NLL in nats per masked token); training minutes are wall-clock and depend on what else the "
        "machine was doing." + shared
    )
    write_result(
        "ablations",
        "Ablations (Table 4 style)",
        [description, comparison_table(rows)],
        machine_description(),
        Path(args.results),
        load,
    )
    print(f"wrote {args.results}")
    return 0 if all(status == "ok" for _, _, status in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
