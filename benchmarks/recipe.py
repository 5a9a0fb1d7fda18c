"""Recipe search: train each variant for the same wall-clock budget, score it on the validation split.

    python -m benchmarks.recipe --minutes 7 --corpus runs/corpus \
        --text-tokenizer runs/tok/text_tokenizer --image-tokenizer runs/tok/image_tokenizer

Every variant is `python -m train medim --config demo-cpu <overrides>` with `optim.max_minutes` set to the budget
and the learning-rate schedule following the clock (so each run ends annealed however fast it steps), on the same
corpus, tokenizers and seed. The scores are quick proxies of what the evaluation measures, all on the
**validation** split (the test split is for the final evaluation only):

- report / image infill: top-1 accuracy at 15 % masked real report tokens (resp. image tokens), the rest of the
  pair visible (`medim.metrics.infill`);
- image→report CE macro-F1 per domain: labeler findings of generated reports vs the reference report's;
- report→image judge macro-F1 per domain: the bundled judge's reading of generated images vs the report's
  findings; both at the checkpoint's default sampler.

The load average before and after each run is in the table: a run that shared the CPU stepped fewer times.
Results: benchmarks/results/recipe.md (+ recipe.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks.common import (
    REPO,
    RESULTS,
    chosen,
    load_judge,
    machine_description,
    markdown_table,
    run_logged,
    write_result,
)

# Bodies spelled out, so a variant means the same whatever the preset's current body is.
BODY_256 = [
    "model.backbone.hidden_size=256",
    "model.backbone.intermediate_size=704",
    "model.backbone.head_dim=64",
]
BODY_192 = [
    "model.backbone.hidden_size=192",
    "model.backbone.intermediate_size=512",
    "model.backbone.head_dim=48",
]
# name -> (overrides on top of the common ones, what it tests); {minutes} / {half} stand for the budget / half of it
VARIANTS: dict[str, tuple[list[str], str]] = {
    "base": (BODY_256, "4 x 256 body (3.3 M non-embedding), batch 64, lr 2e-3, eq. 6 (ELBO) loss"),
    "masked_mean": (
        [*BODY_256, "diffusion.loss_normalisation=masked_mean"],
        "masked NLL averaged over the masked positions (no 1/t spikes)",
    ),
    "deep": (
        [*BODY_256, "model.backbone.num_hidden_layers=6"],
        "6 x 256 body (4.9 M): fewer tokens per parameter",
    ),
    "small": (BODY_192, "4 x 192 body (1.8 M): more steps"),
    "small_pretrain": (
        [*BODY_192, "pretrain.max_minutes={half}", "optim.max_minutes={half}"],
        "4 x 192 body: half the budget as a causal LM (every token scored), then adapted (mask off, AdaLN-Zero)",
    ),
    "lr_high": ([*BODY_256, "optim.lr=4e-3"], "peak lr 4e-3"),
    "batch_small": ([*BODY_256, "optim.batch_size=32"], "batch 32: twice the steps"),
    "no_joint": (
        [*BODY_256, "diffusion.task_weights={joint: 0.0, report2image: 0.5, image2report: 0.5}"],
        "conditional tasks only",
    ),
}


def expand(override: str, minutes: float) -> str:
    """A variant's override with {minutes} / {half} filled in (plain replacement: YAML braces stay as they are)."""
    return override.replace("{minutes}", f"{minutes:g}").replace("{half}", f"{minutes / 2:g}")


def common_overrides(args) -> list[str]:
    from train.data import corpus_overrides

    return [
        f"data.root={args.corpus}",
        *corpus_overrides(args.corpus),  # the saved configs then name the corpus the variants read
        f"tokenizer.path={args.text_tokenizer}",
        f"vq.path={args.image_tokenizer}",
        f"optim.max_minutes={args.minutes}",
        "optim.max_steps=100000",
        "pretrain.max_minutes=null",  # only the variants that test pretraining spend budget on it
        "pretrain.max_steps=0",
        "optim.schedule_by_clock=true",
        f"threads={args.threads}",
        "eval.val_every=100000",
        "eval.sample_every=0",
        "eval.save_every=100000",
        "logging.tensorboard=false",
    ]


def _loadavg() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def train_variant(name: str, overrides: list[str], args) -> tuple[Path, dict]:
    out = Path(args.runs) / name
    if out.exists():
        shutil.rmtree(out)
    shared_cache = Path(args.runs) / "_cache"
    command = [
        sys.executable,
        "-m",
        "train",
        "all",
        "--config",
        args.config,
        *common_overrides(args),
        f"output_dir={out}",
        *(expand(item, args.minutes) for item in overrides),
    ]
    out.mkdir(parents=True)
    if shared_cache.is_dir():  # every variant tokenises the same pairs the same way
        shutil.copytree(shared_cache, out / "cache")
    before = _loadavg()
    started = time.time()
    run_logged(command, out / "train.log", f"variant {name}")
    if not shared_cache.is_dir():
        shutil.copytree(out / "cache", shared_cache)
    info = json.loads((out / "medim" / "checkpoint_info.json").read_text())
    chain = [run for run in info.get("runs") or [] if run.get("objective") == "causal_lm"] + [info]
    return out / "medim", {
        "wall_minutes": (time.time() - started) / 60,
        "load_before": before,
        "load_after": _loadavg(),
        # a pretrained variant's steps and tokens include its causal-LM run
        "steps": sum(run["steps"] for run in chain),
        "tokens_seen": sum(run["tokens_seen"] for run in chain),
        "val_loss": (info.get("final_val") or {}).get("val_loss"),
    }


def score(checkpoint: Path, corpus: Path, eval_pairs: int, infill_pairs: int, judge, seed: int = 0) -> dict:
    """The validation proxies of one checkpoint (see the module docstring)."""
    import torch

    from medim.evaluation import finding_scores, load_eval_dataset
    from medim.metrics.infill import infill_accuracy
    from medim.pipeline import MeDiMPipeline
    from train.data import open_cache

    pipe = MeDiMPipeline.from_pretrained(checkpoint, device="cpu")
    cache = open_cache(checkpoint.parent / "cache" / "val")
    rows = list(range(min(infill_pairs, len(cache))))
    sequences = pipe.layout.pack(
        torch.from_numpy(cache.text_ids[rows].astype("int64")),
        torch.from_numpy(cache.image_codes[rows].astype("int64")),
    )
    schedule = pipe.noise_schedule_name
    scores = {
        "report_infill": infill_accuracy(pipe.model, sequences, "text", schedule=schedule, seed=seed)[
            "accuracy"
        ],
        "image_infill": infill_accuracy(pipe.model, sequences, "image", schedule=schedule, seed=seed)[
            "accuracy"
        ],
    }
    dataset = load_eval_dataset(corpus, "val")
    records = [dataset[i] for i in range(min(eval_pairs, len(dataset)))]
    scores.update(finding_scores(pipe, records, judge, seed=seed))
    return scores


def _with_chance(scores: dict, name: str, domain: str) -> str:
    value, chance = scores.get(f"{name}/{domain}"), scores.get(f"{name}_chance/{domain}")
    if value is None:
        return "-"
    return f"{value:.3g} ({chance:.3g})" if chance is not None else f"{value:.3g} (-)"


def _table(results: dict) -> str:
    domains = ("chest_xray", "pathology")
    header = [
        "variant",
        "what it tests",
        "steps",
        "tokens (M)",
        "val loss",
        "report infill",
        "image infill",
        *[f"CE-F1 {d}" for d in domains],
        *[f"judge F1 {d}" for d in domains],
        "load before/after",
    ]
    rows = []
    for name, entry in results.items():
        run, s = entry["run"], entry["scores"]
        rows.append(
            [
                name,
                entry["note"],
                run["steps"],
                run["tokens_seen"] / 1e6,
                run["val_loss"] if run["val_loss"] is not None else "-",
                s["report_infill"],
                s["image_infill"],
                *[s.get(f"ce_f1/{d}", "-") for d in domains],
                *[_with_chance(s, "judge_f1", d) for d in domains],
                f"{run['load_before']} / {run['load_after']}",
            ]
        )

    def first(key: str):
        values = [entry["scores"].get(key) for entry in results.values()]
        return next((value for value in values if value is not None), float("nan"))

    chance_line = (
        "Chance levels on the same pairs: CE-F1 of a real report of another patient of the domain "
        + ", ".join(f"{d} {first(f'ce_f1_chance/{d}'):.3f}" for d in domains)
        + "; judge F1 of each variant's images against another report of the domain is in brackets (the "
        "judge chance depends on the images, so it is per variant; '-' where it was not recorded)."
    )
    best = max(results, key=lambda name: results[name]["scores"]["report_infill"])
    chance_line += (
        f"\n\nHighest report infill at this budget: `{best}` "
        f"({results[best]['scores']['report_infill']:.3f})."
    )
    return markdown_table(header, rows) + "\n\n" + chance_line


def _write(results: dict, args, machine) -> None:
    sections = [
        f"Each variant: `python -m train all --config {args.config} {' '.join(common_overrides(args))} "
        "<overrides>`; scored on the first "
        f"{args.eval_pairs} validation pairs (infill on {args.infill_pairs}), seed 0, default sampler.",
        "## Validation proxies at an equal wall budget",
        _table(results),
        "Overrides per variant: "
        + "; ".join(f"`{n}`: {' '.join(r['overrides']) or '(none)'}" for n, r in results.items()),
    ]
    write_result(
        "recipe", f"Recipe search: {args.minutes:g} minutes per variant", sections, machine, args.out
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recipe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=7.0, help="wall budget per variant")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    parser.add_argument("--config", default="demo-cpu", help="the preset the variants modify")
    parser.add_argument("--corpus", required=True, help="synthetic corpus root (train/ and val/ splits)")
    parser.add_argument("--text-tokenizer", required=True)
    parser.add_argument("--image-tokenizer", required=True)
    parser.add_argument("--runs", default="runs/recipe", help="where the variants train")
    parser.add_argument("--eval-pairs", type=int, default=100)
    parser.add_argument("--infill-pairs", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--judge", default=str(REPO / "assets" / "judge"))
    parser.add_argument("--out", default=str(RESULTS / "recipe.md"))
    args = parser.parse_args(argv)
    names = chosen(parser, args.variants, VARIANTS, "variants")
    import torch

    torch.set_num_threads(args.threads)
    judge = load_judge(Path(args.judge))
    machine = machine_description()
    json_path = Path(args.out).with_suffix(".json")
    results = json.loads(json_path.read_text()) if json_path.is_file() else {}
    for name in names:
        overrides, note = VARIANTS[name]
        print(f"[recipe] {name}: training {args.minutes} min ({note})", flush=True)
        checkpoint, run = train_variant(name, overrides, args)
        print(f"[recipe] {name}: {run['steps']} steps; scoring on val", flush=True)
        scores = score(checkpoint, Path(args.corpus), args.eval_pairs, args.infill_pairs, judge)
        results[name] = {"note": note, "overrides": overrides, "run": run, "scores": scores}
        print(f"[recipe] {name}: {json.dumps(scores)}", flush=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        _write(results, args, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
