"""`python -m medim synthesize --n N --out DIR`: export generated image–report pairs (images + pairs.jsonl).

Indices 0..N-1 are generated in fixed blocks of ``--batch-size`` (block b uses seed ``seed + b`` and always
samples a full batch), so a pair's content depends only on its index, the checkpoint and the settings — not on
how the work was split or on N. The run is

- **resumable**: indices whose image and record already exist are skipped (a half-written block is redone and
  only its missing indices are written);
- **sharded** across processes started by ``accelerate launch --multi_gpu --num_processes P -m medim synthesize
  ...`` (accelerate's torchrun launcher; it also starts CPU-only workers, which then join a gloo group —
  ``accelerate launch --cpu`` starts several processes only through MPI): process r takes the blocks b with
  ``b % P == r`` and appends to its own ``parts/pairs.rank<r>.jsonl``; after all processes finish, the main
  one merges every part into ``pairs.jsonl`` (sorted by id) and checks no index is missing.

Output (the shared generated-pairs format): ``DIR/images/<id>.png`` and ``DIR/pairs.jsonl`` with
``{"id", "image", "report", "domain", "source": {"system", "checkpoint", "settings"}}``, plus
``DIR/synthesis.json`` recording the settings a resumed run must match.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from medim.commands._common import set_threads

SETTINGS_NAME = "synthesis.json"


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(name, help="export generated image–report pairs (resumable, shardable)")
    parser.add_argument("--n", type=int, required=True, help="number of pairs (indices 0..n-1)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--checkpoint", help="local directory or hub id (default: $MEDIM_CHECKPOINT or assets/default)"
    )
    parser.add_argument("--prompt", help="start of every report to keep fixed (default: unconditional)")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per sampler call (1-64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--guidance-scale", type=float)
    parser.add_argument("--threads", type=int, help="CPU threads per process (default: cores / processes)")
    parser.add_argument("--device", help="default: this process's accelerate device")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def pair_id(index: int) -> str:
    return f"{index:06d}"


def blocks_for_rank(n: int, batch_size: int, rank: int, world_size: int) -> list[range]:
    """The index blocks process ``rank`` of ``world_size`` generates: block b = [b*B, min((b+1)*B, n)),
    assigned round-robin (b % world_size == rank). Together the ranks cover 0..n-1 exactly once."""
    if n < 0 or batch_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"bad sharding: n={n}, batch_size={batch_size}, rank={rank}, world_size={world_size}"
        )
    return [
        range(start, min(start + batch_size, n))
        for block, start in enumerate(range(0, n, batch_size))
        if block % world_size == rank
    ]


def existing_records(out: Path) -> dict[str, dict]:
    """Records already written (pairs.jsonl and every part file) whose image exists; torn lines are ignored."""
    records: dict[str, dict] = {}
    sources = [out / "pairs.jsonl", *sorted((out / "parts").glob("pairs.rank*.jsonl"))]
    for path in sources:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interrupted run
                continue
            if isinstance(record, dict) and "id" in record and (out / record.get("image", "")).is_file():
                records.setdefault(str(record["id"]), record)
    return records


def _check_settings(out: Path, expected: dict, is_main: bool) -> None:
    path = out / SETTINGS_NAME
    if path.is_file():
        recorded = json.loads(path.read_text())
        different = sorted(k for k in expected if recorded.get(k) != expected[k])
        if different:
            raise ValueError(
                f"{out} holds pairs generated with other settings ({', '.join(different)} differ: "
                f"{ {k: recorded.get(k) for k in different} } vs { {k: expected[k] for k in different} }); "
                "use another --out"
            )
    elif is_main:
        temporary = path.with_suffix(".tmp")  # other processes may read it at any moment
        temporary.write_text(json.dumps(expected, indent=2) + "\n")
        os.replace(temporary, path)


def merge_parts(out: Path, n: int) -> list[int]:
    """Merge all records into pairs.jsonl (sorted by id); returns the indices in 0..n-1 still missing."""
    records = existing_records(out)
    temporary = out / "pairs.jsonl.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        for key in sorted(records):
            handle.write(json.dumps(records[key]) + "\n")
    os.replace(temporary, out / "pairs.jsonl")
    return [index for index in range(n) if pair_id(index) not in records]


def run(args) -> int:
    from accelerate import PartialState

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if not 1 <= args.batch_size <= 64:
        raise ValueError(f"--batch-size must be in [1, 64], got {args.batch_size}")
    import torch

    # cpu=True lets accelerate form a gloo process group when the processes were launched without GPUs
    state = PartialState(cpu=args.device == "cpu" or not torch.cuda.is_available())
    cores = len(os.sched_getaffinity(0))
    set_threads(args.threads or max(1, cores // state.num_processes))
    from medim.metrics.labeler import infer_domain
    from medim.pipeline import MeDiMPipeline

    pipe = MeDiMPipeline.from_pretrained(args.checkpoint, device=args.device or str(state.device))
    overrides = {"steps": args.steps, "temperature": args.temperature, "guidance_scale": args.guidance_scale}
    sampler = pipe.sampler_settings(None, overrides, task="pair")
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "parts").mkdir(exist_ok=True)
    expected = {
        "checkpoint_sha256": pipe.checkpoint_hash,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "prompt": args.prompt,
        "sampler": sampler.to_dict(),
    }
    _check_settings(out, expected, state.is_main_process)

    done = set(existing_records(out))
    todo = [
        block
        for block in blocks_for_rank(args.n, args.batch_size, state.process_index, state.num_processes)
        if any(pair_id(i) not in done for i in block)
    ]
    from tqdm.auto import tqdm

    bar = tqdm(
        total=sum(len(b) for b in todo),
        desc=f"synthesize [rank {state.process_index}]",
        unit="pair",
        file=sys.stderr,
        disable=args.no_progress,
        position=state.process_index,
    )
    part = out / "parts" / f"pairs.rank{state.process_index}.jsonl"
    written = 0
    with open(part, "a", encoding="utf-8") as handle:
        for block in todo:
            block_index = block.start // args.batch_size
            # always a full block, so index i's pair does not depend on --n (a larger --n extends a run)
            result = pipe.run(
                "pair",
                prompt=args.prompt,
                num_samples=args.batch_size,
                seed=args.seed + block_index,
                sampler_config=sampler,
            )
            for offset, index in enumerate(block):
                key = pair_id(index)
                if key in done:
                    continue
                image_path = out / "images" / f"{key}.png"
                temporary = image_path.with_suffix(".tmp.png")
                result.images[offset].save(temporary)
                os.replace(temporary, image_path)  # a record never points at a half-written image
                report = result.reports[offset]
                record = {
                    "id": key,
                    "image": f"images/{key}.png",
                    "report": report,
                    "domain": infer_domain(report),
                    "source": {
                        "system": "medim",
                        "checkpoint": str(pipe.info.get("path")),
                        "settings": {
                            **sampler.to_dict(),
                            "checkpoint_sha256": pipe.checkpoint_hash,
                            "seed": args.seed + block_index,
                            "batch_size": args.batch_size,
                            "index_in_batch": offset,
                            "prompt": args.prompt,
                        },
                    },
                }
                handle.write(json.dumps(record) + "\n")
                handle.flush()
                written += 1
            bar.update(len(block))
    bar.close()
    state.wait_for_everyone()
    if not state.is_main_process:
        return 0
    missing = merge_parts(out, args.n)
    if missing:
        raise ValueError(
            f"{len(missing)} of {args.n} pairs are missing after the run (e.g. {missing[:5]}): "
            "run the same command again to resume"
        )
    print(
        f"{args.n} pairs in {out / 'pairs.jsonl'} ({written} written by the main process, "
        f"{state.num_processes} process(es))"
    )
    return 0
