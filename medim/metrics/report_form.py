"""Does a generated report read as a report? The share of its sentences that the synthetic corpus could have written.

The synthetic reports (`medim.data.synthetic`) are built sentence by sentence from phrase-bank templates whose slots
(``{side}``, ``{sev}``, ``{tumour}``, ...) take a small set of values. A sentence of a generated report is
*well-formed* when it is exactly one template of its domain (common or held-out) with every slot holding a value the
generator itself writes there. "The lungs lungs otherwise clear." or "Consolidation in the left lung lung." are not;
a fluent sentence that states the wrong finding still is (the finding metrics judge content, this one form).

The slot values are read from the generator: the reports of the first ``HARVEST`` train pairs per domain, and as
many test pairs (the held-out phrasings), are matched against the templates and every slot's fillers collected.
Reports of the synthetic corpus score 1.0 by construction (tests/metrics/test_report_form.py checks it on fresh
pairs), so the rate measures only what the sampler and the model did to the text.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from functools import cache

DOMAINS = ("chest_xray", "pathology")
HARVEST = 3000  # reports per domain and split whose slot fillers make the value sets
_SECTION = re.compile(r"\b(?:FINDINGS|IMPRESSION)\s*:")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ANY = r"(.+?)"


def _templates(domain: str) -> list[tuple[str, bool]]:
    """(template, held-out?) for every phrase-bank template of ``domain``."""
    from medim.data import synthetic  # noqa: F401  (imports both domains' banks so they register)
    from medim.data._synthetic_text import all_banks

    chest = domain == "chest_xray"
    return [
        (template, heldout)
        for bank in all_banks()
        if bank.name.startswith("path.") != chest
        for heldout, group in ((False, bank.common), (True, bank.heldout))
        for template in group
    ]


def _pattern(template: str, slots: dict[str, str] | None) -> tuple[re.Pattern, list[str]]:
    """A regex matching one filled template (case-insensitive, a/an either way), and its slot names in order.
    ``slots`` maps a slot name to the alternation of its values; None leaves every slot open (harvesting)."""
    pieces, names = [], []
    for literal, field, _spec, _conversion in string.Formatter().parse(template):
        pieces.append(re.escape(literal))
        if field is not None:
            names.append(field)
            pieces.append(_ANY if slots is None else f"({slots[field]})")
    body = "".join(pieces).strip()
    body = re.sub(r"\\ ", r"\\s+", body)  # sentence() collapses runs of spaces
    body = re.sub(r"\ba\\s\+", r"an?\\s+", body)  # sentence() turns 'a' into 'an' before a vowel
    body = body.removesuffix("\\.")  # sentence() adds the final period where a template has none
    return re.compile(body + r"\.?", re.IGNORECASE), names


def _sentence_spans(report: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of each sentence of ``report``, section headers left out."""
    text = _SECTION.sub(lambda header: " " * len(header.group()), report)  # keeps the offsets
    bounds, start = [], 0
    for gap in _SENTENCE_END.finditer(text):
        bounds.append((start, gap.start()))
        start = gap.end()
    bounds.append((start, len(text)))
    spans = []
    for begin, end in bounds:
        piece = text[begin:end]
        if piece.strip():
            begin += len(piece) - len(piece.lstrip())
            spans.append((begin, begin + len(piece.strip())))
    return spans


def _sentences(report: str) -> list[str]:
    return [report[begin:end] for begin, end in _sentence_spans(report)]


@cache
def _strict_patterns(domain: str) -> tuple[tuple[re.Pattern, bool], ...]:
    """(pattern, held-out template?) for every template of ``domain`` whose slots the harvest filled."""
    from medim.data.synthetic import generate_report

    templates = _templates(domain)
    open_patterns = [_pattern(template, None) for template, _heldout in templates]
    values: dict[str, set[str]] = {}
    for split in ("train", "test"):
        for index in range(HARVEST):
            report, _labels, _attributes = generate_report(index, seed=0, split=split, domain=domain)
            for text in _sentences(report):
                # the template that explains most of the sentence with literal text wrote it
                matches = [(m, names) for pattern, names in open_patterns if (m := pattern.fullmatch(text))]
                if matches:
                    match, names = min(matches, key=lambda found: sum(map(len, found[0].groups())))
                    for name, value in zip(names, match.groups()):
                        values.setdefault(name, set()).add(value.lower())
    slots = {
        name: "|".join(re.escape(v) for v in sorted(found, key=len, reverse=True))
        for name, found in values.items()
    }
    # A template whose slot never matched during harvesting cannot be checked strictly; leave it out.
    return tuple(
        (_pattern(template, slots)[0], heldout)
        for (template, heldout), (_open, names) in zip(templates, open_patterns)
        if all(name in slots for name in names)
    )


def sentence_origins(report: str, domain: str) -> list[tuple[int, int, str]]:
    """Each sentence of ``report`` as ``(start, end, origin)``: its character offsets and whether a ``"common"``
    template (every split), a ``"heldout"`` one (test split only) or ``"none"`` (not well-formed) writes it."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    patterns = _strict_patterns(domain)
    origins = []
    for begin, end in _sentence_spans(report):
        text = report[begin:end]
        found = [heldout for pattern, heldout in patterns if pattern.fullmatch(text)]
        # a sentence that some common template also writes is common: the model may have seen it
        origin = "none" if not found else ("heldout" if all(found) else "common")
        origins.append((begin, end, origin))
    return origins


def wellformed_sentences(report: str, domain: str) -> tuple[int, int]:
    """(well-formed sentences, sentences) of one report of ``domain``."""
    origins = sentence_origins(report, domain)
    return sum(origin != "none" for _begin, _end, origin in origins), len(origins)


def report_form(reports: Sequence[str], domains: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per domain: the share of well-formed sentences, and the share of reports whose every sentence is one.

    An empty report counts as a report with no well-formed sentence (0 of 1), so writing nothing never scores.
    """
    if len(reports) != len(domains):
        raise ValueError(f"{len(reports)} reports but {len(domains)} domains")
    totals: dict[str, list[int]] = {}
    for report, domain in zip(reports, domains):
        good, count = wellformed_sentences(report, domain)
        count = max(count, 1)
        sums = totals.setdefault(domain, [0, 0, 0, 0])
        sums[0] += good
        sums[1] += count
        sums[2] += good == count
        sums[3] += 1
    return {
        domain: {"sentences": good / count, "reports": whole / reports_, "n": reports_}
        for domain, (good, count, whole, reports_) in totals.items()
    }


def report_coherence(reports: Sequence[str], domains: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per domain, what sentence-by-sentence form cannot see: the share of reports that repeat a sentence word for
    word (case and spacing aside), and the share that contradict themselves, one sentence stating a finding
    (`medim.metrics.labeler`, each sentence labelled on its own) and another denying it. Chest films' derived
    "No Finding" label is left out: it follows from the others."""
    from medim.metrics.labeler import NEGATIVE, POSITIVE, label_report

    if len(reports) != len(domains):
        raise ValueError(f"{len(reports)} reports but {len(domains)} domains")
    totals: dict[str, list[int]] = {}
    for report, domain in zip(reports, domains):
        sentences = _sentences(report)
        said = [" ".join(sentence.lower().split()).rstrip(".") for sentence in sentences]
        repeated = len(set(said)) < len(said)
        stated: dict[str, set[int]] = {}
        for sentence in sentences:
            for finding, status in label_report(sentence, domain).items():
                if finding != "No Finding":
                    stated.setdefault(finding, set()).add(status)
        contradictory = any({POSITIVE, NEGATIVE} <= statuses for statuses in stated.values())
        sums = totals.setdefault(domain, [0, 0, 0])
        sums[0] += repeated
        sums[1] += contradictory
        sums[2] += 1
    return {
        domain: {"repeated": repeated / n, "contradictory": contradictory / n, "n": n}
        for domain, (repeated, contradictory, n) in totals.items()
    }
