"""Stage `tokenizer`: train a BPE on the training reports (or copy an existing HF tokenizer) into
<output_dir>/text_tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from train.config import TrainConfig
from train.data import ensure_corpus, load_split, split_reports


def _warm_start_part(config: TrainConfig, name: str) -> str | None:
    """<model.init_from>/<name>: a warm start keeps the source's tokenizers, so its ids keep their meaning."""
    return str(Path(config.model.init_from) / name) if config.model.init_from else None


def run(config: TrainConfig) -> Path:
    from medim.tokenizers.text import load_text_tokenizer, train_bpe_tokenizer

    out = config.out / "text_tokenizer"
    source = config.tokenizer.path or _warm_start_part(config, "text_tokenizer")
    if source:
        tokenizer = load_text_tokenizer(source)
    else:
        ensure_corpus(config)
        dataset = load_split(config, config.data.train_split)
        reports = split_reports(dataset)
        tokenizer = train_bpe_tokenizer(
            reports, vocab_size=config.tokenizer.vocab_size, min_frequency=config.tokenizer.min_frequency
        )
    tokenizer.save_pretrained(out)
    stats = report_length_stats(config, tokenizer)
    (out / "length_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(f"text tokenizer: {len(tokenizer)} ids -> {out}; report tokens {stats}")
    return out


def report_length_stats(config: TrainConfig, tokenizer, limit: int = 2000) -> dict:
    dataset = load_split(config, config.data.val_split)
    count = min(limit, len(dataset))
    if count == 0:
        return {}
    reports = split_reports(dataset)[:count]
    lengths = np.array([len(ids) for ids in tokenizer(reports, add_special_tokens=False)["input_ids"]])
    return {
        "reports": int(count),
        "mean": float(lengths.mean()),
        "p95": float(np.percentile(lengths, 95)),
        "p99": float(np.percentile(lengths, 99)),
        "max": int(lengths.max()),
        "over_budget": float((lengths > config.data.max_text_tokens).mean()),
    }
