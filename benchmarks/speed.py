"""The speed tables in one process and one run: latency (MeDiM vs AR), floor (vs the matmul floor), speedups.

    python -m benchmarks.speed [--checkpoint assets/default] [--threads 2] [--runs 5] [--quality-n 40]
                               [--steps 4 12 24] [--guidance 1.5]

Rows the tables share — the pipeline's default sample per task, guidance and K at batch 1, end to end — are
measured once (`benchmarks.common.shared_timing`) and printed by every table that reports them, so latency.md,
floor.md and speedups.md of one run agree; speed.md lists those rows with their spread and times them again at
the end, which shows how far the machine's speed moved during the run. Every table records the CPU time other
processes used while it was measured and is flagged when the machine was busy.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import floor, latency, speedups
from benchmarks.common import (
    DEFAULT_CHECKPOINT,
    DEFAULT_JUDGE,
    GUIDED_ROWS_SCALE,
    LoadRecord,
    machine_description,
    markdown_table,
    retime_shared,
    shared_timings,
    write_result,
)
from benchmarks.latency import TASK_NAMES

# a shared row re-timed at the end that moved by more than this is printed in bold and warned about
DRIFT_WARNING = 0.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quality-n", type=int, default=40)
    parser.add_argument(
        "--steps", type=int, nargs="+", default=[4, 12, 24], help="K values of the latency table"
    )
    parser.add_argument(
        "--guidance", type=float, default=GUIDED_ROWS_SCALE, help="the guided rows' scale, the default sampler's"
    )
    parser.add_argument("--tasks", nargs="+", default=list(latency.TASKS), choices=latency.TASKS)
    parser.add_argument("--judge", default=str(DEFAULT_JUDGE))
    parser.add_argument(
        "--results", default=None, help="folder for the four files (default benchmarks/results)"
    )
    args = parser.parse_args(argv)
    load = LoadRecord()
    common = ["--checkpoint", args.checkpoint, "--threads", str(args.threads)]
    tasks = ["--tasks", *args.tasks]

    def out(name: str) -> list[str]:
        return ["--out", f"{args.results}/{name}.md"] if args.results else []

    quality = ["--quality-n", str(args.quality_n), "--judge", args.judge, "--guidance", str(args.guidance)]
    latency.main(
        [
            *common,
            *tasks,
            *quality,
            "--runs",
            str(args.runs),
            "--steps",
            *map(str, args.steps),
            *out("latency"),
        ]
    )
    floor.main([*common, "--runs", str(max(10, args.runs)), *out("floor")])
    speedups.main([*common, *tasks, *quality, "--runs", str(args.runs), *out("speedups")])

    again = retime_shared(runs=args.runs)
    rows, drifts = [], []
    for key, timing in sorted(shared_timings().items()):
        _, task, guidance, steps, batch = key
        drift = again[key].median / timing.median
        drifts.append(drift)
        rows.append(
            [
                TASK_NAMES[task],
                guidance,
                steps,
                batch,
                f"{timing.median * 1e3:.3f}",
                f"{timing.spread:.2f}",
                len(timing.seconds),
                f"{again[key].median * 1e3:.3f}",
                f"{drift:.2f}",
            ]
        )
    header = [
        "task",
        "guidance",
        "K",
        "batch",
        "median ms",
        "(max - min) / median",
        "timed runs",
        "re-timed at the end (median ms)",
        "end / first",
    ]
    explanation = (
        "The default sample (`MeDiMPipeline.run` end to end, VQ decode included, first test example), measured "
        "once in this run and printed by every table of it that reports the row: latency.md (MeDiM rows), "
        "floor.md (the report→image sample) and speedups.md (the *default* rows). The last two columns time "
        "the same rows again after all tables: how far the machine's speed moved during the run."
    )
    worst = max((abs(d - 1.0) for d in drifts), default=0.0)
    drift_note = (
        f"Largest change of a shared row between its first timing and the end of the run: {worst:.0%}. Rows of "
        "one table measured minutes apart (a speed-up against the shared default row, MeDiM against AR) can "
        "differ by that much without any change in the code; read only larger differences."
    )
    if worst > DRIFT_WARNING:
        print(f"WARNING: the machine's speed moved by {worst:.0%} during this run", file=sys.stderr)
        drift_note = f"**{drift_note}**"
    path = write_result(
        "speed",
        "Speed tables: one harness, one run",
        [explanation, markdown_table(header, rows), drift_note],
        machine_description(),
        f"{args.results}/speed.md" if args.results else None,
        load,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
