"""Tests for the rule-based finding labeler: synthetic-corpus F1, real-style reports, attributes, robustness."""

import numpy as np
import pytest

from medim.data.synthetic import DOMAINS, generate_report
from medim.metrics.labeler import (
    CHEST_FINDINGS,
    FINDINGS_BY_DOMAIN,
    PATHOLOGY_FINDINGS,
    extract_findings,
    infer_domain,
    label_report,
    to_binary_vector,
)


def _macro_f1(truth: np.ndarray, pred: np.ndarray) -> tuple[float, list[float]]:
    """Macro F1 of the positive class over the columns that have any positive label or prediction."""
    scores = []
    for col in range(truth.shape[1]):
        tp = int((truth[:, col] & pred[:, col]).sum())
        fp, fn = int((~truth[:, col] & pred[:, col]).sum()), int((truth[:, col] & ~pred[:, col]).sum())
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)), scores


@pytest.mark.parametrize("domain", DOMAINS)
def test_labeler_macro_f1_on_synthetic_test_split(domain):
    truth, pred, inferred = [], [], []
    for index in range(300):
        report, labels, _attrs = generate_report(index, seed=2024, split="test", domain=domain)
        truth.append(to_binary_vector(labels, domain))
        pred.append(to_binary_vector(label_report(report, domain), domain))
        inferred.append(infer_domain(report) == domain)
    macro, per_finding = _macro_f1(np.array(truth, bool), np.array(pred, bool))
    assert len(per_finding) == len(FINDINGS_BY_DOMAIN[domain])  # every finding occurs in 300 reports
    assert macro >= 0.95, per_finding
    assert np.mean(inferred) >= 0.99
    # Without the domain hint the labeler infers it and gives the same labels.
    report = generate_report(0, seed=2024, split="test", domain=domain)[0]
    assert label_report(report) == label_report(report, domain)


def test_attributes_match_the_generator():
    agree, total = 0, 0
    for index in range(200):
        report, _labels, attrs = generate_report(index, seed=7, split="test", domain="chest_xray")
        found = extract_findings(report, "chest_xray")
        for name in ("Pleural Effusion", "Pneumothorax", "Consolidation", "Lung Lesion", "Atelectasis"):
            if name in attrs:
                total += 1
                agree += int(found[name]["side"] == attrs[name]["side"])
    assert total >= 40 and agree / total >= 0.95


# Real-style (MIMIC-CXR-like) reports with the labels a careful reader would give.
REAL_REPORTS = [
    (
        "FINDINGS: PA and lateral views of the chest. The lungs are clear without focal consolidation. "
        "No pleural effusion or pneumothorax is seen. The cardiomediastinal silhouette is within normal limits. "
        "IMPRESSION: No acute cardiopulmonary process.",
        {"Consolidation": 0, "Pleural Effusion": 0, "Pneumothorax": 0, "Cardiomegaly": 0, "No Finding": 1},
    ),
    (
        "FINDINGS: Endotracheal tube terminates 4.5 cm above the carina. Enteric tube courses below the "
        "diaphragm. Right lower lobe opacity may represent aspiration or atelectasis. Small right pleural "
        "effusion. No pneumothorax. IMPRESSION: Lines and tubes in standard position.",
        {
            "Support Devices": 1,
            "Lung Opacity": 1,
            "Atelectasis": -1,
            "Pleural Effusion": 1,
            "Pneumothorax": 0,
            "No Finding": 0,
        },
    ),
    (
        "Moderate cardiomegaly is unchanged. There is mild pulmonary vascular congestion without frank "
        "interstitial edema. Bilateral pleural effusions, left greater than right.",
        {"Cardiomegaly": 1, "Edema": 1, "Pleural Effusion": 1},
    ),
    (
        "IMPRESSION: Previously seen left apical pneumothorax has resolved. Left chest tube has been removed. "
        "No new consolidation.",
        {"Pneumothorax": 0, "Support Devices": 0, "Consolidation": 0, "No Finding": 1},
    ),
    (
        "Patchy bibasilar opacities, likely atelectasis, although infection cannot be excluded. "
        "No evidence of pulmonary edema. Heart size is normal.",
        {"Lung Opacity": 1, "Atelectasis": -1, "Edema": 0, "Cardiomegaly": 0, "No Finding": 0},
    ),
    (
        "There is a 2.3 cm nodule in the right upper lobe, concerning for malignancy. No effusion.",
        {"Lung Lesion": 1, "Pleural Effusion": 0},
    ),
    (
        "Hazy opacity at the left base which may represent a small effusion versus consolidation. "
        "Cannot exclude pneumonia.",
        {"Lung Opacity": 1, "Pleural Effusion": -1, "Consolidation": -1, "No Finding": 0},
    ),
    (
        "Right internal jugular central venous catheter tip in the mid SVC. Borderline enlarged cardiac "
        "silhouette. The lungs are otherwise clear. No focal consolidation, effusion or pneumothorax.",
        {
            "Support Devices": 1,
            "Cardiomegaly": -1,
            "Consolidation": 0,
            "Pleural Effusion": 0,
            "Pneumothorax": 0,
        },
    ),
    (
        "No change in the moderate right pleural effusion with adjacent compressive atelectasis. "
        "Stable mild cardiomegaly.",
        {"Pleural Effusion": 1, "Atelectasis": 1, "Cardiomegaly": 1, "No Finding": 0},
    ),
    (
        "Interval resolution of the right middle lobe consolidation. No pneumothorax. Dual-chamber pacemaker "
        "leads terminate in the right atrium and right ventricle. Heart is not enlarged.",
        {"Consolidation": 0, "Pneumothorax": 0, "Support Devices": 1, "Cardiomegaly": 0, "No Finding": 1},
    ),
    (
        "Low lung volumes. Findings suggestive of mild interstitial edema. Possible small left effusion.",
        {"Edema": -1, "Pleural Effusion": -1, "No Finding": 0},
    ),
]


@pytest.mark.parametrize("text,expected", REAL_REPORTS)
def test_real_style_chest_reports(text, expected):
    labels = label_report(text, "chest_xray")
    assert {k: labels.get(k) for k in expected} == expected
    assert infer_domain(text) == "chest_xray"


REAL_PATHOLOGY = [
    (
        "Sections show invasive adenocarcinoma forming irregular glands in a desmoplastic stroma. The tumour is "
        "moderately to poorly differentiated. Foci of tumour necrosis are present. No lymphovascular invasion.",
        {"Tumor": 1, "High Grade": 1, "Necrosis": 1},
    ),
    (
        "Benign breast tissue with fibrocystic change. Negative for malignancy. No necrosis or inflammation.",
        {"Tumor": 0, "Necrosis": 0, "Inflammation": 0},
    ),
    (
        "Well-differentiated carcinoma with a prominent peritumoral lymphocytic infiltrate; necrosis is absent.",
        {"Tumor": 1, "High Grade": 0, "Inflammation": 1, "Necrosis": 0},
    ),
    (
        "Atypical glands suspicious for carcinoma; invasion cannot be excluded. Chronic inflammation is present.",
        {"Tumor": -1, "Inflammation": 1},
    ),
]


@pytest.mark.parametrize("text,expected", REAL_PATHOLOGY)
def test_real_style_pathology_reports(text, expected):
    labels = label_report(text)
    assert {k: labels.get(k) for k in expected} == expected
    assert infer_domain(text) == "pathology"


def test_extract_findings_attributes():
    found = extract_findings(
        "Small left apical pneumothorax. Moderate right pleural effusion. Consolidation in the right lower lobe. "
        "Mild pulmonary edema. Bibasilar atelectasis.",
        "chest_xray",
    )
    assert found["Pneumothorax"] == {"status": 1, "side": "left", "severity": "small", "location": "upper"}
    assert (
        found["Pleural Effusion"]["side"] == "right" and found["Pleural Effusion"]["severity"] == "moderate"
    )
    assert found["Consolidation"]["location"] == "lower" and found["Consolidation"]["side"] == "right"
    assert found["Edema"]["severity"] == "mild"
    assert found["Atelectasis"]["side"] == "bilateral"


def test_absent_means_not_mentioned():
    labels = label_report("Heart size is normal.", "chest_xray")
    assert "Pneumothorax" not in labels and labels["Cardiomegaly"] == 0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "\n\n",
        "!!!???",
        "asdf qwer zxcv",
        ". . . ;;; :::",
        "é ü 漢字 🙂",
        "no " * 500,
        "? no may not",
    ],
)
def test_garbage_text_never_crashes(text):
    for domain in (None, "chest_xray", "pathology"):
        labels = label_report(text, domain)
        assert isinstance(labels, dict) and set(labels.values()) <= {1, 0, -1}
        assert infer_domain(text) in DOMAINS


def test_long_noisy_model_output():
    text = ("FINDINGS: effusion effusion the the small right right pleural IMPRESSION: " * 40).strip()
    labels = label_report(text, "chest_xray")
    assert labels["Pleural Effusion"] == 1


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="domain"):
        label_report("No effusion.", "mri")
    with pytest.raises(ValueError, match="string"):
        label_report(None)
    with pytest.raises(ValueError, match="domain"):
        to_binary_vector({}, "ct")


def test_to_binary_vector_orders_and_binarises():
    labels = {"Cardiomegaly": 1, "Edema": -1, "Pneumothorax": 0}
    vector = to_binary_vector(labels, "chest_xray")
    assert len(vector) == len(CHEST_FINDINGS)
    assert vector[CHEST_FINDINGS.index("Cardiomegaly")] == 1 and sum(vector) == 1
    assert to_binary_vector({"Tumor": 1, "Necrosis": -1}, "pathology") == [1, 0, 0, 0]
    assert len(PATHOLOGY_FINDINGS) == 4
