"""medim.reports with the shipped default's tokenizer and training ids: which words a checkpoint can read, and
reading a capitalised word in the case its training reports wrote it."""

import json
from pathlib import Path

import pytest

from medim.reports import report_notices, trained_spelling, unread_words
from medim.tokenizers.text import load_text_tokenizer

DEFAULT = Path(__file__).resolve().parents[2] / "assets" / "default"


@pytest.fixture(scope="module")
def tokenizer():
    return load_text_tokenizer(DEFAULT / "text_tokenizer")


@pytest.fixture(scope="module")
def trained():
    return frozenset(json.loads((DEFAULT / "trained_text_ids.json").read_text())["ids"])


def test_training_words_read_and_new_words_do_not(tokenizer, trained):
    assert (
        unread_words("FINDINGS: Small left pleural effusion. Heart size is normal.", tokenizer, trained) == []
    )
    assert unread_words("FINDINGS: Small left zqxv effusion, vasculature normal.", tokenizer, trained) == [
        "zqxv",
        "vasculature",
    ]


def test_a_capitalised_training_word_is_read_lower_case_and_nothing_else_changes(tokenizer, trained):
    written = "FINDINGS: Moderate pulmonary edema. IMPRESSION: Moderate pulmonary edema."
    capitalised = "FINDINGS: Moderate Pulmonary edema. IMPRESSION: Moderate pulmonary Edema."
    assert unread_words(capitalised, tokenizer, trained) == ["Pulmonary", "Edema"]
    respelt, changed = trained_spelling(capitalised, tokenizer, trained)
    assert changed == [("Pulmonary", "pulmonary"), ("Edema.", "edema.")]
    assert unread_words(respelt, tokenizer, trained) == []
    assert tokenizer(respelt)["input_ids"] == tokenizer(written)["input_ids"]
    # a word that reads as written, or that no case makes readable, is left alone
    assert trained_spelling(written, tokenizer, trained) == (written, [])
    assert trained_spelling("Zqxv heart.", tokenizer, trained)[0] == "Zqxv heart."


def test_the_notice_names_the_unread_words(tokenizer, trained):
    notices = report_notices("FINDINGS: Small zqxv effusion.", tokenizer, trained_ids=trained)
    assert len(notices) == 1 and "'zqxv'" in notices[0] and "1 of the 4 words" in notices[0]
    assert report_notices("FINDINGS: Small left effusion.", tokenizer, trained_ids=trained) == []
