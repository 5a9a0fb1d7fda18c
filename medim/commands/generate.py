"""`python -m medim generate --task report2image|image2report|pair ... --out DIR`."""

from __future__ import annotations

import json
from pathlib import Path

from medim.commands._common import (
    add_sampler_arguments,
    add_unknown_words_argument,
    sampler_overrides,
    set_threads,
)


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(name, help="generate an image, a report or an image–report pair")
    parser.add_argument("--task", required=True, choices=["report2image", "image2report", "pair"])
    parser.add_argument(
        "--checkpoint", help="local directory or hub id (default: $MEDIM_CHECKPOINT or assets/default)"
    )
    parser.add_argument("--report", help="report text (report2image), or @FILE to read it from a file")
    parser.add_argument("--image", help="PNG/JPEG/DICOM file (image2report)")
    parser.add_argument("--prompt", help="start of the report to keep fixed (pair)")
    parser.add_argument("--out", default="medim-output", help="output directory")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all available cores)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    add_unknown_words_argument(parser)
    add_sampler_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from medim.pipeline import MeDiMPipeline

    set_threads(args.threads)
    pipe = MeDiMPipeline.from_pretrained(args.checkpoint, device=args.device)
    pipe.unknown_words = args.unknown_words
    report, image = args.report, None
    if args.task == "report2image":
        if not report:
            raise ValueError("--task report2image needs --report TEXT (or @FILE)")
        if report.startswith("@"):
            report = Path(report[1:]).read_text()
    if args.task == "image2report":
        if not args.image:
            raise ValueError("--task image2report needs --image FILE")
        from medim.data.io import load_image

        image = load_image(args.image)
    result = pipe.run(
        args.task,
        report=report,
        image=image,
        prompt=args.prompt,
        num_samples=args.num_samples,
        seed=args.seed,
        **sampler_overrides(args),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for index, (picture, text) in enumerate(zip(result.images, result.reports)):
        stem = f"{args.task}_{args.seed}_{index}"
        if args.task != "image2report":
            picture.save(out / f"{stem}.png")
        if args.task != "report2image":
            (out / f"{stem}.txt").write_text(text + "\n")
        records.append(
            {
                "image": f"{stem}.png" if args.task != "image2report" else args.image,
                "report": text if args.task != "report2image" else report,
            }
        )
    meta = {
        "task": args.task,
        "seed": args.seed,
        "settings": result.settings,
        "checkpoint": pipe.info.get("path"),
        "checkpoint_sha256": pipe.checkpoint_hash,
        "warnings": result.warnings,
        "outputs": records,
    }
    (out / "generation.json").write_text(json.dumps(meta, indent=2) + "\n")
    for warning in result.warnings:
        print(f"warning: {warning}")
    for record in records:
        print(json.dumps(record))
    print(f"wrote {len(records)} result(s) to {out}")
    return 0
