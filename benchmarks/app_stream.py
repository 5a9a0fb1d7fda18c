"""Time from pressing Generate in the demo to the first streamed step, through the app's own handler.

    python -m benchmarks.app_stream [--checkpoint assets/default] [--threads 2] [--runs 5] [--steps 12]

Calls `DemoHandlers.generate_image` (what the Generate button runs) with the default settings and records when
its first live frame (step 1: denoising pass, sampler, VQ decode of the current guess, rendering) is yielded and
when the run finishes. Browser transport and drawing are not included (a local round trip adds a few ms).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from benchmarks.common import (
    DEFAULT_CHECKPOINT,
    GUIDED_ROWS_SCALE,
    machine_description,
    markdown_table,
    pinned_threads,
    write_result,
)


def press_generate(handlers, report: str, steps: int, guidance: float) -> tuple[float, float]:
    """(seconds to the first streamed step, seconds to the finished run) for one press."""
    start = time.perf_counter()
    first = None
    for index, _update in enumerate(
        handlers.generate_image(report, steps, 1.0, guidance, "arccos", 0, False, 1, None)
    ):
        if index == 1:  # update 0 is the "starting…" status, update 1 the first sampled step
            first = time.perf_counter() - start
    return first, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    pinned_threads(args.threads)
    from app.handlers import DemoHandlers
    from app.runtime import ModelManager
    from benchmarks.common import load_examples

    handlers = DemoHandlers(ModelManager(args.checkpoint))
    report = load_examples(1)[0].report
    rows = []
    for guidance in (0.0, GUIDED_ROWS_SCALE):  # unguided, and the default's own guidance
        press_generate(handlers, report, args.steps, guidance)  # warm-up (first call loads the model)
        presses = [press_generate(handlers, report, args.steps, guidance) for _ in range(args.runs)]
        first = statistics.median(p[0] for p in presses)
        total = statistics.median(p[1] for p in presses)
        rows.append(
            [
                f"report→image, K={args.steps}, guidance {guidance}",
                f"{first * 1e3:.0f}",
                "yes" if first <= 0.5 else "no",
                f"{total * 1e3:.0f}",
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
    table = markdown_table(["press", "first step shown (ms, median)", "≤ 0.5 s", "whole run (ms)"], rows)
    print(table)
    path = write_result(
        "app_stream", "Demo: Generate → first streamed step", [table], machine_description(), args.out
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
