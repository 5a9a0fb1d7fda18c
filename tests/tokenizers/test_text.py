"""BPE text tokenizer: exact round trip after whitespace normalisation, specials, persistence, clear errors."""

import subprocess
import sys

import pytest
from transformers import PreTrainedTokenizerFast

import medim.tokenizers as tokenizers_pkg
from medim.tokenizers import TokenizerNotFoundError
from medim.tokenizers.text import (
    EOS_TOKEN,
    PAD_TOKEN,
    UNK_TOKEN,
    load_text_tokenizer,
    normalize_report_text,
    train_bpe_tokenizer,
)

REPORTS = [
    "FINDINGS: The heart is mildly enlarged. Small left pleural effusion. No pneumothorax. "
    "IMPRESSION: Mild cardiomegaly; small left effusion.",
    "FINDINGS: No focal consolidation. No pleural effusion or pneumothorax. The heart size is normal. "
    "IMPRESSION: No acute cardiopulmonary abnormality.",
    "Benign colonic mucosa with regularly spaced crypts. No tumour is identified. Nuclei are small and round.",
    "Invasive carcinoma with high-grade nuclei (grade 3) and focal necrosis, 40% of the patch.",
] * 10


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(REPORTS, vocab_size=400)


@pytest.mark.parametrize(
    "text",
    [
        REPORTS[0],
        REPORTS[3],
        "  Unseen   words: pneumomediastinum,\tkerley-B lines\n\nand 12×8 mm nodule.  ",
        "Ünïcode, emoji 🙂 and (brackets) [x].",
    ],
)
def test_round_trip_modulo_whitespace(tokenizer, text):
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == normalize_report_text(text)


def test_training_merges_frequent_words(tokenizer):
    # A word seen 20 times becomes a single token instead of one per byte.
    assert len(tokenizer("pneumothorax")["input_ids"]) < len("pneumothorax") / 2
    assert len(tokenizer) == 400


def test_special_tokens_and_padding(tokenizer):
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    assert (tokenizer.pad_token, tokenizer.unk_token, tokenizer.eos_token) == (
        PAD_TOKEN,
        UNK_TOKEN,
        EOS_TOKEN,
    )
    assert len({tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.eos_token_id}) == 3
    batch = tokenizer(["Short report.", REPORTS[0]], padding=True)
    short_ids, long_ids = batch["input_ids"]
    assert len(short_ids) == len(long_ids)
    n_real = sum(batch["attention_mask"][0])
    assert short_ids[n_real:] == [tokenizer.pad_token_id] * (len(short_ids) - n_real)
    # Nothing is appended automatically; special tokens are dropped when decoding with skip_special_tokens.
    assert tokenizer.eos_token_id not in tokenizer("Short report.")["input_ids"]
    ids = tokenizer("Short report.")["input_ids"] + [tokenizer.eos_token_id, tokenizer.pad_token_id]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Short report."


def test_save_and_load_round_trip(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "bpe")
    loaded = load_text_tokenizer(tmp_path / "bpe")
    assert loaded.pad_token == PAD_TOKEN and loaded.pad_token_id == tokenizer.pad_token_id
    assert len(loaded) == len(tokenizer)
    for text in REPORTS[:4]:
        assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
        assert loaded.decode(loaded(text)["input_ids"]) == normalize_report_text(text)


def test_load_missing_path_names_it(tmp_path):
    with pytest.raises(TokenizerNotFoundError, match="no_such_bpe"):
        load_text_tokenizer(tmp_path / "no_such_bpe")
    with pytest.raises(TokenizerNotFoundError, match="hub id .medim-tests/no-such-bpe."):
        load_text_tokenizer("medim-tests/no-such-bpe")


def test_tokenizer_without_pad_needs_explicit_pad(tokenizer, tmp_path):
    no_pad = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, eos_token=EOS_TOKEN)
    no_pad.save_pretrained(tmp_path / "nopad")
    with pytest.raises(ValueError, match="no pad token"):
        load_text_tokenizer(tmp_path / "nopad")
    assert load_text_tokenizer(tmp_path / "nopad", pad_token=PAD_TOKEN).pad_token_id == tokenizer.pad_token_id


def test_bad_training_input():
    with pytest.raises(ValueError, match="vocab_size=100"):
        train_bpe_tokenizer(REPORTS, vocab_size=100)
    with pytest.raises(ValueError, match=r"texts\[1\] must be a str, got int"):
        train_bpe_tokenizer(["fine", 3], vocab_size=300)
    with pytest.raises(ValueError, match="no texts"):
        train_bpe_tokenizer([], vocab_size=300)


def test_package_exports_resolve_lazily():
    for name in tokenizers_pkg.__all__:
        assert getattr(tokenizers_pkg, name) is not None
    # Importing the package must not pay for importing diffusers (or torch).
    code = "import sys, medim.tokenizers; print('diffusers' in sys.modules or 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("text", ["Größe des Herzens normal.", "Heart normal 🫀 ok", "No effusion."])
def test_display_pieces_join_the_bytes_of_one_character(tokenizer, text):
    """Umlauts and emoji are several byte-level tokens; the token view must show the character, not halves."""
    from medim.tokenizers.text import decode_pieces

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    confidences = [0.1 * (i % 9 + 1) for i in range(len(ids))]
    pad, mask = 10_001, 10_002
    pieces = decode_pieces(
        tokenizer, [*ids, pad, pad], [*confidences, 1.0, 1.0], skip={pad}, placeholder={mask: "[MASK]"}
    )
    assert "".join(piece for piece, _ in pieces) == tokenizer.decode(ids)
    assert not any("\ufffd" in piece for piece, _ in pieces)
    assert all(conf in confidences for _, conf in pieces)  # the lowest of a joined character's pieces
    assert len(pieces) == len(ids)  # piece i is token i (the editor re-masks by position)
    if not text.isascii():
        assert any(piece == "" for piece, _ in pieces)  # a character's later bytes: shown by its first token
    masked = decode_pieces(tokenizer, [ids[0], mask], [0.5, None], skip=set(), placeholder={mask: "[MASK]"})
    assert masked[-1] == ("[MASK]", None)
