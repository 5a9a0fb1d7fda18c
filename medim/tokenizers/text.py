"""Text tokenizer: a small byte-level BPE trained on reports, exposed as a transformers ``PreTrainedTokenizerFast``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from ._hub import resolve_pretrained_dir

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
EOS_TOKEN = "<eos>"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, EOS_TOKEN)
_BYTE_ALPHABET_SIZE = 256


def normalize_report_text(text: str) -> str:
    """The text a decoded report reads as: runs of whitespace become one space, ends are stripped.

    ``decode(encode(text)) == normalize_report_text(text)`` for NFC-normalised input.
    """
    return " ".join(text.split())


def _checked_texts(texts: Iterable[str]) -> Iterator[str]:
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{index}] must be a str, got {type(text).__name__}")
        yield text


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = 1024, *, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on report texts.

    Byte-level BPE needs no unknown token and decodes back to the input text exactly, after the normaliser
    (Unicode NFC, whitespace runs collapsed to one space, ends stripped). Special tokens are ``<pad>`` (id 0, the
    pad token), ``<unk>`` and ``<eos>``; nothing is added automatically when encoding, so sequence packing
    decides where ``<eos>`` goes.

    Args:
        texts: training reports.
        vocab_size: target vocabulary size including the 256 byte symbols and the 3 special tokens; the result can
            be smaller when the corpus has fewer distinct merges.
        min_frequency: minimum pair count for a merge.

    Returns:
        A ``PreTrainedTokenizerFast`` with ``pad_token``, ``unk_token`` and ``eos_token`` set.
    """
    minimum = _BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size={vocab_size} is below the byte alphabet plus special tokens ({minimum})"
        )
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency!r}")

    tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    )
    # No prefix space: a report's first word is encoded like any word that starts a text, and decoding adds no
    # leading space back.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    seen = 0

    def counted(stream: Iterable[str]) -> Iterator[str]:
        nonlocal seen
        for text in stream:
            seen += 1
            yield text

    tokenizer.train_from_iterator(counted(_checked_texts(texts)), trainer=trainer)
    if seen == 0:
        raise ValueError("train_bpe_tokenizer received no texts")
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        eos_token=EOS_TOKEN,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )


def load_text_tokenizer(
    name_or_path: str | os.PathLike, *, pad_token: str | None = None
) -> PreTrainedTokenizerBase:
    """Load a text tokenizer saved with ``save_pretrained`` from a local directory or a Hugging Face Hub id.

    A local directory is used when it exists; otherwise the id is fetched from the hub (served from the cache when
    ``HF_HUB_OFFLINE=1``). Raises ``TokenizerNotFoundError`` naming the path/id when neither has it.

    Args:
        name_or_path: directory holding ``tokenizer.json`` or a hub repo id.
        pad_token: added as the pad token when the tokenizer has none (e.g. LLaMA's). Without it such a
            tokenizer is rejected, since MeDiM pads report positions.
    """
    directory = resolve_pretrained_dir(
        name_or_path,
        ["tokenizer.json"],
        what="text tokenizer",
        optional_patterns=["tokenizer_config.json", "special_tokens_map.json", "*.model"],
    )
    tokenizer = AutoTokenizer.from_pretrained(directory)
    if tokenizer.pad_token is None:
        if pad_token is None:
            raise ValueError(
                f"text tokenizer {str(name_or_path)!r} has no pad token; pass pad_token=... to add one"
            )
        tokenizer.add_special_tokens({"pad_token": pad_token})
    return tokenizer


MAX_UTF8_BYTES = 4  # a character is at most 4 bytes, so at most 4 byte-level pieces


def decode_pieces(
    tokenizer, ids: list[int], confidences: list[float | None], *, skip: set[int], placeholder: dict[int, str]
) -> list[tuple[str, float | None]]:
    """Per-token text for display, one ``(text, confidence)`` per token not in ``skip``, so piece i is token i.

    Byte-level pieces of one multi-byte character (an umlaut, an emoji) decode to undecodable halves on their
    own; here the first token of the character carries the whole character and the tokens after it carry ""
    (nothing more to show), all with the character's lowest confidence. Ids in ``placeholder`` are shown as the
    given text with no confidence (e.g. [MASK]) and end any pending character."""
    pieces: list[tuple[str, float | None]] = []
    pending: list[int] = []
    pending_conf: list[float | None] = []

    def emit(text: str) -> None:
        known = [c for c in pending_conf if c is not None and c == c]
        confidence = min(known) if known else None
        pieces.append((text, confidence))
        pieces.extend(("", confidence) for _ in pending[1:])
        pending.clear()
        pending_conf.clear()

    def decode() -> str:  # as the report text is decoded (special ids such as <eos> show nothing)
        return tokenizer.decode(pending, skip_special_tokens=True)

    for token, confidence in zip(ids, confidences):
        if token in skip:
            continue
        if token in placeholder:
            if pending:
                emit(decode())
            pieces.append((placeholder[token], None))
            continue
        pending.append(token)
        pending_conf.append(confidence)
        text = decode()
        if "\ufffd" not in text or len(pending) >= MAX_UTF8_BYTES:
            emit(text)
    if pending:
        emit(decode())
    return pieces
