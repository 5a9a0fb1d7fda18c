"""Numbers about the embedded data and tokenizers: corpus statistics, VQ reconstruction, labeler accuracy.

    python -m benchmarks.data_report [--corpus runs/demo-cpu/corpus] [--checkpoint assets/default]
                                     [--vq-images 600] [--out FILE (default benchmarks/results/data.md)]

- corpus: pairs per split and domain, finding frequencies (ground truth from the generator), report length in
  words and in the checkpoint's text tokens, distinct sentences, and test sentences never seen in train;
- VQ: PSNR, code usage and perplexity of the checkpoint's image tokenizer on held-out (test) images;
- labeler: micro/macro F1 of `medim.metrics.labeler.label_report` on the test reports against the generator's
  ground-truth labels, per domain.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.common import DEFAULT_CHECKPOINT, machine_description, write_result

REPO = Path(__file__).resolve().parent.parent
SENTENCE = re.compile(r"(?<=[.!?])\s+")


def read_split(corpus: Path, split: str) -> list[dict]:
    path = corpus / split / "metadata.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} not found: write the corpus with `python -m medim.data.synthetic`")
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def sentences(report: str) -> list[str]:
    return [s.strip() for s in SENTENCE.split(report.replace("IMPRESSION:", ". IMPRESSION:")) if s.strip()]


def corpus_statistics(splits: dict[str, list[dict]], tokenizer) -> list[str]:
    lines = ["## Corpus", "", "| split | chest_xray | pathology |", "|---|---|---|"]
    for split, records in splits.items():
        counts = Counter(r["domain"] for r in records)
        lines.append(f"| {split} | {counts['chest_xray']} | {counts['pathology']} |")
    train, test = splits["train"], splits["test"]
    lines += ["", "Finding frequencies in train (fraction of the domain's pairs; ground truth):", ""]
    lines += ["| domain | finding | frequency |", "|---|---|---|"]
    for domain in ("chest_xray", "pathology"):
        records = [r for r in train if r["domain"] == domain]
        names = sorted({name for r in records for name in r["labels"]})
        for name in names:
            freq = np.mean([r["labels"][name] == 1 for r in records])
            lines.append(f"| {domain} | {name} | {freq:.3f} |")
    lines += [
        "",
        "| domain | words: mean / p50 / p90 / max | text tokens: mean / p90 / p99 / max | distinct "
        "train sentences | test sentences unseen in train |",
        "|---|---|---|---|---|",
    ]
    for domain in ("chest_xray", "pathology"):
        reports = [r["report"] for r in train if r["domain"] == domain]
        words = np.array([len(r.split()) for r in reports])
        tokens = np.array([len(tokenizer.encode(r).ids) for r in reports])
        seen = {s for r in reports for s in sentences(r)}
        test_sentences = [s for r in test if r["domain"] == domain for s in sentences(r["report"])]
        unseen = np.mean([s not in seen for s in test_sentences])
        lines.append(
            f"| {domain} | {words.mean():.1f} / {np.percentile(words, 50):.0f} / {np.percentile(words, 90):.0f} / "
            f"{words.max()} | {tokens.mean():.1f} / {np.percentile(tokens, 90):.0f} / "
            f"{np.percentile(tokens, 99):.0f} / {tokens.max()} | {len(seen)} | {unseen:.3f} |"
        )
    return lines


def vq_statistics(corpus: Path, checkpoint: Path, records: list[dict], n: int) -> list[str]:
    import torch
    from PIL import Image

    from medim.data.preprocess import to_model_tensor
    from medim.tokenizers.image import load_image_tokenizer
    from medim.tokenizers.vq_training import evaluate_vq

    tokenizer = load_image_tokenizer(checkpoint / "image_tokenizer").eval()
    size = tokenizer.image_size
    lines = [
        "## VQ image tokenizer (held-out test images)",
        "",
        "| domain | images | PSNR (dB) | code usage | perplexity |",
        "|---|---|---|---|---|",
    ]
    for domain in ("chest_xray", "pathology"):
        chosen = [r for r in records if r["domain"] == domain][: n // 2]
        tensors = [to_model_tensor(Image.open(corpus / "test" / r["image"]), size) for r in chosen]
        batches = [torch.stack(tensors[i : i + 50]) for i in range(0, len(tensors), 50)]
        stats = evaluate_vq(tokenizer, batches)
        lines.append(
            f"| {domain} | {stats['num_images']} | {stats['psnr']:.2f} | {stats['codebook_usage']:.3f} | "
            f"{stats['perplexity']:.1f} |"
        )
    lines += ["", f"Codebook size {tokenizer.codebook_size}, image size {size}."]
    return lines


def labeler_statistics(records: list[dict]) -> list[str]:
    from medim.metrics.clinical import clinical_efficacy, domain_findings
    from medim.metrics.labeler import label_report

    lines = [
        "## Finding labeler (test reports vs generator ground truth)",
        "",
        "| domain | reports | micro F1 | macro F1 | exact match |",
        "|---|---|---|---|---|",
    ]
    for domain in ("chest_xray", "pathology"):
        chosen = [r for r in records if r["domain"] == domain]
        predicted = [label_report(r["report"], domain) for r in chosen]
        scores = clinical_efficacy(predicted, [r["labels"] for r in chosen], domain_findings(domain))
        lines.append(
            f"| {domain} | {len(chosen)} | {scores['f1_micro']:.3f} | {scores['f1_macro']:.3f} | "
            f"{scores['exact_match']:.3f} |"
        )
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "runs" / "demo-cpu" / "corpus")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--vq-images", type=int, default=600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch
    from tokenizers import Tokenizer

    torch.set_num_threads(args.threads)
    splits = {split: read_split(args.corpus, split) for split in ("train", "val", "test")}
    tokenizer = Tokenizer.from_file(str(Path(args.checkpoint) / "text_tokenizer" / "tokenizer.json"))
    sections = [
        "\n".join(corpus_statistics(splits, tokenizer)),
        "\n".join(vq_statistics(args.corpus, Path(args.checkpoint), splits["test"], args.vq_images)),
        "\n".join(labeler_statistics(splits["test"])),
    ]
    path = write_result("data", "Embedded data and tokenizers", sections, machine_description(), args.out)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
