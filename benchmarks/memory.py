"""Peak resident memory (RSS) of the demo app with the default model and of generation at batch 1 and 8.

    python -m benchmarks.memory [--checkpoint assets/default] [--threads 2]

Each measurement is a fresh subprocess that does one thing and reports its own peak RSS
(resource.getrusage(RUSAGE_SELF).ru_maxrss), so nothing earlier in the run inflates it:

- baseline: Python with torch and medim imported;
- app: the Gradio demo built as `python app.py` builds it (threads configured, default checkpoint loaded,
  Blocks created, server started on localhost) plus one streamed report→image generation through its handler;
- generation: `MeDiMPipeline.from_pretrained` + `generate_image` at batch 1 and batch 8 (default K).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

from benchmarks.common import (
    DEFAULT_CHECKPOINT,
    REPO,
    machine_description,
    markdown_table,
    shown_path,
    write_result,
)

CHILD_PREFIX = textwrap.dedent(
    """
    import json, os, resource, sys, time
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    torch.set_num_threads({threads})
    checkpoint = {checkpoint!r}
    report = {report!r}
    def done(**extra):
        print("RESULT " + json.dumps(dict(peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra)))
    """
)

CHILDREN = {
    "baseline (python + torch + medim imported)": """
        import medim.pipeline
        done()
    """,
    "app: demo built, default model loaded, one streamed generation": """
        os.environ["MEDIM_CHECKPOINT"] = checkpoint
        from app.handlers import DemoHandlers
        from app.runtime import ModelManager, configure_threads
        from app.ui import serve_locally
        configure_threads()
        manager = ModelManager()
        manager.get()
        demo, url = serve_locally(DemoHandlers(manager))
        handlers = DemoHandlers(manager)
        for _ in handlers.generate_image(report, 12, 1.0, 0.0, "arccos", 0, False, 1, None):
            pass
        demo.close()
        done()
    """,
    "generation, batch 1": """
        from medim.pipeline import MeDiMPipeline
        pipe = MeDiMPipeline.from_pretrained(checkpoint, device="cpu")
        pipe.generate_image(report, num_samples=1)
        done()
    """,
    "generation, batch 8": """
        from medim.pipeline import MeDiMPipeline
        pipe = MeDiMPipeline.from_pretrained(checkpoint, device="cpu")
        pipe.generate_image(report, num_samples=8)
        done()
    """,
}


def run_child(body: str, checkpoint: str, threads: int, report: str) -> dict:
    """Run one measurement in a fresh interpreter; returns its RESULT dict."""
    code = CHILD_PREFIX.format(threads=threads, checkpoint=checkpoint, report=report) + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=900)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"measurement failed (exit {done.returncode}): {done.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    from benchmarks.common import load_examples

    report = load_examples(1)[0].report
    rows = []
    baseline = None
    for name, body in CHILDREN.items():
        result = run_child(body, args.checkpoint, args.threads, report)
        baseline = baseline or result["peak_mb"]
        rows.append([name, f"{result['peak_mb']:.0f}", f"{result['peak_mb'] - baseline:+.0f}"])
        print(" | ".join(rows[-1]), flush=True)
    table = markdown_table(["process", "peak RSS (MiB)", "vs baseline (MiB)"], rows)
    print(table)
    path = write_result(
        "memory",
        "Peak memory (RSS)",
        [f"Checkpoint: {shown_path(args.checkpoint)}", table],
        machine_description(),
        args.out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
