"""How much each direction reads the other modality: the per-token log-likelihood of one modality's true tokens
given the true partner, against the same pair with the partner of another pair of the same domain.

    python -m benchmarks.partner_gain [--checkpoint assets/default] --corpus CORPUS [--pairs 150] [--split val]

The gain (nats per token) is an estimate of how much the denoiser uses the image to write the report, and the
report to draw the image; 0 means the partner is ignored. Masked fractions 0.15 (infill) and 0.99 (the first step
of generation). One denoiser pass per condition, no sampling.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import RESULTS, machine_description, write_result

DOMAINS = ("chest_xray", "pathology")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.partner_gain", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", default="assets/default")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--pairs", type=int, default=150, help="pairs per domain")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "partner_gain.md"))
    args = parser.parse_args(argv)
    import torch

    from medim.evaluation import load_eval_dataset
    from medim.metrics.infill import infill_accuracy
    from medim.pipeline import MeDiMPipeline

    torch.set_num_threads(args.threads)
    machine = machine_description()
    pipe = MeDiMPipeline.from_pretrained(args.checkpoint, device="cpu")
    layout = pipe.layout
    dataset = load_eval_dataset(args.corpus, args.split)
    rows = []
    for domain in DOMAINS:
        records = [r for r in (dataset[i] for i in range(len(dataset))) if r.domain == domain][: args.pairs]
        text_ids, _ = pipe.encode_reports([r.report for r in records])
        codes = pipe.encode_images([r.image for r in records])
        other = torch.roll(torch.arange(len(records)), 1)  # each pair's partner taken from the previous pair
        true = layout.pack(text_ids, codes)
        # the scored modality is the same in both sequences, so the same seed masks the same positions of it
        for modality, name, swapped in (
            ("text", "report given image", layout.pack(text_ids, codes[other])),
            ("image", "image given report", layout.pack(text_ids[other], codes)),
        ):
            for fraction in (0.15, 0.99):
                given_true, given_other = (
                    infill_accuracy(
                        pipe.model, sequences, modality, fraction=fraction, schedule=pipe.noise_schedule_name
                    )
                    for sequences in (true, swapped)
                )
                rows.append(
                    [
                        domain,
                        name,
                        f"{fraction:.2f}",
                        f"{given_true['log_likelihood']:.3f}",
                        f"{given_other['log_likelihood']:.3f}",
                        f"{given_true['log_likelihood'] - given_other['log_likelihood']:.3f}",
                        f"{given_true['accuracy']:.3f}",
                        f"{given_other['accuracy']:.3f}",
                    ]
                )
                print(f"[partner_gain] {' | '.join(rows[-1])}", flush=True)
    header = [
        "domain",
        "tokens scored",
        "masked fraction",
        "log-lik/token, true partner",
        "another pair's partner",
        "gain (nats/token)",
        "top-1, true partner",
        "another's",
    ]
    table = "\n".join(
        [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows),
        ]
    )
    write_result(
        "partner_gain",
        "How much each direction reads its partner",
        [
            f"Checkpoint sha256 {pipe.checkpoint_hash[:12]}, first {args.pairs} {args.split} pairs per domain, "
            "masks seed 0; the other pair's partner is the previous pair's of the same domain.",
            table,
        ],
        machine,
        out=Path(args.out),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
