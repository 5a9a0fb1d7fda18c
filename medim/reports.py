"""One validation of report text for the library, the CLI, the API and the app.

A report is refused when it is empty, longer than MAX_REPORT_CHARS, has no letters, or is written mostly in a
non-Latin script (the text tokenizer was trained on English reports and would read it as byte noise). Control
characters become spaces and whitespace runs collapse. What passes but the model has not seen gets a notice
instead of silence: characters outside the training reports' alphabet, and words the model cannot read (with the
checkpoint's trained ids: every word holding an id no training report held; without them: a report whose words
are mostly split into pieces by the tokenizer, such as another language or free text far from the training
reports).
"""

from __future__ import annotations

import unicodedata

MAX_REPORT_CHARS = 2_000  # the model reads a few dozen words; anything longer is certainly truncated
MIN_LATIN_SHARE = 0.6  # below this share of Latin letters a report is refused as non-English
UNKNOWN_WORD_SHARE = 0.3  # above this share of words the tokenizer splits into pieces, say so
# how a pipeline may read report ids no training report held: as [MASK] (default) or as written
UNKNOWN_WORD_READINGS = ("mask", "written")


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


def report_notices(text: str, tokenizer, *, what: str = "report", trained_ids=None) -> list[str]:
    """What the model will read differently from what was typed (empty when nothing): characters outside
    ASCII (the training reports' alphabet), read as rare byte pieces, and words it cannot read: given
    ``trained_ids`` (the ids of the checkpoint's training reports), every word holding another id; else a report
    most of whose words the tokenizer does not know as words."""
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
    if words and trained_ids is not None:
        unread = unread_words(text, tokenizer, trained_ids)
        if unread:
            examples = ", ".join(repr(w) for w in list(dict.fromkeys(unread))[:3])
            notices.append(
                f"{len(unread)} of the {len(words)} words of the {what} never occur, spelt like that, in the "
                f"model's training reports (e.g. {examples}): it cannot read them, so the result may ignore them."
            )
    elif words:
        split = [w for w in words if len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) > 1]
        if len(split) / len(words) > UNKNOWN_WORD_SHARE:
            examples = ", ".join(repr(w) for w in split[:3])
            notices.append(
                f"{len(split)} of the {len(words)} words of the {what} are not in the model's vocabulary (e.g. "
                f"{examples}): it was trained on English synthetic reports, so the result may ignore them."
            )
    return notices


def unread_words(text: str, tokenizer, trained_ids) -> list[str]:
    """The words of ``text`` (punctuation stripped) that hold a token id outside ``trained_ids``, in order: the
    words a checkpoint trained on those ids cannot read. Tokenised as the model reads the text, in one piece."""
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    unread_spans = [
        span
        for token, span in zip(encoding["input_ids"], encoding["offset_mapping"])
        if token not in trained_ids
    ]
    words, start = [], 0
    for word in text.split(" "):
        end = start + len(word)
        core = word.strip(".,;:!?()")
        if any(ch.isalpha() for ch in core) and any(a < end and b > start for a, b in unread_spans):
            words.append(core)
        start = end + 1
    return words


def trained_spelling(text: str, tokenizer, trained_ids) -> tuple[str, list[tuple[str, str]]]:
    """``text`` with each word that holds an id outside ``trained_ids`` but is read in full when lower-cased
    (else capitalised) written that way, and the ``(written, read)`` pairs changed. Byte-level BPE gives
    "Pulmonary" and "pulmonary" different ids, so a capital that a training report never put on a word would
    otherwise make it unreadable."""
    words, changed = text.split(" "), []
    for index, word in enumerate(words):
        if not any(ch.isalpha() for ch in word) or _reads(word, index, tokenizer, trained_ids):
            continue
        for form in dict.fromkeys((word.lower(), word[:1].upper() + word[1:].lower())):
            if form != word and _reads(form, index, tokenizer, trained_ids):
                words[index] = form
                changed.append((word, form))
                break
    return " ".join(words), changed


def _reads(word: str, index: int, tokenizer, trained_ids) -> bool:
    """Whether every id of ``word``, tokenised as the ``index``-th word of a text, is in ``trained_ids``."""
    if index == 0:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    else:  # after a space: tokenise behind a one-id word and drop it
        ids = tokenizer("a " + word, add_special_tokens=False)["input_ids"][1:]
    return all(i in trained_ids for i in ids)
