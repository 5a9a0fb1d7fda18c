"""Clinical efficacy on constructed label sets with hand-computed precision/recall/F1."""

import pytest

from medim.metrics.clinical import (
    chance_clinical_efficacy,
    clinical_efficacy,
    labels_to_matrix,
    report_clinical_efficacy,
)
from tests.metrics.fixtures import keyword_labeler

FINDINGS = ("A", "B", "C")
GENERATED = [{"A": 1, "B": 1}, {"C": 1}, {}]
REFERENCE = [{"A": 1}, {"C": 1, "B": 1}, {"B": -1}]


def test_micro_and_macro_scores_match_hand_counts():
    # cells: TP = A0, C1; FP = B0; FN = B1 (the uncertain B2 counts as absent)
    scores = clinical_efficacy(GENERATED, REFERENCE, FINDINGS)
    assert scores["precision_micro"] == pytest.approx(2 / 3)
    assert scores["recall_micro"] == pytest.approx(2 / 3)
    assert scores["f1_micro"] == pytest.approx(2 / 3)
    # per finding F1: A 1, B 0, C 1
    assert scores["f1_macro"] == pytest.approx(2 / 3)
    assert scores["per_finding"]["B"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "accuracy": pytest.approx(1 / 3),
        "support": 1,
        "predicted": 1,
    }
    assert scores["accuracy"] == pytest.approx(7 / 9)
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["n"] == 3


def test_uncertain_as_positive_adds_a_false_negative():
    scores = clinical_efficacy(GENERATED, REFERENCE, FINDINGS, uncertain_as=1)
    assert scores["recall_micro"] == pytest.approx(2 / 4)
    assert scores["precision_micro"] == pytest.approx(2 / 3)


def test_identical_label_sets_score_one():
    scores = clinical_efficacy(REFERENCE, REFERENCE, FINDINGS, uncertain_as=1)
    assert scores["f1_micro"] == scores["f1_macro"] == scores["exact_match"] == 1.0


def test_labels_to_matrix_and_bad_values():
    assert labels_to_matrix([{"A": 1, "B": 0, "C": -1}], FINDINGS).tolist() == [[1, 0, 0]]
    with pytest.raises(ValueError, match="must be 1, 0 or -1, got 2"):
        labels_to_matrix([{"A": 2}], FINDINGS)
    with pytest.raises(ValueError, match="uncertain_as"):
        labels_to_matrix([{}], FINDINGS, uncertain_as=-1)
    with pytest.raises(ValueError, match="2 generated label sets but 1 reference"):
        clinical_efficacy([{}, {}], [{}], FINDINGS)


def test_report_level_ce_reads_both_sides_with_the_labeler():
    generated = ["FINDINGS: The heart is enlarged. No pleural effusion.", "Benign mucosa. No tumor is seen."]
    reference = [
        "FINDINGS: The heart is enlarged. Large left pleural effusion.",
        "Benign mucosa. No tumor is seen.",
    ]
    scores = report_clinical_efficacy(
        generated,
        reference,
        "chest_xray",
        labeler=keyword_labeler,
        findings=("Cardiomegaly", "Pleural Effusion"),
    )
    assert scores["precision_micro"] == 1.0
    assert scores["recall_micro"] == pytest.approx(1 / 2)


def test_chance_level_is_the_prevalence_for_independent_findings():
    import numpy as np

    rng = np.random.default_rng(0)
    # one finding present in 30% of 4000 reports: a label copied from a random other report is right with
    # probability 0.3 when the finding is present, so chance precision = recall = F1 = 0.3
    reference = [{"A": int(x)} for x in rng.random(4000) < 0.3]
    chance = chance_clinical_efficacy(reference, ("A",), repeats=3, seed=1)
    assert chance["f1_micro"] == pytest.approx(0.3, abs=0.03)
    assert chance["precision_micro"] == pytest.approx(chance["recall_micro"], abs=1e-9)  # same label counts
    assert chance["n"] == 4000 and chance["repeats"] == 3
    same = chance_clinical_efficacy([{"A": 1, "B": 0}] * 5, ("A", "B"))
    assert same["f1_micro"] == 1.0  # every permutation of identical reports agrees
    with pytest.raises(ValueError, match="at least 2"):
        chance_clinical_efficacy([{"A": 1}], ("A",))


def test_a_single_finding_is_scored_on_its_positive_class():
    # one finding: TP 1, FP 1, FN 1, TN 2 -> P = R = F1 = 0.5 (pooling both classes would give accuracy, 0.6)
    generated = [{"A": 1}, {"A": 1}, {"A": 0}, {"A": 0}, {"A": 0}]
    reference = [{"A": 1}, {"A": 0}, {"A": 1}, {"A": 0}, {"A": 0}]
    scores = clinical_efficacy(generated, reference, ("A",))
    assert scores["f1_micro"] == pytest.approx(0.5) and scores["f1_macro"] == pytest.approx(0.5)
    assert scores["per_finding"]["A"]["support"] == 2 and scores["per_finding"]["A"]["precision"] == 0.5
