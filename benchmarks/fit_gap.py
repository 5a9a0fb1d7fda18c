"""Does the denoiser fit its training pairs better than new ones? Masked-token log-likelihood and top-1 on pairs
it trained on, on pairs of the same generator split it never saw, and on validation pairs.

    python -m benchmarks.fit_gap [--checkpoint assets/default] --corpus CORPUS --seen 45600 [--pairs 200]

`--seen` is how many training pairs (in corpus order) the checkpoint's runs read: the rows past it, in a larger
corpus from the same generator and seed, are training-split pairs it has never seen. A gap between the first two
columns is memorisation, which more training pairs would close; no gap means the data is not what limits the
model at this size. One denoiser pass per set and masked fraction, no sampling.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import RESULTS, domain_records, machine_description, markdown_table, write_result

DOMAINS = ("chest_xray", "pathology")
FRACTIONS = (0.15, 0.5, 0.9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fit_gap", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", default="assets/default")
    parser.add_argument("--corpus", required=True, help="synthetic corpus root with train/ and val/ splits")
    parser.add_argument("--seen", type=int, required=True, help="training pairs the checkpoint read")
    parser.add_argument("--pairs", type=int, default=200, help="pairs per domain and set")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "fit_gap.md"))
    args = parser.parse_args(argv)
    import torch

    from medim.evaluation import load_eval_dataset
    from medim.metrics.infill import infill_accuracy
    from medim.pipeline import MeDiMPipeline

    torch.set_num_threads(args.threads)
    machine = machine_description()
    pipe = MeDiMPipeline.from_pretrained(args.checkpoint, device="cpu")
    train, val = load_eval_dataset(args.corpus, "train"), load_eval_dataset(args.corpus, "val")
    if len(train) < args.seen + 2 * args.pairs:
        raise ValueError(
            f"{args.corpus} has {len(train)} training pairs: none past --seen {args.seen} to compare"
        )
    sets = {"trained on": (train, 0), "never seen (train split)": (train, args.seen), "validation": (val, 0)}
    rows = []
    for domain in DOMAINS:
        sequences = {}
        for name, (dataset, start) in sets.items():
            records = domain_records(dataset, domain, args.pairs, start)
            text_ids, _ = pipe.encode_reports([r.report for r in records])
            sequences[name] = pipe.layout.pack(text_ids, pipe.encode_images([r.image for r in records]))
        for modality in ("text", "image"):
            for fraction in FRACTIONS:
                scores = {
                    name: infill_accuracy(
                        pipe.model, seqs, modality, fraction=fraction, schedule=pipe.noise_schedule_name
                    )
                    for name, seqs in sequences.items()
                }
                seen, unseen = (scores[n]["log_likelihood"] for n in list(sets)[:2])
                rows.append(
                    [domain, "report" if modality == "text" else "image", f"{fraction:.2f}"]
                    + [f"{s['log_likelihood']:.3f} / {s['accuracy']:.3f}" for s in scores.values()]
                    + [f"{seen - unseen:+.3f}"]
                )
                print(f"[fit_gap] {' | '.join(rows[-1])}", flush=True)
    header = ["domain", "tokens scored", "masked fraction"]
    header += [f"{name}: log-lik/token / top-1" for name in sets] + ["gap, trained − never seen (nats)"]
    write_result(
        "fit_gap",
        "Fit to the training pairs against new pairs",
        [
            f"Checkpoint sha256 {pipe.checkpoint_hash[:12]}; {args.pairs} pairs per domain and set: training rows "
            f"from 0 (read in training), training rows from {args.seen} (never read), validation rows from 0. "
            "The other modality is visible; masks seed 0, the same positions in every set.",
            markdown_table(header, rows),
        ],
        machine,
        out=Path(args.out),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
