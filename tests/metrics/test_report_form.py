"""The report-form metric: the corpus's own reports are well-formed, damaged sentences are not."""

import pytest

from medim.data.synthetic import generate_report
from medim.metrics.report_form import HARVEST, report_coherence, report_form, wellformed_sentences

DOMAINS = ("chest_xray", "pathology")


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_unseen_corpus_reports_are_all_wellformed(split):
    # Indices past the harvest, and the validation split, which the harvest never reads.
    reports, domains = [], []
    for domain in DOMAINS:
        for index in range(HARVEST + 100, HARVEST + 160):
            reports.append(generate_report(index, seed=0, split=split, domain=domain)[0])
            domains.append(domain)
    form = report_form(reports, domains)
    for domain in DOMAINS:
        assert form[domain] == {"sentences": 1.0, "reports": 1.0, "n": 60}


def test_a_repeated_word_breaks_exactly_its_sentence():
    report = generate_report(7, seed=0, split="val", domain="pathology")[0]
    good, count = wellformed_sentences(report, "pathology")
    assert good == count >= 3
    first, rest = report.split(". ", 1)
    words = first.split()
    damaged = " ".join([*words[:2], words[1], *words[2:]]) + ". " + rest  # "The patch patch shows ..."
    assert wellformed_sentences(damaged, "pathology") == (count - 1, count)


def test_known_broken_chest_sentences_are_caught_and_fluent_ones_pass():
    report = (
        "FINDINGS: The lungs lungs otherwise clear. Consolidation in the left lung lung. No pneumothorax. "
        "Heart size is normal. IMPRESSION: Moderate Moderate edema. Moderate pulmonary edema."
    )
    assert wellformed_sentences(report, "chest_xray") == (3, 6)


def test_empty_reports_count_as_failures_and_bad_input_is_refused():
    form = report_form(
        ["", "FINDINGS: Heart size is normal. IMPRESSION: Normal chest radiograph."], ["chest_xray"] * 2
    )
    assert form["chest_xray"]["reports"] == 0.5
    assert form["chest_xray"]["sentences"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="domain"):
        wellformed_sentences("Heart size is normal.", "dermatology")
    with pytest.raises(ValueError, match="2 reports but 1 domains"):
        report_form(["a", "b"], ["chest_xray"])


def test_the_corpus_never_contradicts_itself_and_a_generated_contradiction_or_repeat_is_caught():
    reports, domains = [], []
    for domain in DOMAINS:
        for index in range(200):
            reports.append(generate_report(index, seed=0, split="test", domain=domain)[0])
            domains.append(domain)
    coherence = report_coherence(reports, domains)
    assert all(coherence[d]["contradictory"] == 0.0 and coherence[d]["n"] == 200 for d in DOMAINS)
    written = "FINDINGS: Right middle lobe consolidation. Heart size is normal. IMPRESSION: Consolidation."
    denied = written.replace("Heart size is normal.", "No consolidation is seen.")
    doubled = written.replace("Heart size is normal.", "Heart size is normal. heart  size is normal.")
    scores = report_coherence([written, denied, doubled], ["chest_xray"] * 3)["chest_xray"]
    assert scores == {"repeated": pytest.approx(1 / 3), "contradictory": pytest.approx(1 / 3), "n": 3}
    with pytest.raises(ValueError, match="domains"):
        report_coherence([written], [])
