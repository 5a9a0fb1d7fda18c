"""Image–report pair datasets for MeDiM: one record type, adapters for each on-disk layout, a registry.

Every adapter is a ``torch.utils.data.Dataset`` whose items are :class:`PairRecord` (id, PIL image, report,
domain, labels). Construction reads only the index files (manifests, split CSVs, annotation JSON) and, with
``check_files=True`` (the default), checks that every referenced file exists so that a broken download fails at
once with the missing paths named. Images are decoded lazily in ``__getitem__`` through
:func:`medim.data.io.load_image`, so they are recognised by content and size-checked like every other image.

Layouts:

- :class:`ManifestDataset` — a ``.jsonl``/``.csv`` manifest (the synthetic corpus' ``metadata.jsonl``, generated
  pairs' ``pairs.jsonl``); image paths relative to the manifest's folder.
- :class:`PairedFolderDataset` — ``<root>/<split>/<stem>.png|jpg`` next to ``<stem>.txt``.
- :class:`MimicCxrDataset` — MIMIC-CXR-JPG 2.0.0 with the MIMIC-CXR free-text reports.
- :class:`PathGenDataset` — PathGen-style JSON/JSONL of ``{"image" | "file_path": ..., "caption": ...}``.
- :class:`IUXrayDataset` — IU-Xray (OpenI) as distributed with R2Gen: ``annotation.json`` + ``images/``.

:func:`build_dataset` picks one by name.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from medim.data.io import load_image
from medim.data.preprocess import clean_report, extract_sections

__all__ = [
    "CHEXPERT_COLUMNS",
    "DATASET_KINDS",
    "DOMAINS",
    "IUXrayDataset",
    "ManifestDataset",
    "MimicCxrDataset",
    "MissingFileError",
    "PairDataset",
    "PairEntry",
    "PairRecord",
    "PairedFolderDataset",
    "PathGenDataset",
    "build_dataset",
]

DOMAINS = ("chest_xray", "pathology")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")

# The 14 CheXpert observations as they appear in mimic-cxr-2.0.0-chexpert.csv.
CHEXPERT_COLUMNS = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)

_MISSING_LIST_LIMIT = 5


class MissingFileError(FileNotFoundError, ValueError):
    """A file a dataset layout requires is absent; the message names the path(s)."""


@dataclass
class PairRecord:
    """One image–report pair.

    Attributes:
        id: unique identifier within its dataset.
        image: the image, mode ``"L"`` or ``"RGB"``.
        report: report text (cleaned, one line).
        domain: ``"chest_xray"`` or ``"pathology"``.
        labels: finding name → 1 (positive), 0 (negative), -1 (uncertain); ``None`` when the dataset has none.
    """

    id: str
    image: Image.Image
    report: str
    domain: str
    labels: dict[str, int] | None = None


@dataclass(frozen=True)
class PairEntry:
    """What a dataset knows about one pair before loading it: the image path and the report or its source."""

    id: str
    image_path: Path
    domain: str
    report: str | None = None
    report_path: Path | None = None
    labels: dict[str, int] | None = None


# ----------------------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------------------


def _check_domain(domain: Any, where: str) -> str:
    if domain not in DOMAINS:
        raise ValueError(f"{where}: domain must be one of {DOMAINS}, got {domain!r}")
    return domain


def _check_labels(labels: Any, where: str) -> dict[str, int] | None:
    if labels is None or labels == "":
        return None
    if isinstance(labels, str):
        try:
            labels = json.loads(labels)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: labels is not valid JSON: {labels!r}") from error
    if not isinstance(labels, Mapping):
        raise ValueError(f"{where}: labels must be a mapping finding -> 1/0/-1, got {type(labels).__name__}")
    checked: dict[str, int] = {}
    for name, value in labels.items():
        if value not in (1, 0, -1) or isinstance(value, bool):
            raise ValueError(f"{where}: label {name!r} must be 1, 0 or -1, got {value!r}")
        checked[str(name)] = int(value)
    return checked


def _raise_if_missing(paths: Iterable[Path], what: str) -> None:
    """One error naming the first few missing files (and how many there are in all)."""
    missing = [path for path in paths if not path.is_file()]
    if missing:
        shown = ", ".join(str(path) for path in missing[:_MISSING_LIST_LIMIT])
        more = (
            f" (and {len(missing) - _MISSING_LIST_LIMIT} more)" if len(missing) > _MISSING_LIST_LIMIT else ""
        )
        raise MissingFileError(f"{len(missing)} {what} file(s) missing: {shown}{more}")


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    return path


def _read_json_records(path: Path) -> list[dict[str, Any]]:
    """Objects from a ``.jsonl`` file (one per line) or a ``.json`` file holding a list of objects."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: invalid JSON ({error})") from error
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of objects, got {type(records).__name__}")
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: invalid JSON line ({error})") from error
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: record {number} is a {type(record).__name__}, expected a JSON object")
    return records


def _resolve(path_text: str, base: Path) -> Path:
    path = Path(path_text)
    return path if path.is_absolute() else base / path


def _unique_ids(entries: Sequence[PairEntry], source: Path | str) -> None:
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise ValueError(f"{source}: duplicate id {entry.id!r}")
        seen.add(entry.id)


class PairDataset(Dataset):
    """Base of every adapter: a list of :class:`PairEntry` (``.entries``), each turned into a
    :class:`PairRecord` on access, image decoded then."""

    def __init__(self, entries: list[PairEntry], *, source: Path | str, check_files: bool) -> None:
        _unique_ids(entries, source)
        if check_files:
            _raise_if_missing((entry.image_path for entry in entries), "image")
            _raise_if_missing((entry.report_path for entry in entries if entry.report_path), "report")
        self.entries = entries
        self.source = source

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> PairRecord:
        if not -len(self.entries) <= index < len(self.entries):
            raise IndexError(f"index {index} out of range for a dataset of {len(self.entries)} pairs")
        entry = self.entries[index]
        report = entry.report if entry.report is not None else self._read_report(entry)
        return PairRecord(
            id=entry.id,
            image=load_image(entry.image_path),
            report=report,
            domain=entry.domain,
            labels=dict(entry.labels) if entry.labels is not None else None,
        )

    def _read_report(self, entry: PairEntry) -> str:
        assert entry.report_path is not None, "entries without report text need a report_path"
        return clean_report(_require_file(entry.report_path, "report file").read_text(encoding="utf-8"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} pairs from {self.source})"


# ----------------------------------------------------------------------------------------------------------
# Manifest (.jsonl / .csv)
# ----------------------------------------------------------------------------------------------------------

MANIFEST_NAMES = ("metadata.jsonl", "pairs.jsonl", "manifest.jsonl", "manifest.csv")


class ManifestDataset(PairDataset):
    """Pairs listed in a manifest: a ``.jsonl`` (one JSON object per line) or ``.csv`` file.

    Fields: ``image`` (path relative to the manifest's folder, or absolute) and ``report`` are required;
    ``id`` (default: the image path without suffix), ``domain`` (default: the ``domain`` argument) and
    ``labels`` (a mapping finding → 1/0/-1; a JSON string in CSV) are optional; other fields are ignored.
    Reads the synthetic corpus' ``<split>/metadata.jsonl`` and generated pairs' ``pairs.jsonl`` directly.

    Args:
        path: the manifest file, or a folder holding exactly one of ``metadata.jsonl``, ``pairs.jsonl``,
            ``manifest.jsonl``, ``manifest.csv``.
        domain: domain for rows without one.
        check_files: check at construction that every image exists.
    """

    def __init__(self, path: str | Path, *, domain: str | None = None, check_files: bool = True) -> None:
        manifest = self._locate(Path(path))
        base = manifest.parent
        if manifest.suffix.lower() == ".csv":
            with manifest.open(newline="", encoding="utf-8") as handle:
                rows: list[dict[str, Any]] = list(csv.DictReader(handle))
        elif manifest.suffix.lower() in (".jsonl", ".json"):
            rows = _read_json_records(manifest)
        else:
            raise ValueError(f"manifest must be a .jsonl, .json or .csv file, got {manifest}")
        if domain is not None:
            _check_domain(domain, f"{manifest}: domain argument")
        entries = []
        for number, row in enumerate(rows, start=1):
            where = f"{manifest} row {number}"
            image, report = row.get("image"), row.get("report")
            if not isinstance(image, str) or not image:
                raise ValueError(f"{where}: missing 'image' path")
            if not isinstance(report, str):
                raise ValueError(f"{where}: missing 'report' text")
            row_domain = row.get("domain") or domain
            if row_domain is None:
                raise ValueError(f"{where}: no 'domain' field and no domain argument given")
            entries.append(
                PairEntry(
                    id=str(row.get("id") or Path(image).with_suffix("").as_posix()),
                    image_path=_resolve(image, base),
                    domain=_check_domain(row_domain, where),
                    report=clean_report(report),
                    labels=_check_labels(row.get("labels"), where),
                )
            )
        super().__init__(entries, source=manifest, check_files=check_files)

    @staticmethod
    def _locate(path: Path) -> Path:
        if path.is_file():
            return path
        if path.is_dir():
            found = [path / name for name in MANIFEST_NAMES if (path / name).is_file()]
            if len(found) == 1:
                return found[0]
            if not found:
                raise MissingFileError(f"no manifest in {path}: expected one of {', '.join(MANIFEST_NAMES)}")
            raise ValueError(
                f"several manifests in {path}: {', '.join(p.name for p in found)}; pass the file"
            )
        raise MissingFileError(f"manifest not found: {path}")


# ----------------------------------------------------------------------------------------------------------
# Paired folder: <root>/<split>/<stem>.png|jpg + <stem>.txt
# ----------------------------------------------------------------------------------------------------------


class PairedFolderDataset(PairDataset):
    """Pairs stored as ``<root>/<split>/<stem>.png|.jpg|.jpeg|.dcm`` beside ``<stem>.txt`` (the report).

    Every image needs its report; text files without an image are ignored.

    Args:
        root: the dataset folder.
        split: sub-folder name (``"train"``, ``"val"``, ``"test"``, ...).
        domain: ``"chest_xray"`` or ``"pathology"`` for every pair.
    """

    def __init__(self, root: str | Path, split: str, *, domain: str) -> None:
        folder = Path(root) / split
        if not folder.is_dir():
            raise MissingFileError(f"split folder not found: {folder}")
        _check_domain(domain, f"{folder}: domain argument")
        images: dict[str, Path] = {}
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                if path.stem in images:
                    raise ValueError(
                        f"{folder}: two images share the stem {path.stem!r}: {images[path.stem]}, {path}"
                    )
                images[path.stem] = path
        if not images:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        entries = [
            PairEntry(id=stem, image_path=image, domain=domain, report_path=image.with_suffix(".txt"))
            for stem, image in images.items()
        ]
        _raise_if_missing((entry.report_path for entry in entries), "report (.txt beside its image)")
        super().__init__(entries, source=folder, check_files=False)  # every file was just found or checked


def paired_folders(root: str | Path, split: str, folder_domains: dict[str, str]) -> PairDataset:
    """A mixed corpus in the paired-folder layout, one sub-folder per domain:
    ``<root>/<folder>/<split>/<stem>.png`` + ``<stem>.txt`` with ``folder_domains = {folder: domain}``.
    Ids become ``<folder>/<stem>`` so two folders may reuse a stem."""
    if not folder_domains:
        raise ValueError("folder_domains must name at least one folder, e.g. {'cxr': 'chest_xray'}")
    entries: list[PairEntry] = []
    for folder, domain in folder_domains.items():
        part = PairedFolderDataset(Path(root) / folder, split, domain=domain)
        entries += [replace(entry, id=f"{folder}/{entry.id}") for entry in part.entries]
    return PairDataset(entries, source=Path(root), check_files=False)


# ----------------------------------------------------------------------------------------------------------
# MIMIC-CXR-JPG
# ----------------------------------------------------------------------------------------------------------

MIMIC_SPLIT_CSV = "mimic-cxr-2.0.0-split.csv"
MIMIC_METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv"
MIMIC_CHEXPERT_CSV = "mimic-cxr-2.0.0-chexpert.csv"
MIMIC_SPLITS = {
    "train": "train",
    "val": "validate",
    "valid": "validate",
    "validate": "validate",
    "test": "test",
}
MIMIC_FRONTAL_VIEWS = ("PA", "AP")
MIMIC_SECTIONS = ("findings", "impression")


def _find_table(root: Path, name: str) -> Path | None:
    """``root/name`` or its gzipped form ``root/name.gz``, whichever exists."""
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_table(path: Path, required: Sequence[str]):
    import pandas as pd  # pandas is only needed for the CSV-indexed corpora

    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    return table


class MimicCxrDataset(PairDataset):
    """MIMIC-CXR-JPG 2.0.0 images with their MIMIC-CXR reports (FINDINGS + IMPRESSION).

    Layout under ``root``: ``files/pXX/p<subject_id>/s<study_id>/<dicom_id>.jpg``, ``mimic-cxr-2.0.0-split.csv``
    and ``mimic-cxr-2.0.0-metadata.csv`` (either possibly ``.gz``), optionally ``mimic-cxr-2.0.0-chexpert.csv``.
    Reports are ``files/pXX/p<subject_id>/s<study_id>.txt`` under ``reports_root`` (the unpacked
    ``mimic-cxr-reports``; default ``root/mimic-cxr-reports`` when it exists, else ``root``), or come from a
    sections CSV with columns ``study`` (``s<study_id>``) or ``study_id``, ``findings``, ``impression``.

    One record per image (id = dicom_id), so a study with two frontal views gives two records with the same
    report. Labels are the study's CheXpert labels under their CheXpert names (``"Pleural Effusion"``, the names
    :mod:`medim.metrics.labeler` uses; blanks omitted) when the CheXpert CSV is available, else ``None``.

    Args:
        root: the MIMIC-CXR-JPG folder.
        split: ``"train"``, ``"val"``/``"validate"`` or ``"test"``.
        frontal_only: keep only PA and AP views (ViewPosition in the metadata CSV).
        reports_root: folder holding the reports' ``files/`` tree.
        sections_csv: a pre-sectioned reports CSV to use instead of the report files.
        chexpert_csv: labels CSV; default ``root/mimic-cxr-2.0.0-chexpert.csv(.gz)`` when present.
        sections: which sections make up the report text, joined in this order.
        section_headers: keep each section's header ("FINDINGS: ... IMPRESSION: ..."), the format the synthetic
            corpus, the examples and the app use, so a model trained here reads what users type; False joins
            the sections' text alone.
        check_files: check at construction that every image (and report file) exists.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        frontal_only: bool = True,
        reports_root: str | Path | None = None,
        sections_csv: str | Path | None = None,
        chexpert_csv: str | Path | None = None,
        sections: Sequence[str] = MIMIC_SECTIONS,
        section_headers: bool = True,
        check_files: bool = True,
    ) -> None:
        root = Path(root)
        self.section_headers = section_headers
        if split not in MIMIC_SPLITS:
            raise ValueError(f"unknown MIMIC-CXR split {split!r}; expected one of {sorted(MIMIC_SPLITS)}")
        unknown_sections = [name for name in sections if name not in MIMIC_SECTIONS]
        if unknown_sections or not sections:
            raise ValueError(
                f"sections must be a non-empty subset of {MIMIC_SECTIONS}, got {tuple(sections)}"
            )
        self.sections = tuple(sections)

        split_csv = _find_table(root, MIMIC_SPLIT_CSV)
        if split_csv is None:
            raise MissingFileError(f"MIMIC-CXR split file not found: {root / MIMIC_SPLIT_CSV} (or .gz)")
        table = _read_table(split_csv, ("dicom_id", "study_id", "subject_id", "split"))
        table = table[table["split"] == MIMIC_SPLITS[split]]
        if frontal_only:
            metadata_csv = _find_table(root, MIMIC_METADATA_CSV)
            if metadata_csv is None:
                raise MissingFileError(
                    f"MIMIC-CXR metadata file not found: {root / MIMIC_METADATA_CSV} (or .gz); it is needed for "
                    "frontal_only=True"
                )
            metadata = _read_table(metadata_csv, ("dicom_id", "ViewPosition"))
            frontal = set(metadata.loc[metadata["ViewPosition"].isin(MIMIC_FRONTAL_VIEWS), "dicom_id"])
            table = table[table["dicom_id"].isin(frontal)]
        table = table.sort_values(["subject_id", "study_id", "dicom_id"])

        self._sections_by_study: dict[str, dict[str, str]] | None = None
        if sections_csv is not None:
            self._sections_by_study = self._read_sections_csv(
                _require_file(Path(sections_csv), "sections CSV")
            )
        if reports_root is None:
            reports_root = root / "mimic-cxr-reports" if (root / "mimic-cxr-reports").is_dir() else root
        reports_root = Path(reports_root)

        labels_by_study = self._read_chexpert(root, chexpert_csv)

        entries = []
        for subject, study, dicom in zip(table["subject_id"], table["study_id"], table["dicom_id"]):
            relative = Path("files") / f"p{subject[:2]}" / f"p{subject}"
            report_path = None
            if self._sections_by_study is None:
                report_path = reports_root / relative / f"s{study}.txt"
            elif study not in self._sections_by_study:
                raise ValueError(f"{sections_csv}: no report for study s{study} (image {dicom})")
            entries.append(
                PairEntry(
                    id=dicom,
                    image_path=root / relative / f"s{study}" / f"{dicom}.jpg",
                    domain="chest_xray",
                    report_path=report_path,
                    labels=labels_by_study.get(study) if labels_by_study is not None else None,
                )
            )
        self._study_of = dict(zip(table["dicom_id"], table["study_id"]))
        super().__init__(entries, source=root, check_files=check_files)

    @staticmethod
    def _read_sections_csv(path: Path) -> dict[str, dict[str, str]]:
        table = _read_table(path, ("findings", "impression"))
        study_column = (
            "study" if "study" in table.columns else "study_id" if "study_id" in table.columns else None
        )
        if study_column is None:
            raise ValueError(f"{path}: needs a 'study' or 'study_id' column; found {list(table.columns)}")
        # MIT-LCP's create_section_files.py keeps the last paragraph of unsectioned reports in its own column;
        # it stands in for the findings when neither section was found (as extract_sections does for files).
        last = table["last_paragraph"] if "last_paragraph" in table.columns else [""] * len(table)
        sections = {}
        for study, findings, impression, last_paragraph in zip(
            table[study_column], table["findings"], table["impression"], last
        ):
            if not findings.strip() and not impression.strip():
                findings = last_paragraph
            sections[str(study).removeprefix("s")] = {"findings": findings, "impression": impression}
        return sections

    @staticmethod
    def _read_chexpert(root: Path, chexpert_csv: str | Path | None) -> dict[str, dict[str, int]] | None:
        if chexpert_csv is None:
            path = _find_table(root, MIMIC_CHEXPERT_CSV)
            if path is None:
                return None
        else:
            path = _require_file(Path(chexpert_csv), "CheXpert labels CSV")
        table = _read_table(path, ("study_id",))
        columns = [column for column in CHEXPERT_COLUMNS if column in table.columns]
        if not columns:
            raise ValueError(f"{path}: none of the CheXpert columns {CHEXPERT_COLUMNS} is present")
        labels: dict[str, dict[str, int]] = {}
        for row in table[["study_id", *columns]].itertuples(index=False):
            study, values = row[0], row[1:]
            study_labels = {}
            for column, value in zip(columns, values):
                if value.strip() == "":
                    continue  # blank = not mentioned
                number = int(float(value))
                if number not in (1, 0, -1):
                    raise ValueError(
                        f"{path}: study {study} has {column}={value!r}; expected 1, 0, -1 or blank"
                    )
                study_labels[column] = number
            labels[str(study)] = study_labels
        return labels

    def _read_report(self, entry: PairEntry) -> str:
        if self._sections_by_study is not None:
            found = self._sections_by_study[self._study_of[entry.id]]
            parts = {name: clean_report(found[name]) for name in MIMIC_SECTIONS}
            source = "sections CSV"
        else:
            assert entry.report_path is not None
            text = _require_file(entry.report_path, "MIMIC-CXR report").read_text(encoding="utf-8")
            parts = extract_sections(text)
            source = str(entry.report_path)
        report = " ".join(
            f"{name.upper()}: {parts[name]}" if self.section_headers else parts[name]
            for name in self.sections
            if parts[name]
        )
        if not report:
            raise ValueError(
                f"{source}: report for image {entry.id} has no {' or '.join(self.sections)} text"
            )
        return report


# ----------------------------------------------------------------------------------------------------------
# PathGen
# ----------------------------------------------------------------------------------------------------------


class PathGenDataset(PairDataset):
    """Pathology patches with captions from a PathGen-style JSON list or JSONL file.

    Each record has the image path in ``"image"`` or ``"file_path"`` (relative to ``image_root``) and the text in
    ``"caption"``; an ``"id"`` field is used when present, else the image path without suffix.

    Args:
        annotations: the ``.json``/``.jsonl`` file.
        image_root: folder the image paths are relative to (default: the annotations' folder).
        check_files: check at construction that every image exists.
    """

    def __init__(
        self, annotations: str | Path, image_root: str | Path | None = None, *, check_files: bool = True
    ) -> None:
        annotations = _require_file(Path(annotations), "PathGen annotations")
        image_root = Path(image_root) if image_root is not None else annotations.parent
        entries = []
        for number, record in enumerate(_read_json_records(annotations), start=1):
            where = f"{annotations} record {number}"
            image = record.get("image", record.get("file_path"))
            caption = record.get("caption")
            if not isinstance(image, str) or not image:
                raise ValueError(f"{where}: needs an 'image' or 'file_path' string")
            if not isinstance(caption, str) or not caption.strip():
                raise ValueError(f"{where}: needs a non-empty 'caption' string")
            entries.append(
                PairEntry(
                    id=str(record.get("id") or Path(image).with_suffix("").as_posix()),
                    image_path=_resolve(image, image_root),
                    domain="pathology",
                    report=clean_report(caption),
                )
            )
        super().__init__(entries, source=annotations, check_files=check_files)


# ----------------------------------------------------------------------------------------------------------
# IU-Xray (R2Gen layout)
# ----------------------------------------------------------------------------------------------------------

IU_SPLITS = {"train": "train", "val": "val", "validate": "val", "valid": "val", "test": "test"}


class IUXrayDataset(PairDataset):
    """IU-Xray (OpenI) in the R2Gen layout: ``root/annotation.json`` and ``root/images/``.

    ``annotation.json`` maps ``"train"``/``"val"``/``"test"`` to lists of ``{"id", "report", "image_path": [...]}``
    with image paths relative to ``root/images``.

    Args:
        root: the dataset folder.
        split: ``"train"``, ``"val"`` or ``"test"``.
        images: ``"first"`` — one record per study with its first image (R2Gen lists the frontal view first);
            ``"all"`` — one record per image, id ``"<study id>_<index>"``.
        section_headers: R2Gen's reports are the findings text without its header; True (the default) writes
            it as "FINDINGS: ...", the format of the synthetic corpus, the examples and the app.
        check_files: check at construction that every image exists.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        images: str = "first",
        section_headers: bool = True,
        check_files: bool = True,
    ) -> None:
        root = Path(root)
        if split not in IU_SPLITS:
            raise ValueError(f"unknown IU-Xray split {split!r}; expected one of {sorted(IU_SPLITS)}")
        if images not in ("first", "all"):
            raise ValueError(f"images must be 'first' or 'all', got {images!r}")
        annotation = _require_file(root / "annotation.json", "IU-Xray annotation file")
        try:
            content = json.loads(annotation.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{annotation}: invalid JSON ({error})") from error
        key = IU_SPLITS[split]
        if not isinstance(content, dict) or key not in content:
            found = sorted(content) if isinstance(content, dict) else type(content).__name__
            raise ValueError(f"{annotation}: no {key!r} split (found {found})")
        entries = []
        for number, study in enumerate(content[key], start=1):
            where = f"{annotation} {key}[{number - 1}]"
            paths, report = study.get("image_path"), study.get("report")
            if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
                raise ValueError(f"{where}: 'image_path' must be a non-empty list of paths")
            if not isinstance(report, str) or not report.strip():
                raise ValueError(f"{where}: needs a non-empty 'report'")
            study_id = str(study.get("id") or Path(paths[0]).parent.as_posix())
            chosen = [paths[0]] if images == "first" else paths
            for index, path in enumerate(chosen):
                entries.append(
                    PairEntry(
                        id=study_id if images == "first" else f"{study_id}_{index}",
                        image_path=root / "images" / path,
                        domain="chest_xray",
                        report=_with_findings_header(clean_report(report))
                        if section_headers
                        else clean_report(report),
                    )
                )
        super().__init__(entries, source=annotation, check_files=check_files)


def _with_findings_header(report: str) -> str:
    """ "FINDINGS: <report>" unless the report already starts with a section header."""
    return (
        report
        if re.match(r"^(FINDINGS|IMPRESSION)\s*:", report, flags=re.IGNORECASE)
        else f"FINDINGS: {report}"
    )


# ----------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------


def _needs_split(kind: str, split: str | None) -> str:
    if split is None:
        raise ValueError(f"dataset kind {kind!r} needs a split (e.g. 'train', 'val', 'test')")
    return split


def _build_manifest(root: Path, split: str | None, **kwargs: Any) -> ManifestDataset:
    return ManifestDataset(root / split if split is not None else root, **kwargs)


def _build_synthetic(root: Path, split: str | None, **kwargs: Any) -> ManifestDataset:
    return ManifestDataset(root / _needs_split("synthetic", split) / "metadata.jsonl", **kwargs)


def _build_generated(root: Path, split: str | None, **kwargs: Any) -> ManifestDataset:
    if split is not None:
        raise ValueError(f"generated pairs have no splits; got split={split!r}")
    return ManifestDataset(root / "pairs.jsonl" if root.is_dir() else root, **kwargs)


def _build_pathgen(root: Path, split: str | None, **kwargs: Any) -> PathGenDataset:
    if root.is_file():
        if split is not None:
            raise ValueError(
                f"{root} is an annotation file; pass split=None or the folder holding <split>.jsonl"
            )
        return PathGenDataset(root, **kwargs)
    split = _needs_split("pathgen", split)
    for name in (f"{split}.jsonl", f"{split}.json"):
        if (root / name).is_file():
            return PathGenDataset(root / name, **kwargs)
    raise MissingFileError(
        f"PathGen annotations not found: {root / f'{split}.jsonl'} or {root / f'{split}.json'}"
    )


DATASET_KINDS: dict[str, Callable[..., PairDataset]] = {
    "manifest": _build_manifest,
    "synthetic": _build_synthetic,
    "generated": _build_generated,
    "paired_folder": lambda root, split, **kw: PairedFolderDataset(
        root, _needs_split("paired_folder", split), **kw
    ),
    "mimic_cxr": lambda root, split, **kw: MimicCxrDataset(root, _needs_split("mimic_cxr", split), **kw),
    "pathgen": _build_pathgen,
    "iu_xray": lambda root, split, **kw: IUXrayDataset(root, _needs_split("iu_xray", split), **kw),
}


def build_dataset(kind: str, root: str | Path, split: str | None = None, **kwargs: Any) -> PairDataset:
    """Build a pair dataset by kind name.

    Kinds (``-`` and ``_`` are interchangeable, case-insensitive):

    - ``"manifest"``: ``root`` is a manifest file or folder; with ``split``, the folder ``root/split``.
    - ``"synthetic"``: the synthetic corpus, ``root/<split>/metadata.jsonl``.
    - ``"generated"``: generated pairs, ``root/pairs.jsonl`` (no split).
    - ``"paired_folder"``: ``root/<split>/<stem>.png|jpg`` + ``<stem>.txt`` (needs ``domain=``).
    - ``"mimic_cxr"``: MIMIC-CXR-JPG under ``root``.
    - ``"pathgen"``: an annotation file, or ``root/<split>.jsonl|json``.
    - ``"iu_xray"``: R2Gen's IU-Xray folder.

    Extra keyword arguments go to the adapter's constructor.
    """
    if not isinstance(kind, str):
        raise ValueError(f"dataset kind must be a string, got {type(kind).__name__}")
    key = kind.strip().lower().replace("-", "_")
    if key not in DATASET_KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; known kinds: {', '.join(sorted(DATASET_KINDS))}")
    return DATASET_KINDS[key](Path(root), split, **kwargs)
