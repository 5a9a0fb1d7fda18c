"""benchmarks.unknown_words: the made-up-word shift on validation pairs, and its table on a tiny corpus."""

import json

import numpy as np
import pytest

from benchmarks.unknown_words import capitalised_words, made_up_words, main, with_changed_words
from medim.commands.init_random import build_random_pipeline
from medim.data.synthetic import write_corpus
from medim.evaluation import load_eval_dataset

REPORT = "FINDINGS: Small left pleural effusion. Heart size is normal. IMPRESSION: Left effusion."


def test_made_up_words_keep_headers_punctuation_lengths_and_capitals():
    assert made_up_words(REPORT, 0.0, np.random.default_rng(0)) == REPORT
    everything = made_up_words(REPORT, 1.0, np.random.default_rng(0))
    written, made = REPORT.split(" "), everything.split(" ")
    assert len(made) == len(written)
    for old, new in zip(written, made):
        if old.strip(".:").isupper():
            assert new == old  # section headers stay
        else:
            assert new != old and len(new) == len(old)
            assert new[-1] == old[-1] if not old[-1].isalpha() else True
            assert new[0].isupper() == old[0].isupper()


def test_made_up_reports_are_seeded_per_pair_and_the_rate_is_the_share_of_words(tmp_path):
    write_corpus(tmp_path, 80, seed=0, image_size=16, split_fractions=(0.5, 0.25, 0.25), progress=False)
    records = [load_eval_dataset(tmp_path, "val")[i] for i in range(20)]
    first = with_changed_words(records, made_up_words, 0.3)
    again = with_changed_words(records, made_up_words, 0.3)
    assert [r.report for r in first] == [r.report for r in again]
    assert [r.image for r in first] == [r.image for r in records] and [r.labels for r in first] == [
        r.labels for r in records
    ]
    changed = sum(a != b for r, m in zip(records, first) for a, b in zip(r.report.split(), m.report.split()))
    words = sum(len([w for w in r.report.split() if not w.strip(".:").isupper()]) for r in records)
    assert 0.2 < changed / words < 0.4


def test_the_table_scores_each_checkpoint_with_written_and_made_up_reports(tmp_path):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 80, seed=0, image_size=16, split_fractions=(0.5, 0.25, 0.25), progress=False)
    pipe = build_random_pipeline(hidden=32, layers=1, image_size=16, grid=4, codebook=16, text_tokens=80)
    checkpoint = pipe.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "unknown_words.md"
    argv = [
        "--checkpoint",
        f"random={checkpoint}",
        "--corpus",
        str(corpus),
        "--pairs",
        "12",
        "--threads",
        "1",
    ]
    assert main([*argv, "--rate", "0.3", "--respelt", "--out", str(out)]) == 0
    assert "| random | pathology |" in out.read_text()
    entry = json.loads(out.with_suffix(".json").read_text())["random"]
    # the benchmark gives the checkpoint its corpus's training ids, so by default it reads the others as [MASK]
    assert entry["unknown_word_reading"] == "[MASK]"
    assert 0 <= entry["respelt"] <= 1
    table = out.read_text()
    assert (
        "judge F1, capitalised words, respelt" in table
        and "judge F1, made-up words, read as written" in table
    )
    for domain in ("chest_xray", "pathology"):
        written, made_up = entry["written"][domain], entry["made-up words"][domain]
        # validation reports are written from the training templates (a few slot values such as sizes aside)
        assert written["untrained_ids"] < 0.01 < made_up["untrained_ids"]
        assert entry["made-up words, read as written"][domain]["untrained_ids"] == made_up["untrained_ids"]
        for scores in (written, made_up):
            assert 0 <= scores["judge_f1"] <= 1 and 0 <= scores["infill"] <= 1


def test_a_checkpoint_must_be_named(tmp_path):
    with pytest.raises(SystemExit):
        main(["--checkpoint", "no-name", "--corpus", str(tmp_path)])


def test_capitalised_words_change_only_the_first_letter_of_lower_case_words():
    assert capitalised_words(REPORT, 0.0, np.random.default_rng(0)) == REPORT
    everything = capitalised_words(REPORT, 1.0, np.random.default_rng(0))
    for old, new in zip(REPORT.split(" "), everything.split(" ")):
        assert new.lower() == old.lower() and new[1:] == old[1:] and new[0].isupper()
