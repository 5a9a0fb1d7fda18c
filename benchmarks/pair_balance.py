"""Unconditional image–report pairs per sampler setting: which domains they fall in, and how well each holds together.

    python -m benchmarks.pair_balance --corpus runs/corpus192 --pairs 400 --settings default,confidence-max

The training corpus is half chest films, half pathology patches, and the model's marginals with nothing given are
too (its first report token: "FINDINGS" 0.45; image positions: grey codes 0.52 of the mass). A pair sampler that
leans to one domain is the sampler's doing. For each setting: the share of pairs per domain (the domain read from
the generated report), and per domain the judge macro-F1 of the image against its own report, the share of images
the judge reads as the report's domain, and the domain Fréchet distance (judge features) to the first `--pairs`
**validation** images of that domain. Results: benchmarks/results/pair_balance.md (+ .json).
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
    pinned_threads,
    write_result,
)

DOMAINS = ("chest_xray", "pathology")
# setting -> (sampler overrides for the pair task, what it tests)
SETTINGS = {
    "default": ({}, "the checkpoint's sampler_config.json"),
    "confidence-max": ({"confidence": "max"}, "rank positions by their most likely token, not the drawn one"),
    "one-code-group-off": ({"one_code_group": False}, "image codes from either range"),
}


def pair_scores(pipe, records, judge, sampler: dict, count: int, seed: int = 0, batch_size: int = 50) -> dict:
    """Domain counts and per-domain consistency of ``count`` unconditional pairs (`Evaluator.pair`)."""
    from medim.evaluation import EvaluationSettings, Evaluator

    settings = EvaluationSettings(
        tasks=("pair",),
        batch_size=batch_size,
        seed=seed,
        text_metrics=("nltk",),
        sampler=sampler,
        pair_samples=count,
    )
    result = Evaluator(pipe, records, settings, judge=judge, progress=False).pair()
    scores = {"n": count, "seconds_per_pair": result["seconds_per_sample"]}
    for domain in DOMAINS:
        entry = result["per_domain"].get(domain, {})
        consistency = entry.get("consistency", {})
        fd = entry.get("domain_fd") or {}
        scores[domain] = {
            "n": entry.get("n", 0),
            "judge_f1": consistency.get("f1_macro"),
            "domain_agreement": consistency.get("domain_agreement"),
            "domain_fd": fd.get("value"),
        }
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pair_balance", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", default=str(REPO / "assets" / "default"))
    parser.add_argument("--corpus", required=True, help="synthetic corpus root with a val/ split")
    parser.add_argument("--pairs", type=int, default=400, help="pairs per setting (and validation images)")
    parser.add_argument("--settings", default="default,confidence-max")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--judge", default=str(REPO / "assets" / "judge"))
    parser.add_argument("--out", default=str(RESULTS / "pair_balance.md"))
    args = parser.parse_args(argv)
    names = chosen(parser, args.settings, SETTINGS, "settings")
    pinned_threads(args.threads)
    from medim.evaluation import load_eval_dataset
    from medim.pipeline import MeDiMPipeline

    machine = machine_description()
    dataset = load_eval_dataset(args.corpus, "val")
    records = [dataset[i] for i in range(min(args.pairs, len(dataset)))]
    judge = load_judge(Path(args.judge))
    pipe = MeDiMPipeline.from_pretrained(args.checkpoint, device="cpu")
    results = {}
    for name in names:
        results[name] = pair_scores(pipe, records, judge, SETTINGS[name][0], args.pairs, seed=args.seed)
        print(f"[pair_balance] {name}: {json.dumps(results[name])}", flush=True)
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")

    def shown(value, digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    header = ["setting", "what it tests", "chest / pathology pairs"]
    for domain in DOMAINS:
        header += [f"judge F1 {domain}", f"image shows the domain, {domain}", f"domain FD {domain}"]
    rows = []
    for name, entry in results.items():
        row = [name, SETTINGS[name][1], f"{entry['chest_xray']['n']} / {entry['pathology']['n']}"]
        for domain in DOMAINS:
            d = entry[domain]
            row += [shown(d["judge_f1"]), shown(d["domain_agreement"]), shown(d["domain_fd"], 0)]
        rows.append(row)
    sections = [
        f"Checkpoint `{args.checkpoint}` (sha256 {pipe.checkpoint_hash[:12]}), {args.pairs} unconditional pairs per "
        f"setting, seed {args.seed}, batch 50; each setting overrides the checkpoint's pair sampler. Domain FD "
        f"against the first {len(records)} validation pairs' images of each domain.",
        markdown_table(header, rows),
    ]
    write_result("pair_balance", "Unconditional pairs by sampler setting", sections, machine, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
