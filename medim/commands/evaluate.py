"""`python -m medim evaluate --checkpoint DIR --split test --tasks report2image,image2report,pair --out DIR`.

Writes metrics.json, report.md (tables laid out like the paper's Tables 1–3), figures/ and samples/.
"""

from __future__ import annotations

import os
from pathlib import Path

from medim.commands._common import add_unknown_words_argument, set_threads
from medim.paths import shown_path

DEFAULT_JUDGE = Path(__file__).resolve().parents[2] / "assets" / "judge"


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from error


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(name, help="evaluate a checkpoint on report→image, image→report and pairs")
    parser.add_argument(
        "--checkpoint", help="local directory or hub id (default: $MEDIM_CHECKPOINT or assets/default)"
    )
    parser.add_argument(
        "--data",
        help="corpus root (<data>/<split>/metadata.jsonl), split folder or manifest "
        "(default: the corpus named in the checkpoint's train_config.yaml)",
    )
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--tasks",
        default="report2image,image2report,pair",
        help="comma-separated subset of report2image,image2report,pair",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--limit", type=int, help="evaluate the first N pairs of the split")
    parser.add_argument(
        "--pair-samples", type=int, help="unconditional pairs to generate (default: as many as pairs)"
    )
    parser.add_argument(
        "--steps-sweep", type=_int_list, default=(), help="e.g. 4,8,12: domain FD and CE-F1 vs K"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="samples per sampler call (max 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--judge", help=f"consistency judge directory (default: {DEFAULT_JUDGE} when present)"
    )
    parser.add_argument("--inception", help="local Inception-v3 (TorchScript or torch.export) for FID/IS")
    parser.add_argument("--vlm-judge", help="local Hugging Face VLM (e.g. Qwen2-VL) for pair consistency")
    parser.add_argument(
        "--text-metrics", default="coco,nltk", help="coco (pycocoevalcap, needs Java), nltk, or both"
    )
    parser.add_argument("--threads", type=int, help="CPU threads (default: all available cores)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true")
    add_unknown_words_argument(parser)
    group = parser.add_argument_group("sampling (defaults come from the checkpoint's sampler_config.json)")
    group.add_argument("--steps", type=int)
    group.add_argument("--temperature", type=float)
    group.add_argument("--guidance-scale", type=float)
    group.add_argument("--schedule", choices=["arccos", "cosine", "linear"])
    parser.set_defaults(func=run)


def run(args) -> int:
    from medim.evaluation import (
        EvaluationSettings,
        Evaluator,
        default_corpus,
        load_eval_dataset,
        write_outputs,
    )
    from medim.metrics.text import JavaNotFoundError, require_java

    settings = EvaluationSettings(
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
        limit=args.limit,
        batch_size=args.batch_size,
        seed=args.seed,
        steps_sweep=args.steps_sweep,
        text_metrics=tuple(t.strip() for t in args.text_metrics.split(",") if t.strip()),
        pair_samples=args.pair_samples,
        sampler={
            "steps": args.steps,
            "temperature": args.temperature,
            "guidance_scale": args.guidance_scale,
            "schedule": args.schedule,
        },
    )
    if "image2report" in settings.tasks and "coco" in settings.text_metrics:
        try:  # fail before minutes of generation, not after
            require_java("METEOR and the PTB tokenizer")
        except JavaNotFoundError as error:
            raise ValueError(str(error)) from error
    set_threads(args.threads)
    from medim.pipeline import MeDiMPipeline, resolve_checkpoint

    checkpoint = resolve_checkpoint(args.checkpoint)
    data = args.data or default_corpus(checkpoint)
    if data is None:
        raise ValueError(f"no --data given and no corpus recorded beside {checkpoint}: pass --data DIR")
    dataset = load_eval_dataset(data, args.split)
    from medim.data.synthetic import corpus_recipe

    # On the synthetic corpus the generated reports can be checked against the templates that wrote it.
    settings.report_form = corpus_recipe(data) is not None
    count = min(len(dataset), settings.limit or len(dataset))
    records = [dataset[index] for index in range(count)]

    judge = None
    judge_dir = args.judge or (
        shown_path(DEFAULT_JUDGE) if (DEFAULT_JUDGE / "judge.json").is_file() else None
    )
    if judge_dir:
        from medim.metrics.judge import ConsistencyJudge

        judge = ConsistencyJudge.load(judge_dir)
    inception = None
    if args.inception:
        from medim.metrics.images import load_inception

        inception = load_inception(args.inception)
    vlm = None
    if "pair" in settings.tasks and args.vlm_judge:
        from medim.metrics.consistency import load_vlm_judge

        vlm, message = load_vlm_judge(args.vlm_judge, args.device)
        if message:
            print(message)

    pipe = MeDiMPipeline.from_pretrained(checkpoint, device=args.device)
    pipe.unknown_words = args.unknown_words
    out = Path(args.out)
    evaluator = Evaluator(
        pipe,
        records,
        settings,
        judge=judge,
        inception=inception,
        vlm=vlm,
        samples_dir=out / "samples",
        progress=not args.no_progress,
    )
    metrics = evaluator.run()
    source = os.fspath(getattr(dataset, "source", data))
    metrics["data"].update({"source": source, "split": args.split})
    from medim.data.synthetic import corpus_recipe

    recipe = corpus_recipe(source)
    if recipe is not None:
        metrics["data"]["corpus_command"] = recipe["command"]
    if getattr(args, "command_line", None):
        metrics["command"] = args.command_line
    written = write_outputs(metrics, evaluator, out)
    for message in metrics["skipped"]:
        print(f"note: {message}")
    print(f"wrote {written['metrics']} and {written['report']}")
    return 0
