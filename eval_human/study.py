"""Study builder: read pair sources, sample a blinded mix, add attention checks, create raters and assignments.

Sources, recognised by what a folder or file holds:
- a ``synthesize`` output folder (``pairs.jsonl`` + ``images/``): generated pairs, source from each record;
- a synthetic/real dataset split (``metadata.jsonl`` + ``images/``) or a corpus root holding ``test/`` (or
  ``val/``, ``train/``) splits: reference pairs, source ``{"system": "real", ...}``;
- any manifest file (``.jsonl`` or ``.csv``) with ``image`` and ``report`` columns (optional ``id``, ``domain``,
  ``system``/``source``), image paths relative to the manifest.

``add_pairs_from_folder`` and ``submit_generated_pair`` are the hooks through which the demo app or the
synthesize command send new pairs to a running study.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from eval_human.models import KIND_ATTENTION_CHECK, KIND_GENERATED, KIND_REAL, ROLE_ADMIN
from eval_human.store import NewRater, StudyError, StudyStore

SPLIT_PREFERENCE = ("test", "val", "train")


@dataclass(frozen=True)
class SourcePair:
    """One candidate pair before it enters a study; ``source`` is the provenance that will be hidden."""

    external_id: str
    image_path: Path
    report: str
    domain: str | None
    kind: str
    source: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BuiltStudy:
    """What ``build_study`` made: the study id, item counts by kind, and the new raters with clear tokens."""

    study_id: int
    n_items: dict[str, int]
    raters: list[NewRater]


def load_image(path: str | Path) -> Image.Image:
    """Read an image with the project's loader (PNG/JPEG/DICOM by content) when present, else with Pillow."""
    try:
        from medim.data.io import load_image as medim_load_image
    except ImportError:
        medim_load_image = None
    if medim_load_image is not None:
        try:
            return medim_load_image(path)
        except ValueError as error:  # medim.data.io.ImageLoadError
            raise StudyError(f"cannot read image {str(path)!r}: {error}") from error
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB") if image.mode not in ("L", "RGB") else image.copy()
    except (OSError, SyntaxError) as error:
        raise StudyError(f"cannot read image {str(path)!r}: {error}") from error


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise StudyError(f"{path}:{line_no} is not valid JSON: {error}") from error
            if not isinstance(record, dict):
                raise StudyError(f"{path}:{line_no} must hold a JSON object, got {type(record).__name__}")
            records.append(record)
    return records


def _pair_from_record(record: Mapping[str, Any], base: Path, where: str, *, generated: bool) -> SourcePair:
    for key in ("image", "report"):
        if not record.get(key) or not isinstance(record[key], str):
            raise StudyError(f"{where}: missing or non-text {key!r} in record {dict(record)!r:.200}")
    image_path = base / record["image"]
    if not image_path.is_file():
        raise StudyError(f"{where}: image {str(image_path)!r} does not exist")
    external_id = str(record.get("id") or Path(record["image"]).stem)
    source = record.get("source")
    if isinstance(source, str):
        source = {"system": source}
    if source is None and record.get("system"):
        source = {"system": str(record["system"])}
    if generated:
        if not isinstance(source, Mapping) or not source.get("system"):
            raise StudyError(f"{where}: generated pair {external_id!r} needs a 'source' with a 'system'")
        source = dict(source)
    else:
        source = dict(source) if isinstance(source, Mapping) else {"system": "real"}
    kind = KIND_REAL if str(source.get("system")) == "real" else KIND_GENERATED
    return SourcePair(
        external_id=external_id,
        image_path=image_path,
        report=str(record["report"]),
        domain=record.get("domain"),
        kind=kind,
        source=source,
    )


def load_pairs(path: str | Path) -> list[SourcePair]:
    """All pairs of one source (folder or manifest file), in file order; see the module docstring for formats."""
    path = Path(path)
    if path.is_dir() and (path / "pairs.jsonl").is_file():
        manifest = path / "pairs.jsonl"
        return [
            _pair_from_record(r, path, f"{manifest} record {i}", generated=True)
            for i, r in enumerate(_read_jsonl(manifest))
        ]
    if path.is_dir() and (path / "metadata.jsonl").is_file():
        manifest = path / "metadata.jsonl"
        pairs = []
        for i, record in enumerate(_read_jsonl(manifest)):
            record = dict(record)
            record.setdefault("source", {"system": "real", "dataset": path.parent.name, "split": path.name})
            pairs.append(_pair_from_record(record, path, f"{manifest} record {i}", generated=False))
        return pairs
    if path.is_dir():
        for split in SPLIT_PREFERENCE:
            if (path / split / "metadata.jsonl").is_file():
                return load_pairs(path / split)
        raise StudyError(
            f"{str(path)!r} holds neither pairs.jsonl, metadata.jsonl nor a {'/'.join(SPLIT_PREFERENCE)} split"
        )
    if path.is_file() and path.suffix == ".jsonl":
        return [
            _pair_from_record(r, path.parent, f"{path} record {i}", generated=False)
            for i, r in enumerate(_read_jsonl(path))
        ]
    if path.is_file() and path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [
            _pair_from_record(r, path.parent, f"{path} row {i + 2}", generated=False)
            for i, r in enumerate(rows)
        ]
    raise StudyError(f"pair source {str(path)!r} is not a folder, a .jsonl or a .csv manifest")


def parse_ratio(text: str | None, n_parts: int) -> list[float]:
    """``"1:1"`` → ``[1.0, 1.0]``; ``None`` means equal weights. The number of parts must match the sources."""
    if text is None:
        return [1.0] * n_parts
    try:
        weights = [float(part) for part in str(text).split(":")]
    except ValueError as error:
        raise StudyError(f"ratio {text!r} must look like '1:1' or '3:1:1'") from error
    if len(weights) != n_parts:
        raise StudyError(f"ratio {text!r} has {len(weights)} parts for {n_parts} sources")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise StudyError(f"ratio {text!r} needs non-negative weights with a positive sum")
    return weights


def allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` into integer counts proportional to ``weights`` (largest remainder, ties to the first)."""
    scale = sum(weights)
    exact = [total * w / scale for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def sample_pairs(
    pools: Sequence[Sequence[SourcePair]],
    weights: Sequence[float],
    n_items: int | None,
    rng: random.Random,
    *,
    domain_weights: Mapping[str, float] | None = None,
) -> list[SourcePair]:
    """Draw ``n_items`` pairs without replacement, mixing the pools by ``weights`` (and domains by ``domain_weights``).

    ``n_items=None`` takes every pair of every pool. A pool (or domain stratum) too small for its share is an error
    rather than a silent change of the ratio the study reports.
    """
    if n_items is None:
        return [pair for pool in pools for pair in pool]
    if n_items < 1:
        raise StudyError(f"n_items={n_items} must be positive")
    chosen: list[SourcePair] = []
    for pool, count in zip(pools, allocate(n_items, weights)):
        if domain_weights:
            domains = list(domain_weights)
            for domain, sub_count in zip(domains, allocate(count, [domain_weights[d] for d in domains])):
                stratum = [p for p in pool if p.domain == domain]
                if sub_count > len(stratum):
                    raise StudyError(
                        f"need {sub_count} {domain!r} pairs from a source that has {len(stratum)}"
                    )
                chosen.extend(rng.sample(stratum, sub_count))
        else:
            if count > len(pool):
                raise StudyError(f"need {count} pairs from a source that has only {len(pool)}")
            chosen.extend(rng.sample(list(pool), count))
    return chosen


def make_attention_checks(pairs: Sequence[SourcePair], n_checks: int, rng: random.Random) -> list[SourcePair]:
    """Deliberately mismatched pairs: the image of one pair with the report of another.

    The report donor is preferably of another domain (an obvious mismatch), else any pair with a different report.
    """
    if n_checks <= 0:
        return []
    if len(pairs) < 2:
        raise StudyError(f"attention checks need at least 2 pairs to swap reports between, got {len(pairs)}")
    checks = []
    image_donors = [pairs[i % len(pairs)] for i in rng.sample(range(len(pairs)), min(n_checks, len(pairs)))]
    while len(image_donors) < n_checks:
        image_donors.append(rng.choice(pairs))
    for index, image_pair in enumerate(image_donors):
        other_domain = [p for p in pairs if p.domain != image_pair.domain]
        different = [p for p in pairs if p.report.strip() != image_pair.report.strip()]
        candidates = other_domain or different
        if not candidates:
            raise StudyError("attention checks need pairs with at least two different reports")
        report_pair = rng.choice(candidates)
        checks.append(
            SourcePair(
                external_id=f"attention-{index}",
                image_path=image_pair.image_path,
                report=report_pair.report,
                domain=image_pair.domain,
                kind=KIND_ATTENTION_CHECK,
                source={
                    "system": "attention_check",
                    "image_from": image_pair.external_id,
                    "report_from": report_pair.external_id,
                },
            )
        )
    return checks


def build_study(
    store: StudyStore,
    name: str,
    sources: Sequence[str | Path],
    *,
    raters: Sequence[str],
    admins: Sequence[str] = ("admin",),
    ratio: str | Sequence[float] | None = None,
    n_items: int | None = None,
    domain_ratio: Mapping[str, float] | None = None,
    real_sources: Sequence[str | Path] = (),
    n_real: int = 0,
    n_attention_checks: int = 0,
    overlap: int = 2,
    likert_max: int = 5,
    seed: int = 0,
    description: str = "",
) -> BuiltStudy:
    """Create a complete study: sampled items (blinded), attention checks, raters with tokens and assignments.

    Args:
        sources: pair sources mixed by ``ratio`` into ``n_items`` items (all pairs when ``n_items`` is None).
        real_sources / n_real: extra reference pairs (``"real"``) added on top, e.g. as a ceiling for the scale.
        n_attention_checks: mismatched pairs built from the sampled items, shown to every rater.
        overlap: raters per regular item (Label Studio's overlap; Argilla's ``min_submitted``).
    """
    if not sources:
        raise StudyError("give at least one pair source")
    rng = random.Random(seed)
    pools = [load_pairs(s) for s in sources]
    weights = list(ratio) if isinstance(ratio, Sequence) and not isinstance(ratio, str) else None
    weights = weights or parse_ratio(ratio, len(pools))
    if len(weights) != len(pools):
        raise StudyError(f"ratio has {len(weights)} parts for {len(pools)} sources")
    chosen = sample_pairs(pools, weights, n_items, rng, domain_weights=domain_ratio)
    if n_real:
        real_pool = [p for s in real_sources for p in load_pairs(s)]
        if n_real > len(real_pool):
            raise StudyError(f"n_real={n_real} but the real sources hold {len(real_pool)} pairs")
        chosen += rng.sample(real_pool, n_real)
    checks = make_attention_checks(chosen, n_attention_checks, rng)
    if not raters:
        raise StudyError("a study needs at least one rater name")
    if overlap > len(raters):
        raise StudyError(f"overlap={overlap} exceeds the number of raters ({len(raters)})")
    names = [str(n).strip() for n in [*raters, *admins]]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise StudyError(f"rater and admin names must be non-empty and distinct, got {names!r}")
    # Read every image before the first write, so a bad file cannot leave a half-built study behind.
    images = [load_image(pair.image_path) for pair in chosen + checks]

    study_id = store.create_study(
        name,
        description=description,
        likert_max=likert_max,
        overlap=overlap,
        seed=seed,
        settings={
            "sources": [str(s) for s in sources],
            "ratio": weights,
            "domain_ratio": dict(domain_ratio or {}),
            "n_attention_checks": n_attention_checks,
        },
    )
    counts: dict[str, int] = {}
    for pair, image in zip(chosen + checks, images):
        _add_source_pair(store, study_id, pair, image=image, assign=False)
        counts[pair.kind] = counts.get(pair.kind, 0) + 1
    new_raters = store.add_raters(study_id, raters)
    if admins:
        new_raters += store.add_raters(study_id, admins, role=ROLE_ADMIN)
    store.assign_all(study_id)
    return BuiltStudy(study_id=study_id, n_items=counts, raters=new_raters)


def _add_source_pair(
    store: StudyStore, study_id: int, pair: SourcePair, *, assign: bool, image: Image.Image | None = None
) -> int:
    return store.add_item(
        study_id,
        image=image if image is not None else load_image(pair.image_path),
        report=pair.report,
        kind=pair.kind,
        source=pair.source,
        external_id=pair.external_id,
        domain=pair.domain,
        assign=assign,
    )


def add_pairs_from_folder(
    store: StudyStore, study_id: int, folder: str | Path, *, limit: int | None = None, seed: int = 0
) -> list[int]:
    """Add the pairs of a ``synthesize`` output (or any source ``load_pairs`` reads) to a running study.

    Each new item joins ``overlap`` raters' queues (least-loaded first) at their end. Returns the new item ids.
    """
    pairs = load_pairs(folder)
    if limit is not None:
        pairs = random.Random(seed).sample(pairs, min(limit, len(pairs)))
    return [_add_source_pair(store, study_id, pair, assign=True) for pair in pairs]


def submit_generated_pair(
    store: StudyStore, study_id: int, image: Image.Image, report: str, source: Mapping[str, Any]
) -> int:
    """Send one freshly generated pair (e.g. from the demo app) into a study; returns the new item id.

    ``source`` must name the ``system`` (and should carry ``checkpoint`` and ``settings``); it stays hidden from
    raters. The item is appended to ``overlap`` raters' queues.
    """
    if not isinstance(source, Mapping) or not source.get("system"):
        raise StudyError(f"source must be a mapping with a 'system', got {source!r}")
    kind = KIND_REAL if source.get("system") == "real" else KIND_GENERATED
    return store.add_item(study_id, image=image, report=report, kind=kind, source=source, assign=True)
