"""One validation of report text for the library, the CLI, the API and the app.

A report is refused when it is empty, longer than MAX_REPORT_CHARS, has no letters, or is written mostly in a
non-Latin script (the text tokenizer was trained on English reports and would read it as byte noise). Control
characters become spaces and whitespace runs collapse. What passes but the model has not seen gets a notice
instead of silence: characters outside the training reports' alphabet, and a report whose words are mostly
unknown to the tokenizer (another language, free text far from the training reports).
"""

from __future__ import annotations

import unicodedata

MAX_REPORT_CHARS = 2_000  # the model reads a few dozen words; anything longer is certainly truncated
MIN_LATIN_SHARE = 0.6  # below this share of Latin letters a report is refused as non-English
UNKNOWN_WORD_SHARE = 0.3  # above this share of words the tokenizer splits into pieces, say so


class ReportError(ValueError):
    """Report text that is refused; the message is written for the person who typed it."""


def clean_report_text(text: str | None, *, what: str = "report") -> str:
    """The report with control characters replaced and whitespace collapsed, or ReportError."""
    if text is None or not isinstance(text, str) or not text.strip():
        raise ReportError(f"The {what} is empty: type a few sentences, e.g. 'FINDINGS: Small left effusion.'")
    if len(text) > MAX_REPORT_CHARS:
        raise ReportError(
            f"The {what} has {len(text):,} characters; the limit is {MAX_REPORT_CHARS:,} (the model reads "
            "only the first few dozen words). Shorten it to the findings and impression."
        )
    cleaned = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    cleaned = " ".join(cleaned.split())
    letters = [ch for ch in cleaned if ch.isalpha()]
    if not letters:
        raise ReportError(f"The {what} has no words in it: {cleaned[:60]!r}")
    latin = sum(1 for ch in letters if "LATIN" in unicodedata.name(ch, ""))
    if latin / len(letters) < MIN_LATIN_SHARE:
        raise ReportError(
            f"The {what} does not look like English ({latin}/{len(letters)} letters are Latin). "
            "This model was trained on English reports only; please write the report in English."
        )
    return cleaned


def report_notices(text: str, tokenizer, *, what: str = "report") -> list[str]:
    """What the model will read differently from what was typed (empty when nothing): characters outside
    ASCII (the training reports' alphabet), read as rare byte pieces, and a report most of whose words the
    tokenizer does not know as words."""
    notices = []
    unusual = sorted({ch for ch in text if not ch.isascii()})
    if unusual:
        shown = " ".join(unusual[:8]) + (" …" if len(unusual) > 8 else "")
        notices.append(
            f"The {what} has characters the model was not trained on ({shown}); they are kept but read as rare "
            "byte pieces, so the result follows them less."
        )
    words = [word.strip(".,;:!?()") for word in text.split()]
    words = [word for word in words if any(ch.isalpha() for ch in word)]
    if words:
        split = [w for w in words if len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) > 1]
        if len(split) / len(words) > UNKNOWN_WORD_SHARE:
            examples = ", ".join(repr(w) for w in split[:3])
            notices.append(
                f"{len(split)} of the {len(words)} words of the {what} are not in the model's vocabulary (e.g. "
                f"{examples}): it was trained on English synthetic reports, so the result may ignore them."
            )
    return notices
