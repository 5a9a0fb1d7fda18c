"""Report metrics against hand-computed values: corpus-level pycocoevalcap and sentence-level NLTK."""

import math

import pytest

from medim.metrics import text
from medim.metrics.text import (
    JavaNotFoundError,
    corpus_report_metrics,
    java_available,
    ptb_tokenize,
    report_metrics,
    sentence_bleu_nltk,
)

needs_java = pytest.mark.skipif(not java_available(), reason="pycocoevalcap's tokenizer and METEOR need java")

HYP = "The cat sat on the mat."
REF = "The cat sat on a mat."
# unigrams: the(clipped 1) cat sat on mat = 5/6; bigrams: the-cat cat-sat sat-on = 3/5;
# trigrams: the-cat-sat cat-sat-on = 2/4; 4-grams: the-cat-sat-on = 1/3; equal lengths so no brevity penalty.
B1, B2, B3, B4 = (
    5 / 6,
    math.sqrt(5 / 6 * 3 / 5),
    (5 / 6 * 3 / 5 * 2 / 4) ** (1 / 3),
    (5 / 6 * 3 / 5 * 2 / 4 / 3) ** 0.25,
)


def test_nltk_sentence_bleu_matches_hand_computation():
    scores = sentence_bleu_nltk([HYP], [REF])
    assert scores["nltk_sentence_bleu_1"] == pytest.approx(B1)
    assert scores["nltk_sentence_bleu_2"] == pytest.approx(B2)
    assert scores["nltk_sentence_bleu_3"] == pytest.approx(B3)
    assert scores["nltk_sentence_bleu_4"] == pytest.approx(B4)


def test_nltk_sentence_bleu_is_a_mean_over_reports():
    scores = sentence_bleu_nltk([HYP, "completely different words"], [REF, REF])
    assert scores["nltk_sentence_bleu_1"] == pytest.approx(B1 / 2)


@needs_java
def test_ptb_tokenizer_lowercases_drops_punctuation_and_keeps_empty_lines():
    assert ptb_tokenize(["The Heart, is NORMAL.", "", "No effusion; no pneumothorax."]) == [
        "the heart is normal",
        "",
        "no effusion no pneumothorax",
    ]


@needs_java
def test_corpus_bleu_and_rouge_match_hand_computation():
    scores = corpus_report_metrics([HYP], [REF], metrics=("bleu", "rouge"))
    assert scores["coco_bleu_1"] == pytest.approx(B1, rel=1e-6)
    assert scores["coco_bleu_2"] == pytest.approx(B2, rel=1e-6)
    assert scores["coco_bleu_4"] == pytest.approx(B4, rel=1e-6)
    # LCS = "the cat sat on mat" (5 of 6 words each way): P = R = F = 5/6
    assert scores["coco_rouge_l"] == pytest.approx(5 / 6)


@needs_java
def test_corpus_bleu_pools_counts_unlike_sentence_average():
    hypotheses = [HYP, "small left effusion"]
    references = [REF, "large right effusion"]
    corpus = corpus_report_metrics(hypotheses, references, metrics=("bleu",))
    sentence = sentence_bleu_nltk(hypotheses, references)
    # pooled: unigrams (5+1)/(6+3), bigrams (3+0)/(5+2); the second report alone has no bigram match -> 0
    assert corpus["coco_bleu_2"] == pytest.approx(math.sqrt(6 / 9 * 3 / 7), rel=1e-6)
    assert sentence["nltk_sentence_bleu_2"] == pytest.approx(B2 / 2)
    assert corpus["coco_bleu_2"] != pytest.approx(sentence["nltk_sentence_bleu_2"], abs=0.05)


REPORTS = ["the heart is enlarged", "small left pleural effusion", "no pneumothorax is seen"]


@needs_java
def test_cider_ranks_exact_copies_above_mismatches():
    perfect = corpus_report_metrics(REPORTS, REPORTS, metrics=("cider",))
    shuffled = corpus_report_metrics(REPORTS[1:] + REPORTS[:1], REPORTS, metrics=("cider",))
    assert perfect["coco_cider"] > 1.0 > shuffled["coco_cider"]


@needs_java
@pytest.mark.slow  # the METEOR jar loads a 60 MB paraphrase table: ~8 s on an idle CPU, a minute on a busy one
def test_meteor_runs_offline_and_ranks_exact_copies_above_mismatches():
    perfect = corpus_report_metrics(REPORTS, REPORTS, metrics=("meteor",))
    shuffled = corpus_report_metrics(REPORTS[1:] + REPORTS[:1], REPORTS, metrics=("meteor",))
    assert perfect["coco_meteor"] > 0.9 > 0.3 > shuffled["coco_meteor"]


def test_missing_java_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(text.shutil, "which", lambda name: None)
    with pytest.raises(JavaNotFoundError, match="Java runtime"):
        corpus_report_metrics([HYP], [REF])
    # the NLTK family needs no Java
    assert report_metrics([HYP], [REF], families=("nltk",))["nltk_sentence_bleu_1"] == pytest.approx(B1)


@pytest.mark.parametrize(
    "hypotheses, references, message",
    [
        (["a"], ["a", "b"], "pair up"),
        ([], [], "empty"),
        ("a b", ["a b"], "not a single string"),
        ([1], ["a"], "int"),
    ],
)
def test_bad_inputs_name_the_problem(hypotheses, references, message):
    with pytest.raises(ValueError, match=message):
        sentence_bleu_nltk(hypotheses, references)


def test_unknown_metric_family_is_rejected():
    with pytest.raises(ValueError, match="families"):
        report_metrics([HYP], [REF], families=("rouge",))
