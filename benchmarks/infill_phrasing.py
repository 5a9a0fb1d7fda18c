"""Report infill split by where each masked token comes from: which part of the test score a model can reach.

    python -m benchmarks.infill_phrasing --corpus runs/corpus192 --pairs 400

The synthetic test split writes about half of the sentences of every phrase bank that has held-out variants in
phrasings that never occur in the train or validation splits (`medim.data._synthetic_text`), and some of those
use words no training report contains. This benchmark runs the evaluation's 15 %-masked report infill
(`medim.metrics.infill`, the same seed and masks per domain as `python -m medim evaluate`) on the first `--pairs`
pairs of the validation and test splits, and splits each domain's masked report tokens three ways:

- `common`: in a sentence a common template writes (or a section header);
- `held-out, known words`: in a held-out sentence, part of a word that occurs in some training report;
- `novel word`: part of a word no training report contains (the word itself has never been seen).

`ceiling` is the accuracy a model would get with every token of a known word right and every novel-word token
as right as this model gets them: what any model trained on the training split could reach at best. Results:
benchmarks/results/infill_phrasing.md (+ .json).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from benchmarks.common import REPO, RESULTS, machine_description, markdown_table, pinned_threads, write_result

DOMAINS = ("chest_xray", "pathology")
CLASSES = ("common", "held-out, known words", "novel word")
_WORD = re.compile(r"[a-z0-9&]+")


def training_reports(corpus: Path) -> list[str]:
    """Every training report of the corpus."""
    with open(corpus / "train" / "metadata.jsonl", encoding="utf-8") as handle:
        return [json.loads(line)["report"] for line in handle]


def training_words(reports: list[str]) -> set[str]:
    """Every lower-cased word of the training reports."""
    return {word for report in reports for word in _WORD.findall(report.lower())}


def training_token_ids(reports: list[str], tokenizer) -> set[int]:
    """Every text id that occurs in some tokenised training report: the only ids whose input embeddings training
    ever updated."""
    from medim.reports import clean_report_text

    reports = [clean_report_text(report) for report in reports]
    seen: set[int] = set()
    for start in range(0, len(reports), 5000):
        for ids in tokenizer(reports[start : start + 5000], add_special_tokens=False)["input_ids"]:
            seen.update(ids)
    return seen


def token_classes(report: str, domain: str, tokenizer, known: set[str], limit: int) -> list[tuple[int, str]]:
    """(token id, class) of the first ``limit`` tokens of a cleaned report, in sequence order."""
    from medim.metrics.report_form import sentence_origins

    encoded = tokenizer(report, add_special_tokens=False, return_offsets_mapping=True)
    lower = report.lower()
    origins = sentence_origins(report, domain)
    classes = []
    for token, (begin, end) in list(zip(encoded["input_ids"], encoded["offset_mapping"]))[:limit]:
        while begin < end - 1 and report[begin].isspace():  # a word's leading space belongs to the word
            begin += 1
        word_start = begin
        while word_start > 0 and _WORD.fullmatch(lower[word_start - 1]):
            word_start -= 1
        word = _WORD.search(lower, word_start)  # the word this token is part of, if it overlaps one
        in_word = word is not None and word.start() < end and word.end() > begin
        origin = next((o for b, e, o in origins if b <= begin < e), "common")  # headers and spaces: common
        if in_word and word.group() not in known:
            kind = "novel word"
        elif origin == "heldout":
            kind = "held-out, known words"
        elif origin == "common":
            kind = "common"
        else:
            raise ValueError(f"a corpus sentence matches no template: {report[begin:]!r}")
        classes.append((token, kind))
    return classes


def split_infill(pipe, records, known: set[str], seed: int = 0, trained_ids: set[int] | None = None) -> dict:
    """Per domain: the infill accuracy overall and per class, with each class's share of the masked tokens, and
    (given ``trained_ids``) the share of all report tokens whose id no training report contains."""
    from medim.evaluation import infill_as_evaluated, pack_records
    from medim.reports import clean_report_text

    layout, results = pipe.layout, {}
    for domain in DOMAINS:
        rows = [r for r in records if r.domain == domain]
        reports = [clean_report_text(r.report) for r in rows]  # the text the tokenizer's offsets refer to
        sequences = pack_records(pipe, rows).cpu()
        masked, correct, _ = infill_as_evaluated(pipe, sequences, "text", seed=seed)
        counts = {kind: [0, 0] for kind in CLASSES}
        text = layout.text_slice
        for row, report in enumerate(reports):
            classes = token_classes(report, domain, pipe.text_tokenizer, known, layout.text_tokens)
            ids = sequences[row, text][: len(classes)].tolist()
            if ids != [token for token, _kind in classes]:
                raise RuntimeError(f"the offsets tokenisation differs from the packed report {rows[row].id}")
            for offset, (_token, kind) in enumerate(classes):
                if masked[row, text.start + offset]:
                    counts[kind][0] += int(correct[row, text.start + offset])
                    counts[kind][1] += 1
        total = sum(n for _c, n in counts.values())
        right = sum(c for c, _n in counts.values())
        novel_right, novel = counts["novel word"]
        report_ids = sequences[:, text][sequences[:, text] != layout.pad_id].tolist()
        results[domain] = {
            "pairs": len(rows),
            "untrained_ids": (
                sum(token not in trained_ids for token in report_ids) / len(report_ids)
                if trained_ids
                else None
            ),
            "masked": total,
            "accuracy": right / total,
            "classes": {
                kind: {"share": n / total, "accuracy": c / n if n else None}
                for kind, (c, n) in counts.items()
            },
            "ceiling": (total - novel + novel_right) / total,
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.infill_phrasing", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", default=str(REPO / "assets" / "default"))
    parser.add_argument("--corpus", required=True, help="synthetic corpus root with train/, val/ and test/")
    parser.add_argument("--pairs", type=int, default=400, help="first pairs of each split (the evaluation's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "infill_phrasing.md"))
    args = parser.parse_args(argv)
    pinned_threads(args.threads)
    from medim.evaluation import load_eval_dataset
    from medim.pipeline import MeDiMPipeline

    corpus = Path(args.corpus)
    machine = machine_description()
    pipe = MeDiMPipeline.from_pretrained(args.checkpoint)
    reports = training_reports(corpus)
    known = training_words(reports)
    trained_ids = training_token_ids(reports, pipe.text_tokenizer)
    results = {}
    for split in ("val", "test"):
        dataset = load_eval_dataset(corpus, split)
        records = [dataset[i] for i in range(min(args.pairs, len(dataset)))]
        results[split] = split_infill(pipe, records, known, trained_ids=trained_ids)
        print(f"[infill_phrasing] {split}: {json.dumps(results[split])}", flush=True)
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")

    def cell(entry: dict) -> str:
        accuracy = "–" if entry["accuracy"] is None else f"{entry['accuracy']:.3f}"
        return f"{accuracy} ({entry['share']:.1%})"

    header = [
        "split",
        "domain",
        "masked tokens",
        "accuracy",
        *[f"{k}: accuracy (share)" for k in CLASSES],
        "ceiling",
        "report tokens with an id no training report contains",
    ]
    rows = [
        [
            split,
            domain,
            entry["masked"],
            f"{entry['accuracy']:.3f}",
            *[cell(entry["classes"][kind]) for kind in CLASSES],
            f"{entry['ceiling']:.3f}",
            f"{entry['untrained_ids']:.1%}",
        ]
        for split, per_domain in results.items()
        for domain, entry in per_domain.items()
    ]
    sections = [
        f"Checkpoint `{Path(args.checkpoint).name}` (sha256 {pipe.checkpoint_hash[:12]}), the first {args.pairs} "
        f"pairs of each split of `{args.corpus}`, 15 % of each report's tokens masked, seed 0 per domain (the "
        f"masks of `python -m medim evaluate`); {len(known):,} distinct words in the training reports, written "
        f"with {len(trained_ids):,} of the text tokenizer's {len(pipe.text_tokenizer):,} ids. An id no training "
        "report contains has an input embedding that training never updated.",
        markdown_table(header, rows),
    ]
    write_result(
        "infill_phrasing", "Report infill by where the masked token comes from", sections, machine, args.out
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
