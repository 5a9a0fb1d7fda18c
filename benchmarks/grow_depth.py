"""Continue the published chain in its own body, or in a deeper one grown from it, at an equal wall budget.

    python -m benchmarks.grow_depth --corpus runs/corpus192 --synthetic-n 192000 --minutes 25 --layers 8

Each arm is a warm start `python -m train medim --config demo-cpu --init-from SOURCE` on the same corpus, seed,
batches and masks, with the same wall budget (the learning rate warms up and anneals by the clock, so each arm
ends annealed):

- `continue`: the source's body as it is (its layers);
- `grown`: `model.backbone.num_hidden_layers=LAYERS model.grow_depth=true`: each source layer is followed by
  copies with zero output projections, so the grown model starts as the source and pays more per step for
  more capacity.

The arms run in turn, never side by side (two heavy jobs on this host halve each other). Scored by the training
run's own validation pass (EMA weights, fixed validation batches): image and report NLL per masked token.
`--reuse` tabulates arms this command already trained into `--runs`. Results: benchmarks/results/grow_depth.md.
The findings (CE-F1, judge F1) of an arm come from `python -m benchmarks.sampler --checkpoint RUNS/depth_<arm>/medim`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import time
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

ARMS = ("continue", "grown")
TASK_WEIGHTS = "{joint: 0.25, report2image: 0.25, image2report: 0.5}"  # the chain's mixture since run 7


def source_layers(source: str) -> int:
    config = json.loads((REPO / source / "medim_config.json").read_text())
    return int(config["backbone"]["num_hidden_layers"])


def arm_dir(arm: str, args) -> Path:
    return Path(args.runs) / f"depth_{arm}"


def arm_command(arm: str, args) -> list[str]:
    grow = (
        [f"model.backbone.num_hidden_layers={args.layers}", "model.grow_depth=true"] if arm == "grown" else []
    )
    return [
        *warm_start_command(args.source),
        *grow,
        f"data.root={args.corpus}",
        f"data.synthetic_n={args.synthetic_n}",
        f"optim.lr={args.lr}",
        f"optim.max_minutes={args.minutes}",
        "logging.tensorboard=false",
        f"diffusion.task_weights={TASK_WEIGHTS}",
        f"output_dir={arm_dir(arm, args)}",
        f"eval.val_every={args.val_every}",
        "eval.val_batches=8",
    ]


def train_arm(arm: str, args) -> None:
    """Train one arm. The token cache (same tokenizers for both arms) is built once and shared."""
    out = arm_dir(arm, args)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if arm != ARMS[0]:
        link_shared_cache(arm_dir(ARMS[0], args) / "cache", out)
    run_logged(arm_command(arm, args), Path(args.runs) / f"depth_{arm}.log", f"arm {arm}")


def read_arm(arm: str, args) -> dict:
    """The arm's validation curve (with the wall minute of each validation step) and its training totals."""
    logs = arm_dir(arm, args) / "logs"
    if not (logs / "val.csv").is_file() or not (logs / "train.csv").is_file():
        raise ValueError(f"{logs} has no val.csv / train.csv: train the arm first (without --reuse)")
    train = list(csv.DictReader((logs / "train.csv").open()))
    minute_at = {int(row["step"]): float(row["minutes"]) for row in train}
    logged = sorted(minute_at)
    curve = []
    for row in csv.DictReader((logs / "val.csv").open()):
        step = int(row["step"])
        nearest = min(logged, key=lambda s: abs(s - step))
        curve.append((step, minute_at[nearest], float(row["val_nll_image"]), float(row["val_nll_text"])))
    from safetensors import safe_open

    exported = arm_dir(arm, args) / "medim"
    config = json.loads((exported / "medim_config.json").read_text())
    last = json.loads((exported / "checkpoint_info.json").read_text())["runs"][-1]
    with safe_open(str(exported / "model.safetensors"), "pt") as weights:
        parameters = sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    return {
        "layers": config["backbone"]["num_hidden_layers"],
        "parameters": parameters,
        "steps": int(last["steps"]),
        "tokens": int(last["tokens_seen"]),
        "minutes": float(train[-1]["minutes"]),
        "curve": curve,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source", default="assets/default", help="the published pipeline (relative to the repository)"
    )
    parser.add_argument("--corpus", required=True, help="synthetic corpus root")
    parser.add_argument("--synthetic-n", type=int, default=192000)
    parser.add_argument("--layers", type=int, default=8, help="depth of the grown arm")
    parser.add_argument("--minutes", type=float, default=25.0, help="wall budget per arm")
    parser.add_argument("--val-every", type=int, default=150)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--reuse", action="store_true", help="tabulate arms this command already trained")
    parser.add_argument("--out", default=str(RESULTS / "grow_depth.md"))
    args = parser.parse_args(argv)
    depth = source_layers(args.source)
    if args.layers <= depth:
        parser.error(f"--layers {args.layers} must exceed the source's {depth}")
    machine = machine_description()
    started = time.time()
    if not args.reuse:
        for arm in ARMS:
            train_arm(arm, args)
    arms = {arm: read_arm(arm, args) for arm in ARMS}
    summary = [
        [
            f"`{arm}`",
            arms[arm]["layers"],
            f"{arms[arm]['parameters'] / 1e6:.2f} M",
            arms[arm]["steps"],
            f"{arms[arm]['tokens'] / 1e6:.1f} M",
            f"{arms[arm]['minutes']:.1f}",
            f"{arms[arm]['curve'][-1][2]:.3f}",
            f"{arms[arm]['curve'][-1][3]:.3f}",
        ]
        for arm in ARMS
    ]
    curves = [
        [f"`{arm}`", step, f"{minute:.1f}", f"{image:.3f}", f"{text:.3f}"]
        for arm in ARMS
        for step, minute, image, text in arms[arm]["curve"]
    ]
    final = {arm: arms[arm]["curve"][-1][2] + arms[arm]["curve"][-1][3] for arm in ARMS}
    better = min(final, key=final.get)
    sections = [
        f"Warm start from `{shown_path(args.source)}` ({depth} layers), "
        f"{args.minutes:g} wall minutes per arm, batch 64, peak lr {args.lr:g} with the cosine following the "
        f"clock, task mixture {TASK_WEIGHTS}, corpus `{args.corpus}`; the arms ran in turn on this host. "
        "Validation NLL in nats per masked token (EMA weights, 8 fixed validation batches, the same for both "
        "arms).",
        "**At the end of the budget**",
        markdown_table(
            ["arm", "layers", "parameters", "steps", "tokens", "minutes", "image NLL", "report NLL"], summary
        ),
        "**Validation curve** (minute: wall time of the training step nearest the validation pass)",
        markdown_table(["arm", "step", "minute", "image NLL", "report NLL"], curves),
        f"Lower image + report NLL at the end: `{better}` ({final[better]:.3f} against "
        f"{max(final.values()):.3f})."
        + ("" if args.reuse else f" Total wall time {(time.time() - started) / 60:.1f} min."),
    ]
    path = write_result(
        "grow_depth",
        "A deeper body grown from the published one, at an equal wall budget",
        sections,
        machine,
        args.out,
    )
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
