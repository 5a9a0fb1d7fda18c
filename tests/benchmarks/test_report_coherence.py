"""benchmarks.report_coherence reads the samples `medim evaluate` writes and scores both report columns."""

import json

from benchmarks.report_coherence import main


def test_the_table_scores_generated_and_reference_reports(tmp_path):
    rows = [
        {
            "id": "a",
            "domain": "chest_xray",
            "reference": "FINDINGS: Small left effusion.",
            "generated": "FINDINGS: Small left effusion. No pleural effusion.",
        },
        {
            "id": "b",
            "domain": "chest_xray",
            "reference": "FINDINGS: Heart size is normal.",
            "generated": "FINDINGS: Heart size is normal. Heart size is normal.",
        },
    ]
    samples = tmp_path / "image2report.jsonl"
    samples.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "coherence.md"
    assert main(["--samples", str(samples), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| chest_xray | 2 | generated | 0.500 | 0.500 |" in text
    assert "| chest_xray | 2 | reference | 0.000 | 0.000 |" in text


def test_missing_samples_are_a_clear_error(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["--samples", str(tmp_path / "none.jsonl")])
    assert "medim evaluate" in capsys.readouterr().err
