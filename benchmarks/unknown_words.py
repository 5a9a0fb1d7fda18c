"""How checkpoints read words they were never trained on, measured on the validation split.

    python -m benchmarks.unknown_words --corpus runs/corpus192 --pairs 400 \
        --checkpoint default=assets/default --checkpoint word-dropout=runs/run11u/medim

The test split's reports write about half of their sentences in held-out phrasings
(`medim.data._synthetic_text`), and a fifth to a third of their tokens hold ids that no training report holds:
ids whose embeddings training never updated. Nothing may be chosen on the test split, so this benchmark makes the
same kind of shift on validation pairs, seeded per pair so that every checkpoint reads the same reports:

- `made-up words`: each word (section headers excepted) is replaced, with probability `--rate`, by made-up
  lower-case letters of the same length. At the default rate of 0.1, 29 % (chest) and 32 % (pathology) of the
  report tokens of validation pairs 0–399 become untrained ids; the test split's shares are 21.5 % and 33.5 %
  ([infill_phrasing.md](results/infill_phrasing.md)).
- `capitalised words`: each lower-case word is capitalised with probability `--rate`, as a held-out sentence that
  starts with another word does (byte-level BPE gives "Pulmonary" and "pulmonary" different ids). These reports
  are read as typed (`respell_reports` off, untrained ids read as written), so the written reports' score minus
  theirs is what the pipeline's reading of conditions gives back; `respelt` is the share of the changed reports
  whose respelt ids (`medim.reports.trained_spelling`) are exactly the written ones. `--respelt` also scores the
  capitalised reports as the pipeline reads them by default (respelt, untrained ids as [MASK]).

Every version but the capitalised one is read as the pipeline reads conditions by default: a report id no training
report held goes into the denoiser as [MASK] (`MeDiMPipeline.unknown_words`; a checkpoint trained with word dropout
reads `<unk>`). `made-up words, read as written` reads the made-up reports through the untrained embedding rows
instead, so the two made-up columns side by side are what that reading gives.

For each checkpoint and domain: report→image judge macro-F1 (the checkpoint's own sampler), and 15 %-masked report
infill accuracy scored only at tokens whose id training held (a made-up word's pieces, which no model can
predict, do not count). Results: benchmarks/results/unknown_words.md (+ .json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import string
import sys
from pathlib import Path

from benchmarks.common import (
    REPO,
    RESULTS,
    load_judge,
    machine_description,
    markdown_table,
    pinned_threads,
    write_result,
)

DOMAINS = ("chest_xray", "pathology")
AS_WRITTEN = "made-up words, read as written"  # the made-up reports through the untrained embedding rows
RESPELT = "capitalised words, respelt"  # --respelt: the capitalised reports as the pipeline reads them
_LETTERS = list(string.ascii_lowercase)


def made_up_words(report: str, rate: float, rng) -> str:
    """``report`` with each word (section headers such as ``FINDINGS:`` excepted) replaced, with probability
    ``rate``, by random lower-case letters of the same length, capitalised like the word; punctuation stays."""
    words = []
    for word in report.split(" "):
        core = word.strip(".,;:!?()")
        if core.isalpha() and not core.isupper() and rng.random() < rate:
            new = "".join(rng.choice(_LETTERS, len(core)))
            word = word.replace(core, new.capitalize() if core[0].isupper() else new, 1)
        words.append(word)
    return " ".join(words)


def capitalised_words(report: str, rate: float, rng) -> str:
    """``report`` with each lower-case word capitalised with probability ``rate``."""
    words = []
    for word in report.split(" "):
        if word[:1].islower() and rng.random() < rate:
            word = word[0].upper() + word[1:]
        words.append(word)
    return " ".join(words)


def with_changed_words(records, change, rate: float, seed: int = 0) -> list:
    """Copies of ``records`` whose reports went through ``change(report, rate, rng)``, pair ``i`` with the
    generator seeded ``(seed, i)``."""
    import numpy as np

    return [
        dataclasses.replace(record, report=change(record.report, rate, np.random.default_rng([seed, i])))
        for i, record in enumerate(records)
    ]


def respelt_share(pipe, written, capitalised) -> float:
    """Of the reports that capitalisation changed, the share whose respelt condition ids are the written ones."""
    import torch

    changed = [(w.report, c.report) for w, c in zip(written, capitalised) if w.report != c.report]
    same = sum(
        bool(torch.equal(pipe.encode_reports([c], respell=True)[0], pipe.encode_reports([w])[0]))
        for w, c in changed
    )
    return same / max(1, len(changed))


def trained_report_ids(pipe, corpus: Path) -> frozenset[int]:
    """The checkpoint's recorded training ids (trained_text_ids.json), else those of the corpus's training
    reports."""
    if pipe.trained_text_ids is not None:
        return pipe.trained_text_ids
    from benchmarks.infill_phrasing import training_reports, training_token_ids

    return frozenset(training_token_ids(training_reports(corpus), pipe.text_tokenizer))


def report_infill(pipe, records, trained: frozenset[int], seed: int = 0) -> dict:
    """Per domain: 15 %-masked report infill accuracy at tokens whose id is in ``trained``, and the share of
    report tokens whose id is not."""
    import torch

    from medim.evaluation import infill_as_evaluated, pack_records
    from medim.vocab import TEXT

    layout, results = pipe.layout, {}
    known = torch.zeros(layout.vocab_size, dtype=torch.bool)
    known[sorted(trained)] = True
    for domain in DOMAINS:
        rows = [r for r in records if r.domain == domain]
        sequences = pack_records(pipe, rows).cpu()
        masked, correct, _ = infill_as_evaluated(pipe, sequences, "text", seed=seed)
        scored = masked & known[sequences]
        words = (layout.position_modality == TEXT)[None] & (sequences != layout.pad_id)
        results[domain] = {
            "infill": int(correct[scored].sum()) / max(1, int(scored.sum())),
            "untrained_ids": int((words & ~known[sequences]).sum()) / max(1, int(words.sum())),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.unknown_words", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        help="NAME=PATH of a pipeline directory (repeat; default: the shipped default)",
    )
    parser.add_argument("--corpus", required=True, help="synthetic corpus root with train/ and val/")
    parser.add_argument("--pairs", type=int, default=400, help="first validation pairs")
    parser.add_argument("--rate", type=float, default=0.1, help="share of words made up or capitalised")
    parser.add_argument(
        "--respelt", action="store_true", help=f"also score '{RESPELT}' (the pipeline's default reading)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--judge", default=str(REPO / "assets" / "judge"))
    parser.add_argument("--out", default=str(RESULTS / "unknown_words.md"))
    args = parser.parse_args(argv)
    if not 0 < args.rate <= 1:
        parser.error(f"--rate must be in (0, 1], got {args.rate}")
    checkpoints = {}
    for entry in args.checkpoint or [f"default={REPO / 'assets' / 'default'}"]:
        name, sep, path = entry.partition("=")
        if not sep or not name or not path:
            parser.error(f"--checkpoint takes NAME=PATH, got {entry!r}")
        checkpoints[name] = path
    pinned_threads(args.threads)
    from medim.evaluation import finding_scores, load_eval_dataset
    from medim.pipeline import MeDiMPipeline

    machine = machine_description()
    dataset = load_eval_dataset(args.corpus, "val")
    written = [dataset[i] for i in range(min(args.pairs, len(dataset)))]
    made_up = with_changed_words(written, made_up_words, args.rate)
    capitalised = with_changed_words(written, capitalised_words, args.rate)
    # version -> (reports, respell conditions, how untrained ids are read)
    versions = {
        "written": (written, True, "mask"),
        "made-up words": (made_up, True, "mask"),
        AS_WRITTEN: (made_up, True, "written"),
        "capitalised words": (capitalised, False, "written"),
    }
    if args.respelt:
        versions[RESPELT] = (capitalised, True, "mask")
    shown = tuple(versions)
    judge = load_judge(Path(args.judge))
    results = {}
    for name, path in checkpoints.items():
        pipe = MeDiMPipeline.from_pretrained(path, device="cpu")
        trained = trained_report_ids(pipe, Path(args.corpus))
        pipe.trained_text_ids = trained  # a checkpoint without trained_text_ids.json respells by its corpus's
        entry = {
            "path": path,
            "sha256": pipe.checkpoint_hash,
            "unknown_word_reading": pipe.unknown_word_reading,
            "respelt": respelt_share(pipe, written, capitalised),
        }
        for version, (records, respell, reading) in versions.items():
            pipe.respell_reports, pipe.unknown_words = respell, reading
            scores = finding_scores(pipe, records, judge, tasks=("report2image",))
            infill = report_infill(pipe, records, trained)
            entry[version] = {
                domain: {
                    "judge_f1": scores[f"judge_f1/{domain}"],
                    "judge_f1_chance": scores[f"judge_f1_chance/{domain}"],
                    **infill[domain],
                }
                for domain in DOMAINS
            }
        results[name] = entry
        print(f"[unknown_words] {name}: {json.dumps(entry)}", flush=True)
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")

    header = [
        "checkpoint",
        "domain",
        *[f"judge F1, {version} (chance)" for version in shown],
        *[f"report infill, {version}" for version in shown],
        "untrained report tokens, made-up words",
    ]
    rows = []
    for name, entry in results.items():
        for domain in DOMAINS:
            scores = [entry[version][domain] for version in shown]
            rows.append(
                [
                    name,
                    domain,
                    *[f"{s['judge_f1']:.3f} ({s['judge_f1_chance']:.3f})" for s in scores],
                    *[f"{s['infill']:.3f}" for s in scores],
                    f"{entry['made-up words'][domain]['untrained_ids']:.1%}",
                ]
            )
    examples = "; ".join(
        f'{name}: "{records[0].report}"'
        for name, records in [("made-up words", made_up), ("capitalised words", capitalised)]
    )
    sections = [
        f"Validation pairs 0–{len(written) - 1} of `{args.corpus}`, seed 0, batch 50, each checkpoint's own "
        f"sampler; words made up or capitalised at rate {args.rate}, seeded per pair; `capitalised words` are read as "
        f"typed (respelling off, untrained ids as written). The first pair: {examples}",
        "\n".join(
            f"- `{name}`: `{entry['path']}` (sha256 {entry['sha256'][:12]}); reads untrained ids "
            + (
                "as written"
                if entry["unknown_word_reading"] == "as written"
                else f"as `{entry['unknown_word_reading']}`"
            )
            + " by default"
            + f"; respelling gives back the written ids of {entry['respelt']:.0%} of the capitalised reports"
            for name, entry in results.items()
        ),
        markdown_table(header, rows),
    ]
    write_result("unknown_words", "Words a checkpoint was never trained on", sections, machine, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
