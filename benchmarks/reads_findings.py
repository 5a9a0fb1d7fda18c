"""What the denoiser reads from a scan: linear probes for each finding on its hidden states, against the same
probe on the scan's VQ codes and the findings its written reports name.

    python -m benchmarks.reads_findings [--checkpoint assets/default] --corpus CORPUS [--train-pairs 1600]

Each scan goes in as image→report generation starts: its codes visible, the whole report [MASK] at t ≈ 1. A
logistic regression per finding (balanced classes, as benchmarks/tokenizer.py) is fitted on training pairs and
scored (macro-F1) on validation pairs, on (a) the one-hot codes, (b) the hidden states at the image positions,
mean-pooled, (c) the hidden states at the masked report positions, mean-pooled: what the model has read by the
time it starts writing. Set beside the CE macro-F1 of its generated reports (benchmarks/results/sampler_*.md),
a probe far above that CE says the findings are in the model and are lost in the writing; a probe near it says
the model does not read them from the scan.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, domain_records, machine_description, markdown_table, write_result
from benchmarks.tokenizer import linear_probe, one_hot

DOMAINS = ("chest_xray", "pathology")


def features(pipe, records, batch_size: int = 64) -> dict[str, np.ndarray]:
    """One-hot codes and the two pooled hidden-state views of each record's scan."""
    import torch

    from medim.diffusion import get_schedule

    layout = pipe.layout
    codes = pipe.encode_images([r.image for r in records])
    t_value = float(get_schedule(pipe.noise_schedule_name).t_for_mask_probability(torch.tensor(0.999)))
    image_rows, text_rows = [], []
    model = pipe.model.eval()
    with torch.no_grad():
        for start in range(0, len(records), batch_size):
            chunk = codes[start : start + batch_size]
            sequences = layout.blank(len(chunk))
            sequences[:, layout.image_slice] = chunk + layout.image_offset
            hidden = model.hidden_states(sequences, torch.full((len(chunk),), t_value))
            image_rows.append(hidden[:, layout.image_slice].mean(1))
            text_rows.append(hidden[:, layout.text_slice].mean(1))
    return {
        "codes": one_hot(codes.numpy(), layout.codebook_size),
        "image": torch.cat(image_rows).numpy(),
        "report": torch.cat(text_rows).numpy(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reads_findings", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", default="assets/default")
    parser.add_argument("--corpus", required=True, help="synthetic corpus root with train/ and val/ splits")
    parser.add_argument("--train-pairs", type=int, default=1600, help="training pairs per domain")
    parser.add_argument("--val-pairs", type=int, default=200, help="validation pairs per domain")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "reads_findings.md"))
    args = parser.parse_args(argv)
    import torch

    from medim.evaluation import load_eval_dataset
    from medim.pipeline import MeDiMPipeline

    torch.set_num_threads(args.threads)
    machine = machine_description()
    pipe = MeDiMPipeline.from_pretrained(args.checkpoint, device="cpu")
    train, val = load_eval_dataset(args.corpus, "train"), load_eval_dataset(args.corpus, "val")
    rows = []
    for domain in DOMAINS:
        fit = domain_records(train, domain, args.train_pairs)
        held = domain_records(val, domain, args.val_pairs)
        names = sorted(fit[0].labels)
        truth = {
            part: np.array([[int(r.labels[n] == 1) for n in names] for r in records])
            for part, records in (("fit", fit), ("held", held))
        }
        fit_x, held_x = features(pipe, fit), features(pipe, held)
        scores = {
            view: linear_probe(fit_x[view], truth["fit"], held_x[view], truth["held"]) for view in fit_x
        }
        rows.append(
            [
                domain,
                len(names),
                f"{scores['codes']:.3f}",
                f"{scores['image']:.3f}",
                f"{scores['report']:.3f}",
            ]
        )
        print(f"[reads_findings] {' | '.join(map(str, rows[-1]))}", flush=True)
    header = [
        "domain",
        "findings",
        "probe on the one-hot codes",
        "probe on hidden states, image positions",
        "probe on hidden states, masked report positions",
    ]
    write_result(
        "reads_findings",
        "What the denoiser reads from a scan",
        [
            f"Checkpoint sha256 {pipe.checkpoint_hash[:12]}; logistic regression per finding fitted on the first "
            f"{args.train_pairs} training pairs per domain, macro-F1 on the first {args.val_pairs} validation pairs "
            "per domain; scans in as image→report generation starts (report all [MASK], t at 99.9 % masked).",
            markdown_table(header, rows),
        ],
        machine,
        out=Path(args.out),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
