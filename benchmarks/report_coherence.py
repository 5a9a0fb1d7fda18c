"""Do generated reports repeat or contradict themselves? Read from the image→report samples `medim evaluate` wrote.

    python -m benchmarks.report_coherence --samples docs/evaluation/default/samples/image2report.jsonl

The well-formed-sentence share (`medim.metrics.report_form.report_form`) checks sentences one by one, so a report
that says a sentence twice, or writes "Right middle lobe consolidation." and later "No consolidation is seen.",
passes it. `medim.metrics.report_form.report_coherence` counts those reports per domain: repeated (one sentence
written twice, word for word) and contradictory (a finding stated in one sentence and denied in another, by the
finding labeler on each sentence). The reference reports of the same pairs are scored beside them, as the rate
the corpus itself has. No model runs here. Results: benchmarks/results/report_coherence.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.common import REPO, RESULTS, machine_description, markdown_table, shown_path, write_result

DEFAULT_SAMPLES = REPO / "docs" / "evaluation" / "default" / "samples" / "image2report.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report_coherence", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--samples",
        default=str(DEFAULT_SAMPLES),
        help="image2report.jsonl written by `medim evaluate` (id, domain, reference, generated per line)",
    )
    parser.add_argument("--out", default=str(RESULTS / "report_coherence.md"))
    args = parser.parse_args(argv)
    from medim.metrics.report_form import report_coherence

    path = Path(args.samples)
    if not path.is_file():
        parser.error(
            f"{path} not found: run `python -m medim evaluate ... --out DIR` and pass DIR/samples/image2report.jsonl"
        )
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    domains = [row["domain"] for row in rows]
    scores = {
        "generated": report_coherence([row["generated"] for row in rows], domains),
        "reference": report_coherence([row["reference"] for row in rows], domains),
    }
    print(f"[report_coherence] {json.dumps(scores)}", flush=True)
    table = [
        [
            domain,
            entry[domain]["n"],
            which,
            f"{entry[domain]['repeated']:.3f}",
            f"{entry[domain]['contradictory']:.3f}",
        ]
        for domain in sorted(scores["generated"])
        for which, entry in scores.items()
    ]
    header = ["domain", "pairs", "reports", "repeat a sentence", "contradict themselves"]
    sections = [f"Samples: `{shown_path(path)}` ({len(rows)} pairs).", markdown_table(header, table)]
    write_result(
        "report_coherence",
        "Generated reports that repeat or contradict themselves",
        sections,
        machine_description(),
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
