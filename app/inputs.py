"""User input for the demo: report text checks, scan uploads, example pairs and the pair-prompt builder.

Reports are checked before they reach the pipeline: empty and over-long ones are refused, reports written mostly
in a non-Latin script are refused (the model's tokenizer was trained on English reports and would read them as
byte noise). Uploads are read by content through `medim.data.io.load_image`, never by their file extension.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from medim.data.io import ImageLoadError, load_image
from medim.reports import ReportError, clean_report_text

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
MAX_EXAMPLES = 40

FALLBACK_REPORTS = {
    "chest_xray": [
        "FINDINGS: The heart is normal in size. The lungs are clear. No pleural effusion or pneumothorax. "
        "IMPRESSION: No acute cardiopulmonary process.",
        "FINDINGS: Moderate left pleural effusion. The heart is mildly enlarged. IMPRESSION: Left effusion and "
        "mild cardiomegaly.",
        "FINDINGS: Small right pneumothorax. No pleural effusion. IMPRESSION: Small right pneumothorax.",
    ],
    "pathology": [
        "Benign colonic mucosa with regularly spaced crypts in the lamina propria. No necrosis. No tumour seen.",
        "The patch shows adenocarcinoma with crowded, angulated glands and frequent mitoses. Moderately "
        "differentiated.",
    ],
}


class InputError(ValueError):
    """User input the demo refuses; the message is written for the user."""


# ---------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------


def check_report(text: str | None, *, what: str = "report") -> str:
    """`medim.reports.clean_report_text` (the one validation the library, CLI and app share) as InputError."""
    try:
        return clean_report_text(text, what=what)
    except ReportError as error:
        raise InputError(str(error)) from error


# ---------------------------------------------------------------------------------------------------------
# Scans
# ---------------------------------------------------------------------------------------------------------


def load_scan(path: str | Path | None) -> Image.Image:
    """Read an uploaded scan (PNG, JPEG or greyscale DICOM, recognised by content) or raise InputError."""
    if path is None or str(path) == "":
        raise InputError("No scan uploaded: drop a PNG, JPEG or DICOM file, or pick an example.")
    try:
        image = load_image(Path(path), max_pixels=MAX_UPLOAD_PIXELS, max_bytes=MAX_UPLOAD_BYTES)
    except ImageLoadError as error:
        # load_image names its source; the upload's temporary path means nothing to the user
        raise InputError(
            f"The upload is not a usable scan: {_without_path(str(error), str(path))}"
        ) from error
    if min(image.size) < 8:
        raise InputError(f"The scan is only {image.size[0]}×{image.size[1]} pixels; it needs at least 8×8.")
    return image


def _without_path(message: str, path: str) -> str:
    """The loader's message without the upload's temporary path (it names its source first: "<path>: why")."""
    for prefix in (f"{path}: ", f"{Path(path).name}: "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message.replace(path, "the upload").replace(Path(path).name, "the upload")


def model_view(image: Image.Image, size: int) -> Image.Image:
    """What the model sees of a scan: padded to a square and resized to the model's input size (for preview)."""
    from medim.data.preprocess import from_model_tensor, to_model_tensor

    return from_model_tensor(to_model_tensor(image, size))


# ---------------------------------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One example pair from assets/examples/<set>/metadata.jsonl."""

    id: str
    domain: str
    report: str
    image_path: Path | None

    @property
    def label(self) -> str:
        words = self.report.split()
        preview = " ".join(words[:9]) + (" …" if len(words) > 9 else "")
        return f"[{self.domain}] {preview}"


def load_examples(root: Path = EXAMPLES_DIR, limit: int = MAX_EXAMPLES) -> list[Example]:
    """Examples from every root/*/metadata.jsonl (image paths relative to that file); [] when there are none.

    Lines that are not valid JSON objects with a report are skipped, so a half-written file never breaks the app.
    """
    examples: list[Example] = []
    for manifest in sorted(root.glob("*/metadata.jsonl")) if root.is_dir() else []:
        for line in manifest.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict) or not isinstance(record.get("report"), str):
                continue
            image = record.get("image")
            image_path = (manifest.parent / image).resolve() if isinstance(image, str) else None
            if image_path is not None and (
                not image_path.is_file() or not image_path.is_relative_to(manifest.parent.resolve())
            ):
                image_path = None
            examples.append(
                Example(
                    id=str(record.get("id", len(examples))),
                    domain=str(record.get("domain", "")),
                    report=record["report"],
                    image_path=image_path,
                )
            )
            if len(examples) >= limit:
                return examples
    return examples


def fallback_examples() -> list[Example]:
    """Built-in example reports for when assets/examples is missing (no images)."""
    return [
        Example(id=f"{domain}-{i}", domain=domain, report=report, image_path=None)
        for domain, reports in FALLBACK_REPORTS.items()
        for i, report in enumerate(reports)
    ]


# ---------------------------------------------------------------------------------------------------------
# Pair prompts
# ---------------------------------------------------------------------------------------------------------

UNCONDITIONAL = "(none — unconditional)"

# domain -> finding -> (detail choices, first-sentence template); {detail} is filled from the detail dropdown.
PROMPT_TEMPLATES: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {
    "chest_xray": {
        "Normal study": (("",), "FINDINGS: The heart is normal in size. The lungs are clear."),
        "Pleural effusion": (
            ("small left", "moderate right", "large left", "moderate bilateral"),
            "FINDINGS: {Detail} pleural effusion.",
        ),
        "Pneumothorax": (("small left", "small right", "large right"), "FINDINGS: {Detail} pneumothorax."),
        "Cardiomegaly": (("mild", "moderate", "severe"), "FINDINGS: {Detail} cardiomegaly."),
        "Consolidation": (
            ("left lower lobe", "right lower lobe", "right upper lobe"),
            "FINDINGS: {Detail} consolidation.",
        ),
        "Lung nodule": (
            ("right upper lung", "left mid lung", "left lower lung"),
            "FINDINGS: {Detail} nodule.",
        ),
        "Pulmonary edema": (("mild", "moderate", "severe"), "FINDINGS: {Detail} pulmonary edema."),
    },
    "pathology": {
        "Benign tissue": (
            ("colonic mucosa", "breast tissue", "lung parenchyma"),
            "Benign {detail} without atypia.",
        ),
        "Low-grade tumour": (
            ("adenocarcinoma", "ductal carcinoma"),
            "This H&E patch shows {detail} with crowded, angulated glands.",
        ),
        "High-grade tumour": (
            ("adenocarcinoma", "carcinoma"),
            "Solid sheets of {detail} cells with little gland formation infiltrate the stroma.",
        ),
        "Necrosis": (("focal", "extensive"), "There is {detail} necrosis."),
        "Inflammation": (("mild", "dense"), "There is {detail} lymphocytic inflammation."),
    },
}


def prompt_findings(domain: str) -> list[str]:
    """Finding choices for a domain, unconditional first."""
    return [UNCONDITIONAL, *PROMPT_TEMPLATES.get(domain, {})]


def prompt_details(domain: str, finding: str) -> list[str]:
    """Detail choices (side/severity/tissue) for a finding; [] when the finding has none."""
    details = PROMPT_TEMPLATES.get(domain, {}).get(finding, ((),))[0]
    return [d for d in details if d]


def build_prompt(domain: str, finding: str | None, detail: str | None) -> str:
    """The first report sentence for a prompted pair ('' for an unconditional pair)."""
    if not finding or finding == UNCONDITIONAL:
        return ""
    templates = PROMPT_TEMPLATES.get(domain, {})
    if finding not in templates:
        raise InputError(
            f"Unknown finding {finding!r} for domain {domain!r}; choose one of {list(templates)}"
        )
    details, template = templates[finding]
    detail = detail if detail in details else details[0]
    return template.format(detail=detail, Detail=detail[:1].upper() + detail[1:])
