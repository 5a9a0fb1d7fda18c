"""Clinical efficacy (CE): precision, recall and F1 of the findings stated in generated vs reference reports.

Findings are extracted by the rule-based labeler (:mod:`medim.metrics.labeler`), which returns, per report,
``{finding: 1 | 0 | -1}`` (positive, negated, uncertain; absent = not mentioned). CE compares the *positive*
findings: a finding counts as present when its label is 1 (uncertain mentions count as absent unless
``uncertain_as=1``), the convention of the CheXpert-based CE metrics of R2Gen and its successors.
Micro averages pool all (report, finding) cells; macro averages are the unweighted mean over findings, with
0 for a finding that is never predicted or never present (scikit-learn's ``zero_division=0``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "chance_clinical_efficacy",
    "clinical_efficacy",
    "domain_findings",
    "labels_to_matrix",
    "report_clinical_efficacy",
]

LabelDict = Mapping[str, int]


def domain_findings(domain: str) -> tuple[str, ...]:
    """The labeler's finding names for a domain ("chest_xray" or "pathology")."""
    from medim.metrics import labeler

    tables = {"chest_xray": labeler.CHEST_FINDINGS, "pathology": labeler.PATHOLOGY_FINDINGS}
    if domain not in tables:
        raise ValueError(f"domain must be one of {sorted(tables)}, got {domain!r}")
    return tuple(tables[domain])


def labels_to_matrix(
    labels: Sequence[LabelDict], findings: Sequence[str], *, uncertain_as: int = 0
) -> np.ndarray:
    """Label dicts -> binary presence matrix.

    Args:
        labels: N dicts finding -> 1 / 0 / -1 (missing key: not mentioned).
        findings: F finding names (the columns, in order).
        uncertain_as: 0 or 1, what an uncertain (-1) mention counts as.

    Returns:
        int64 array [N, F], 1 where the finding is present.
    """
    if uncertain_as not in (0, 1):
        raise ValueError(f"uncertain_as must be 0 or 1, got {uncertain_as!r}")
    if not findings:
        raise ValueError("findings is empty: nothing to compare")
    matrix = np.zeros((len(labels), len(findings)), dtype=np.int64)
    for row, entry in enumerate(labels):
        if not isinstance(entry, Mapping):
            raise ValueError(f"labels[{row}] is a {type(entry).__name__}, expected a dict finding -> 1/0/-1")
        for column, name in enumerate(findings):
            value = entry.get(name)
            if value not in (None, 1, 0, -1):
                raise ValueError(f"labels[{row}][{name!r}] must be 1, 0 or -1, got {value!r}")
            matrix[row, column] = 1 if value == 1 else (uncertain_as if value == -1 else 0)
    return matrix


def clinical_efficacy(
    generated: Sequence[LabelDict],
    reference: Sequence[LabelDict],
    findings: Sequence[str],
    *,
    uncertain_as: int = 0,
) -> dict:
    """Micro/macro precision, recall and F1 of generated findings against reference findings.

    Args:
        generated: N label dicts (from the generated reports, or a judge's reading of generated images).
        reference: N label dicts (the ground truth side).
        findings: the F findings scored.
        uncertain_as: what an uncertain (-1) label counts as (0 or 1).

    Returns:
        ``{"precision_micro", "recall_micro", "f1_micro", "precision_macro", "recall_macro", "f1_macro",
        "accuracy" (fraction of agreeing (report, finding) cells), "exact_match" (fraction of reports whose
        whole finding set agrees), "n", "per_finding": {name: {"precision", "recall", "f1", "support",
        "predicted"}}}``.
    """
    if len(generated) != len(reference):
        raise ValueError(f"{len(generated)} generated label sets but {len(reference)} reference ones")
    if not generated:
        raise ValueError("no label sets to compare")
    predicted = labels_to_matrix(generated, findings, uncertain_as=uncertain_as)
    truth = labels_to_matrix(reference, findings, uncertain_as=uncertain_as)
    return _scores(predicted, truth, findings)


def _scores(predicted: np.ndarray, truth: np.ndarray, findings: Sequence[str]) -> dict:
    from sklearn.metrics import precision_recall_fscore_support

    result: dict = {"n": int(truth.shape[0])}
    if truth.shape[1] == 1:
        # scikit-learn reads a one-column indicator matrix as a binary target, whose "micro" average pools
        # both classes (it becomes accuracy): score the positive class only, as with several findings
        y_true, y_pred, labels = truth[:, 0], predicted[:, 0], [1]
    else:
        y_true, y_pred, labels = truth, predicted, list(range(truth.shape[1]))
    for average in ("micro", "macro"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        result.update(
            {
                f"precision_{average}": float(precision),
                f"recall_{average}": float(recall),
                f"f1_{average}": float(f1),
            }
        )
    result["accuracy"] = float((predicted == truth).mean())
    result["exact_match"] = float((predicted == truth).all(axis=1).mean())
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    result["per_finding"] = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "accuracy": float((predicted[:, i] == truth[:, i]).mean()),
            "support": int(support[i]),
            "predicted": int(predicted[:, i].sum()),
        }
        for i, name in enumerate(findings)
    }
    return result


def chance_clinical_efficacy(
    reference: Sequence[LabelDict],
    findings: Sequence[str],
    *,
    repeats: int = 5,
    seed: int = 0,
    uncertain_as: int = 0,
) -> dict:
    """The CE a generator gets by ignoring its input: each reference scored against the reference of another,
    randomly chosen pair of the same set (a seeded permutation, mean over ``repeats`` of them).

    It is the level an image→report model must beat to show it reads the image: a model that writes fluent,
    realistic reports of the right domain without looking lands here, not at 0.

    Returns ``{"f1_micro", "f1_macro", "precision_micro", "recall_micro", "repeats", "n"}`` (means).
    """
    if len(reference) < 2:
        raise ValueError(f"a chance baseline needs at least 2 label sets, got {len(reference)}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    truth = labels_to_matrix(reference, findings, uncertain_as=uncertain_as)
    rng = np.random.default_rng(seed)
    keys = ("f1_micro", "f1_macro", "precision_micro", "recall_micro")
    sums = dict.fromkeys(keys, 0.0)
    for _ in range(repeats):
        scores = _scores(truth[rng.permutation(len(truth))], truth, findings)
        for key in keys:
            sums[key] += scores[key]
    return {**{key: value / repeats for key, value in sums.items()}, "repeats": repeats, "n": len(truth)}


def report_clinical_efficacy(
    generated_reports: Sequence[str],
    reference_reports: Sequence[str],
    domain: str,
    *,
    labeler: Callable[[str, str | None], LabelDict] | None = None,
    findings: Sequence[str] | None = None,
    uncertain_as: int = 0,
) -> dict:
    """CE of generated reports against reference reports of one domain, both read by the labeler.

    ``labeler(text, domain) -> {finding: 1/0/-1}`` defaults to :func:`medim.metrics.labeler.label_report`;
    ``findings`` defaults to the labeler's list for the domain.
    """
    if labeler is None:
        from medim.metrics.labeler import label_report as labeler
    if findings is None:
        findings = domain_findings(domain)
    generated = [labeler(text, domain) for text in generated_reports]
    reference = [labeler(text, domain) for text in reference_reports]
    return clinical_efficacy(generated, reference, findings, uncertain_as=uncertain_as)
