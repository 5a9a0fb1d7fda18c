"""Markdown evaluation report: tables laid out like the paper's Tables 1–3 (plus what the paper omits).

Every image-metric column names its feature extractor and every text-metric table says whether it is
corpus-level (pycocoevalcap) or sentence-level (NLTK), so numbers are never mixed with incompatible ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

__all__ = ["markdown_report"]

DOMAIN_TITLES = {"chest_xray": "chest X-ray (synthetic)", "pathology": "pathology (synthetic)"}


def _number(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):
        if "skipped" in value:
            return "—"
        value = value.get("value", value.get("mean"))
        if value is None:
            return "—"
    return f"{value:.{digits}f}"


def _get(entry: dict, *path, default=None):
    for key in path:
        if not isinstance(entry, dict) or key not in entry:
            return default
        entry = entry[key]
    return entry


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def _method(metrics: dict) -> str:
    checkpoint = metrics.get("checkpoint", {})
    kind = checkpoint.get("kind") or "checkpoint"
    sha = (checkpoint.get("sha256") or "")[:8]
    return f"MeDiM ({kind}{', ' + sha if sha else ''})"


def _report2image(metrics: dict) -> list[str]:
    task = metrics["report2image"]
    lines = ["## Report → image (Tables 1–2)", ""]
    for number, (domain, entry) in enumerate(task["per_domain"].items(), start=1):
        lines += [f"**Table {number}: {DOMAIN_TITLES.get(domain, domain)}, n = {entry['n']}**", ""]
        header = [
            "Method",
            "FID ↓",
            "IS ↑",
            "domain FD ↓",
            "judge F1 ↑",
            "judge agreement ↑",
            "exact match ↑",
        ]
        rows = [
            [
                _method(metrics),
                _number(entry.get("fid"), 2),
                _number(entry.get("is"), 2),
                _number(entry.get("domain_fd"), 2),
                *_consistency_cells(entry.get("consistency")),
            ],
            ["Reference images (judge ceiling)", "—", "—", "0 by definition"]
            + _consistency_cells(entry.get("reference_consistency")),
        ]
        if entry.get("chance_consistency"):
            rows.append(
                ["Generated images vs another report of the domain (chance)", "—", "—", "—"]
                + _consistency_cells(entry["chance_consistency"])
            )
        lines += _table(header, rows) + [""]
    lines.append(f"{task['seconds_per_sample']:.3f} s per image (batched). " + _extractor_note(metrics))
    return lines + [""]


def _consistency_cells(consistency: dict | None) -> list[str]:
    """Judge F1, agreement and exact match of a consistency entry (— when missing or skipped)."""
    return [_number(_get(consistency or {}, key)) for key in ("f1_micro", "agreement", "exact_match")]


def _extractor_note(metrics: dict) -> str:
    extractors = metrics.get("feature_extractors", {})
    parts = []
    if extractors.get("inception"):
        inc = extractors["inception"]
        parts.append(f"FID/IS: {inc['name']} ({inc['features']}-d, sha256 {inc['sha256'][:12]})")
    else:
        parts.append("FID/IS: not computed (no local Inception-v3 file)")
    if extractors.get("domain_fd"):
        fd = extractors["domain_fd"]
        parts.append(
            f"domain FD: {fd['name']} ({fd['features']}-d at {fd['image_size']} px, sha256 "
            f"{(fd.get('sha256') or '')[:12]}); not comparable with Inception FID"
        )
    else:
        parts.append("domain FD: not computed (no consistency judge)")
    return "Feature extractors — " + "; ".join(parts) + "."


def _image2report(metrics: dict, samples, records) -> list[str]:
    task = metrics["image2report"]
    domains = list(task["per_domain"])
    lines = ["## Image → report (Table 3)", ""]
    coco = all("coco_bleu_1" in task["per_domain"][d]["text"] for d in domains)
    if coco:
        lines += ["**Table 3: corpus-level metrics (pycocoevalcap, PTB tokenisation)**", ""]
        header = ["Method"] + [
            f"{DOMAIN_TITLES.get(d, d).split(' (')[0]} {m}"
            for d in domains
            for m in ("B-1", "B-2", "B-3", "MTR", "R-L")
        ]
        row = [_method(metrics)]
        for d in domains:
            text = task["per_domain"][d]["text"]
            row += [
                _number(text.get(k))
                for k in ("coco_bleu_1", "coco_bleu_2", "coco_bleu_3", "coco_meteor", "coco_rouge_l")
            ]
        lines += _table(header, [row]) + [""]
        lines += ["Further corpus-level metrics:", ""]
        rows = [
            [
                d,
                _number(task["per_domain"][d]["text"].get("coco_bleu_4")),
                _number(task["per_domain"][d]["text"].get("coco_cider")),
            ]
            for d in domains
        ]
        lines += _table(["domain", "BLEU-4", "CIDEr-D"], rows) + [""]
    if all("nltk_sentence_bleu_1" in task["per_domain"][d]["text"] for d in domains):
        lines += [
            "**Sentence-level BLEU (NLTK `sentence_bleu`, mean over reports, no smoothing)** — only comparable "
            "with papers that average per-report NLTK scores, not with Table 3 above.",
            "",
        ]
        rows = [
            [d] + [_number(task["per_domain"][d]["text"].get(f"nltk_sentence_bleu_{n}")) for n in range(1, 5)]
            for d in domains
        ]
        lines += _table(["domain", "B-1", "B-2", "B-3", "B-4"], rows) + [""]
    lines += [
        "**Clinical efficacy** (labeler findings of generated vs reference reports; uncertain = absent)",
        "",
    ]
    rows = []
    for d in domains:
        entry = task["per_domain"][d]
        ce = entry["ce"]
        rows.append(
            [
                d,
                _number(ce["precision_micro"]),
                _number(ce["recall_micro"]),
                _number(ce["f1_micro"]),
                _number(ce["f1_macro"]),
                _number(_get(entry, "ce_chance", "f1_micro"))
                + " / "
                + _number(_get(entry, "ce_chance", "f1_macro")),
                _number(_get(entry, "ce_vs_labels", "f1_micro")),
                _number(_get(entry, "consistency", "f1_micro")),
                _number(_get(entry, "consistency", "agreement")),
            ]
        )
    lines += _table(
        [
            "domain",
            "P (micro)",
            "R (micro)",
            "F1 (micro)",
            "F1 (macro)",
            "chance F1 (micro / macro)",
            "F1 vs ground-truth labels",
            "judge F1 (input image)",
            "judge agreement",
        ],
        rows,
    ) + [""]
    lines.append(
        "Chance: each reference report scored against another reference of the same domain (mean of 5 seeded "
        "permutations), what a model that writes realistic reports without reading the image would get."
    )
    lines.append("")
    if all("form" in task["per_domain"][d] for d in domains):
        lines += [
            "**Report form** (`medim.metrics.report_form`): the share of generated sentences that are one of "
            "the synthetic corpus's templates with slot values it writes, and of reports whose every sentence is; "
            "the corpus's own reports score 1.000.",
            "",
        ]
        rows = [
            [
                d,
                _number(task["per_domain"][d]["form"]["sentences"]),
                _number(task["per_domain"][d]["form"]["reports"]),
            ]
            for d in domains
        ]
        lines += _table(["domain", "well-formed sentences", "well-formed reports"], rows) + [""]
    lines.append(f"{task['seconds_per_sample']:.3f} s per report (batched).")
    lines.append("")
    if samples and records:
        lines += ["Examples (the first two of each domain):", ""]
        rows, shown = [], Counter()
        for record, generated in zip(records, samples):
            shown[record.domain] += 1
            if shown[record.domain] <= 2:
                rows.append([record.id, record.domain, _cell(record.report), _cell(generated)])
        lines += _table(["id", "domain", "reference", "generated"], rows) + [""]
    return lines


def _cell(text: str, limit: int = 220) -> str:
    """One table cell: printable characters only (an untrained model emits byte-level junk), pipes escaped."""
    text = "".join(c if c.isprintable() else "\ufffd" for c in " ".join(text.split())).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pair(metrics: dict) -> list[str]:
    task = metrics["pair"]
    lines = [
        "## Image–report pairs (Fig. 5a: consistency)",
        "",
        f"{task['n']} unconditional pairs; domain of each pair inferred from its report: "
        + ", ".join(f"{d} {n}" for d, n in sorted(task["domain_counts"].items()))
        + ".",
        "",
    ]
    rows = []
    for domain, entry in task["per_domain"].items():
        rows.append(
            [
                domain,
                str(entry["n"]),
                _number(_get(entry, "consistency", "f1_micro")),
                _number(_get(entry, "consistency", "agreement")),
                _number(_get(entry, "consistency", "domain_agreement")),
                _number(_get(entry, "vlm", "mean_p_yes")),
                _number(entry.get("domain_fd"), 2),
                _number(entry.get("fid"), 2),
            ]
        )
    lines += _table(
        [
            "domain",
            "n",
            "judge F1 ↑",
            "judge agreement ↑",
            "image shows report's domain ↑",
            "VLM P(yes) ↑",
            "domain FD ↓",
            "FID ↓",
        ],
        rows,
    ) + [""]
    lines.append(f"{task['seconds_per_sample']:.3f} s per pair (batched).")
    return lines + [""]


def _sweep(metrics: dict) -> list[str]:
    sweep = metrics["steps_sweep"]
    domains = sorted({d for item in sweep for d in item["domain_fd"]})
    header = (
        ["K"]
        + [f"domain FD {d}" for d in domains]
        + [f"CE-F1 {d}" for d in domains]
        + ["s/image", "s/report"]
    )
    rows = [
        [str(item["steps"])]
        + [_number(item["domain_fd"].get(d), 2) for d in domains]
        + [_number(item["ce_f1"].get(d)) for d in domains]
        + [
            _number(item["seconds_per_sample"]["report2image"]),
            _number(item["seconds_per_sample"]["image2report"]),
        ]
        for item in sweep
    ]
    return ["## Sampling steps vs quality", ""] + _table(header, rows) + [""]


def _infill(infill: dict) -> list[str]:
    fraction = infill.get("fraction", 0.15)
    domains = sorted(
        set(_get(infill, "report", "per_domain", default={}))
        | set(_get(infill, "image", "per_domain", default={}))
    )
    header = ["masked side", "all pairs", *domains, "masked tokens"]
    rows = [
        [
            title,
            _number(_get(infill, key, "accuracy")),
            *[_number(_get(infill, key, "per_domain", domain)) for domain in domains],
            str(_get(infill, key, "masked", default="-")),
        ]
        for key, title in (("report", "report (real tokens)"), ("image", "image codes"))
    ]
    return [
        f"## Infill at {fraction:.0%} masked",
        "",
        f"Top-1 accuracy of one denoiser pass at {fraction:.0%} of one side's tokens masked, the rest of the pair "
        "visible (`medim.metrics.infill`): what the model has learned, without the sampler.",
        "",
        *_table(header, rows),
        "",
    ]


def markdown_report(metrics: dict, *, image2report_samples: Sequence[str] | None = None, records=None) -> str:
    """The evaluation report as Markdown (``metrics`` is what :class:`medim.evaluation.Evaluator` returns)."""
    checkpoint = metrics.get("checkpoint", {})
    settings = metrics.get("settings", {})
    lines = [
        "# MeDiM evaluation",
        "",
        f"- checkpoint: `{checkpoint.get('path')}` ({checkpoint.get('kind')}; sha256 {checkpoint.get('sha256')})",
        f"- data: {metrics.get('data', {}).get('source', '')} split `{metrics.get('data', {}).get('split', '')}`, "
        f"{metrics.get('data', {}).get('n_records')} pairs ({metrics.get('data', {}).get('domains')})",
        f"- sampler: {settings.get('sampler_config')}; batch size {settings.get('batch_size')}, seed "
        f"{settings.get('seed')}",
    ]
    reading = settings.get("unknown_words")
    if reading:
        shown = reading if reading == "as written" else f"as {reading}"
        lines.append(f"- report ids no training report held are read {shown}")
    if metrics.get("command"):
        lines.insert(2, f"- command: `{metrics['command']}`")
    if metrics.get("data", {}).get("corpus_command"):
        lines.append(f"- corpus: synthetic, written again by `{metrics['data']['corpus_command']}`")
    if "judge" in metrics:
        heldout = metrics["judge"].get("heldout", {})
        lines.append(
            f"- consistency judge: `{metrics['judge'].get('file')}`; held-out ({heldout.get('split')}) "
            f"macro accuracy {_number(heldout.get('macro_accuracy'))}, macro AUC "
            f"{_number(heldout.get('macro_auc'))}, domain accuracy {_number(heldout.get('domain_accuracy'))}"
        )
    lines.append("")
    if metrics.get("infill"):
        lines += _infill(metrics["infill"])
    if "report2image" in metrics:
        lines += _report2image(metrics)
    if "image2report" in metrics:
        lines += _image2report(metrics, image2report_samples, records)
    if "pair" in metrics:
        lines += _pair(metrics)
    if metrics.get("steps_sweep"):
        lines += _sweep(metrics)
    figures = metrics.get("figures", {})
    if figures:
        lines += ["## Figures", ""] + [f"![{name}]({path})" for name, path in figures.items()] + [""]
    if metrics.get("skipped"):
        lines += ["## Skipped", ""] + [f"- {message}" for message in metrics["skipped"]] + [""]
    return "\n".join(lines)
