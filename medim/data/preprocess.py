"""Preprocessing between raw data and MeDiM's inputs: images to [-1, 1] tensors and back, report cleaning.

Images are padded to a square (keeping the whole field of view and its aspect ratio, instead of cropping away
the edges of a radiograph), resized with antialiasing, and scaled to [-1, 1] with grey replicated to three
channels, the VQ image tokenizer's input convention. Reports are whitespace-normalised, reduced to their
FINDINGS and IMPRESSION sections for MIMIC-style radiology reports, and truncated to a token budget at a sentence
boundary when one fits.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = [
    "clean_report",
    "extract_sections",
    "from_model_tensor",
    "pad_to_square",
    "split_sentences",
    "to_model_tensor",
    "truncate_report",
]

# ----------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------


def pad_to_square(image: Image.Image, fill: int | tuple[int, ...] = 0) -> Image.Image:
    """Centre ``image`` on a square canvas of side max(width, height) filled with ``fill``.

    Args:
        image: a PIL image of any mode.
        fill: canvas colour, an int (grey, or the same value on every band) or a tuple with one value per band.

    Returns:
        A new square image of the same mode (``image`` itself when it is already square).
    """
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    bands = len(image.getbands())
    if isinstance(fill, tuple) and len(fill) != bands:
        raise ValueError(
            f"fill {fill} has {len(fill)} values but the image mode {image.mode!r} has {bands} bands"
        )
    if isinstance(fill, int) and bands > 1:
        fill = (fill,) * bands
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def to_model_tensor(
    image: Image.Image, size: int, *, channels: int = 3, fill: int | tuple[int, ...] = 0
) -> torch.Tensor:
    """Pad to square, resize (antialiased bicubic) and scale an image to MeDiM's pixel convention.

    Args:
        image: a PIL image; greyscale images are replicated to 3 channels, colour ones averaged to 1 when
            ``channels=1``.
        size: output side length in pixels.
        channels: 3 (the VQ tokenizer's input) or 1.
        fill: padding colour in 0–255 (black by default, the colour of a radiograph's collimated border).

    Returns:
        FloatTensor [channels, size, size] with values in [-1, 1].
    """
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
    target_mode = "L" if channels == 1 else "RGB"
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    if isinstance(fill, int) and not 0 <= fill <= 255:
        raise ValueError(f"fill must be in 0..255, got {fill}")
    square = pad_to_square(image, fill)
    # Pillow's resize widens the filter support by the reduction factor, so downsampling is antialiased.
    resized = square.resize((size, size), Image.Resampling.BICUBIC)
    if resized.mode != target_mode:
        resized = resized.convert(target_mode)  # L→RGB replicates grey; RGB→L uses ITU-R 601 luma
    pixels = np.asarray(resized, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1)
    return tensor / 127.5 - 1.0


def from_model_tensor(tensor: torch.Tensor) -> Image.Image:
    """Turn a model-space image back into a PIL image.

    Args:
        tensor: [C, H, W] (or [1, C, H, W]) with C in {1, 3}, values nominally in [-1, 1]; values outside are
            clamped.

    Returns:
        ``PIL.Image.Image`` in mode ``"L"`` (C = 1) or ``"RGB"`` (C = 3), size (W, H).
    """
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError(
            f"expected an image tensor of shape [C, H, W] with C in (1, 3), got {tuple(tensor.shape)}"
        )
    values = tensor.detach().to(device="cpu", dtype=torch.float32)
    if not torch.isfinite(values).all():
        raise ValueError("image tensor contains NaN or Inf values")
    pixels = ((values.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if pixels.shape[2] == 1:
        return Image.fromarray(pixels[:, :, 0], mode="L")
    return Image.fromarray(pixels, mode="RGB")


# ----------------------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------------------

_WHITESPACE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([.,;:!?])")
# A sentence ends at . ! or ? followed by whitespace; "3.5 cm" and "T12." inside a word are not boundaries.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def clean_report(text: str) -> str:
    """Normalise whitespace: every run of whitespace (newlines, tabs, non-breaking spaces) becomes one space,
    spaces before punctuation are removed, and the ends are stripped."""
    if not isinstance(text, str):
        raise ValueError(f"report must be a str, got {type(text).__name__}")
    text = _WHITESPACE.sub(" ", text).strip()
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)


def split_sentences(text: str) -> list[str]:
    """Split cleaned report text into sentences at ``.``, ``!`` or ``?`` followed by whitespace."""
    return [sentence for sentence in _SENTENCE_END.split(text.strip()) if sentence]


def _token_count(tokenizer: Any, text: str) -> int:
    encoded = tokenizer.encode(text, add_special_tokens=False)
    return len(getattr(encoded, "ids", encoded))  # tokenizers.Tokenizer returns an Encoding, HF a list


def truncate_report(text: str, tokenizer: Any, max_tokens: int) -> tuple[str, bool]:
    """Shorten ``text`` to at most ``max_tokens`` tokens, cutting after a whole sentence when one fits.

    Special tokens are not counted (the sequence packer adds them). When not even the first sentence fits, the
    cut falls at the last whole word that fits, and as a last resort inside a word (decoded tokens).

    Args:
        text: report text (cleaned with :func:`clean_report` first, so sentences are separated by spaces).
        tokenizer: a Hugging Face tokenizer (``transformers`` or ``tokenizers``) with ``encode``.
        max_tokens: the token budget, ≥ 1.

    Returns:
        ``(text, was_truncated)``; ``text`` is returned unchanged when it already fits.
    """
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise ValueError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
    if not isinstance(text, str):
        raise ValueError(f"report must be a str, got {type(text).__name__}")
    if _token_count(tokenizer, text) <= max_tokens:
        return text, False

    def fits(candidate: str) -> bool:
        return _token_count(tokenizer, candidate) <= max_tokens

    sentences = split_sentences(text)
    for count in range(len(sentences) - 1, 0, -1):
        candidate = " ".join(sentences[:count])
        if fits(candidate):
            return candidate, True

    # Not even one sentence fits: keep the longest prefix of whole words (binary search; token counts grow
    # with the prefix).
    words = text.split()
    low, high = 0, len(words)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(" ".join(words[:middle])):
            low = middle
        else:
            high = middle - 1
    if low > 0:
        return " ".join(words[:low]), True
    encoded = tokenizer.encode(text, add_special_tokens=False)
    ids = list(getattr(encoded, "ids", encoded))[:max_tokens]
    return tokenizer.decode(ids).strip(), True


# Section headings of radiology reports (MIMIC-CXR, IU-Xray/OpenI). Upper-case "WORDS:" that are not listed
# here still end the previous section.
_FINDINGS_HEADINGS = frozenset(
    {
        "FINDINGS",
        "FINDING",
        "FINDINGS AND IMPRESSION",
        "FINDINGS AND IMPRESSIONS",
        "FINDINGS/IMPRESSION",
        "FINDINGS/IMPRESSIONS",
        "IMPRESSION AND FINDINGS",
        "IMPRESSION/FINDINGS",
    }
)
_IMPRESSION_HEADINGS = frozenset(
    {"IMPRESSION", "IMPRESSIONS", "CONCLUSION", "CONCLUSIONS", "SUMMARY", "INTERPRETATION", "OPINION"}
)
_ADMIN_HEADINGS = frozenset(
    {
        "INDICATION",
        "INDICATIONS",
        "HISTORY",
        "CLINICAL HISTORY",
        "CLINICAL INDICATION",
        "CLINICAL INFORMATION",
        "REASON FOR EXAM",
        "REASON FOR EXAMINATION",
        "REASON FOR STUDY",
        "COMPARISON",
        "COMPARISONS",
        "TECHNIQUE",
        "EXAMINATION",
        "EXAM",
        "TYPE OF EXAMINATION",
        "PROCEDURE",
        "WET READ",
        "NOTIFICATION",
        "RECOMMENDATION",
        "RECOMMENDATIONS",
        "ADDENDUM",
        "REFERENCE EXAM",
        "STUDY",
    }
)
_KNOWN_HEADINGS = _FINDINGS_HEADINGS | _IMPRESSION_HEADINGS | _ADMIN_HEADINGS
# Upper-case headings ("WET READ:", "PA AND LATERAL VIEWS:") and known headings in any case ("Findings:").
_UPPER_HEADING = re.compile(r"\b([A-Z][A-Z/&-]*(?:[ \t]+[A-Z][A-Z/&-]*){0,5})[ \t]*:")
_ANY_CASE_HEADING = re.compile(
    r"\b(" + "|".join(sorted((re.escape(h) for h in _KNOWN_HEADINGS), key=len, reverse=True)) + r")[ \t]*:",
    re.IGNORECASE,
)
_FINAL_REPORT = re.compile(r"^\s*FINAL REPORT\b", re.IGNORECASE)


def _find_headings(text: str) -> list[tuple[int, int, str]]:
    """(start, end, NAME) of every heading, in order; overlapping matches keep the earliest/longest."""
    found: list[tuple[int, int, str]] = []
    for match in _UPPER_HEADING.finditer(text):
        name = match.group(1).upper()
        if len(name) >= 3 and not name.isdigit():
            found.append((match.start(), match.end(), name))
    for match in _ANY_CASE_HEADING.finditer(text):
        found.append((match.start(), match.end(), match.group(1).upper()))
    found.sort(key=lambda item: (item[0], -(item[1] - item[0])))
    headings: list[tuple[int, int, str]] = []
    for start, end, name in found:
        if headings and start < headings[-1][1]:
            continue
        headings.append((start, end, name))
    return headings


def extract_sections(text: str) -> dict[str, str]:
    """Extract the FINDINGS and IMPRESSION sections of a radiology report.

    Recognised headings (any case): FINDINGS/FINDING, IMPRESSION(S)/CONCLUSION(S)/SUMMARY/INTERPRETATION/
    OPINION; a combined "FINDINGS AND IMPRESSION:" section counts as findings. Any other upper-case heading
    ("INDICATION:", "COMPARISON:", "WET READ:", ...) ends the section before it. Repeated sections are joined.

    Fallbacks when neither section is present: a report without any heading is all findings (plain reports,
    captions); a report with only other headings contributes its last paragraph (the MIMIC-CXR convention for
    unsectioned reports), without a leading heading.

    Returns:
        ``{"findings": str, "impression": str}``, each cleaned with :func:`clean_report` (``""`` if absent).
    """
    if not isinstance(text, str):
        raise ValueError(f"report must be a str, got {type(text).__name__}")
    body = _FINAL_REPORT.sub("", text, count=1)
    headings = _find_headings(body)
    sections: dict[str, list[str]] = {"findings": [], "impression": []}
    for index, (_, end, name) in enumerate(headings):
        stop = headings[index + 1][0] if index + 1 < len(headings) else len(body)
        content = clean_report(body[end:stop])
        if not content:
            continue
        if name in _FINDINGS_HEADINGS:
            sections["findings"].append(content)
        elif name in _IMPRESSION_HEADINGS:
            sections["impression"].append(content)
    result = {key: " ".join(parts) for key, parts in sections.items()}
    if result["findings"] or result["impression"]:
        return result
    if not headings:
        return {"findings": clean_report(body), "impression": ""}
    paragraphs = [p for p in re.split(r"\n\s*\n", body) if p.strip()]
    last = paragraphs[-1] if paragraphs else ""
    last_headings = _find_headings(last)
    if last_headings and not last[: last_headings[0][0]].strip():
        last = last[last_headings[0][1] :]
    return {"findings": clean_report(last), "impression": ""}
