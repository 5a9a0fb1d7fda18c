"""How a warm start onto a new image tokenizer should start its fresh image-code rows, at an equal step count.

    python -m benchmarks.image_code_init --corpus runs/corpus192 --synthetic-n 192000 \
        --image-tokenizer assets/candidates/patch_kmeans16 --steps 120

Each arm is `python -m train medim --config demo-cpu --init-from SOURCE model.new_image_codes=true
model.image_code_init=ARM` on the same corpus, tokenizer, seed, batches and masks, for the same number of steps
(the learning rate follows the steps, not the clock, so a busy machine changes the wall time but not the run):

- `random`: the fresh rows are i.i.d. at the scale of the source's image rows;
- `codebook`: half of each row's variance is a fixed random projection of its code's vector in the new tokenizer's
  codebook (a patch centre for `vq.kind=patch_kmeans`), so codes that draw alike start alike.

Scored by the training run's own validation pass (the EMA weights on fixed validation batches): image and report
NLL per masked token at every validation step. `--reuse` tabulates arms already trained by this command into
`--runs` instead of training them again. Results: benchmarks/results/image_code_init.md.
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
from pathlib import Path

from benchmarks.common import (
    REPO,
    RESULTS,
    link_shared_cache,
    machine_description,
    markdown_table,
    run_logged,
    shown_path,
    warm_start_command,
    write_result,
)

ARMS = ("random", "codebook")


def arm_command(arm: str, args) -> list[str]:
    return [
        *warm_start_command(args.source),
        "model.new_image_codes=true",
        f"model.image_code_init={arm}",
        f"data.root={args.corpus}",
        f"data.synthetic_n={args.synthetic_n}",
        f"optim.lr={args.lr}",
        "logging.tensorboard=false",
        "diffusion.task_weights={joint: 0.3, report2image: 0.35, image2report: 0.35}",
        f"output_dir={Path(args.runs) / f'k16_{arm}'}",
        f"optim.max_steps={args.steps}",
        "optim.max_minutes=600",  # the steps end the run, so the schedule follows them
        f"eval.val_every={args.val_every}",
        "eval.val_batches=8",
        "eval.save_every=1000",
    ]


def train_arm(arm: str, args) -> float:
    """Train one arm; returns its wall minutes. The token cache is built once and shared."""
    out = Path(args.runs) / f"k16_{arm}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copytree(args.image_tokenizer, out / "image_tokenizer")
    if arm != ARMS[0]:
        link_shared_cache(Path(args.runs) / f"k16_{ARMS[0]}" / "cache", out)
    return run_logged(arm_command(arm, args), Path(args.runs) / f"k16_{arm}.log", f"arm {arm}")


def validation_rows(arm: str, args) -> list[dict[str, str]]:
    path = Path(args.runs) / f"k16_{arm}" / "logs" / "val.csv"
    if not path.is_file():
        raise ValueError(f"{path} is missing: train the arm first (without --reuse)")
    return list(csv.DictReader(path.open()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", default=str(REPO / "assets" / "default"), help="the published pipeline")
    parser.add_argument("--corpus", required=True, help="synthetic corpus root")
    parser.add_argument("--synthetic-n", type=int, default=192000)
    parser.add_argument("--image-tokenizer", required=True, help="the new image tokenizer's directory")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--val-every", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--reuse", action="store_true", help="tabulate arms this command already trained")
    parser.add_argument("--out", default=str(RESULTS / "image_code_init.md"))
    args = parser.parse_args(argv)
    from medim.tokenizers.image import load_image_tokenizer

    codes = load_image_tokenizer(args.image_tokenizer).codebook_size
    machine = machine_description()
    minutes = {arm: None if args.reuse else train_arm(arm, args) for arm in ARMS}
    curves = {arm: validation_rows(arm, args) for arm in ARMS}
    steps = [row["step"] for row in curves[ARMS[0]]]
    header = ["step", *[f"{arm}: image / report NLL" for arm in ARMS], "codebook - random (image)"]
    rows = []
    for index, step in enumerate(steps):
        cells = [curves[arm][index] for arm in ARMS]
        image = [float(cell["val_nll_image"]) for cell in cells]
        rows.append(
            [
                step,
                *[f"{float(c['val_nll_image']):.3f} / {float(c['val_nll_text']):.3f}" for c in cells],
                f"{image[1] - image[0]:+.3f}",
            ]
        )
    final = {arm: float(curves[arm][-1]["val_nll_image"]) for arm in ARMS}
    better = min(final, key=final.get)
    sections = [
        f"Warm start from `{shown_path(args.source)}` onto `{shown_path(args.image_tokenizer)}`, {args.steps} steps "
        f"per arm (batch 64, peak lr {args.lr:g}, 50 warm-up steps, cosine over the steps), corpus "
        f"`{args.corpus}`. Validation NLL "
        "in nats per masked token (EMA weights, 8 fixed validation batches); a uniform guess over the "
        f"{codes:,} image codes scores {math.log(codes):.3f}.",
        markdown_table(header, rows),
        f"Lower image NLL after {steps[-1]} steps: `{better}` ({final[better]:.3f} vs "
        f"{max(final.values()):.3f})."
        + (
            ""
            if args.reuse
            else " Wall minutes per arm: " + ", ".join(f"{a} {m:.1f}" for a, m in minutes.items()) + "."
        ),
    ]
    path = write_result(
        "image_code_init", "Fresh image-code rows: random or from the codebook", sections, machine, args.out
    )
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
