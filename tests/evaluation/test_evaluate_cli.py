"""`python -m medim evaluate` end to end on a random tiny checkpoint, and the Markdown tables it writes."""

import json
from pathlib import Path

import pytest

from medim.__main__ import main
from medim.evaluation import EvaluationSettings, load_eval_dataset
from medim.metrics import text
from medim.metrics.tables import markdown_report


def test_evaluate_end_to_end(random_checkpoint, tiny_corpus, judge_dir, tmp_path):
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(random_checkpoint),
            "--data",
            str(tiny_corpus),
            "--split",
            "test",
            "--tasks",
            "report2image,image2report,pair",
            "--out",
            str(out),
            "--limit",
            "4",
            "--steps-sweep",
            "1,2",
            "--judge",
            str(judge_dir),
            "--text-metrics",
            "nltk",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--no-progress",
            "--unknown-words",
            "written",
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["n_records"] == 4 and metrics["data"]["split"] == "test"
    assert metrics["settings"]["unknown_words"] == "as written"
    assert "report ids no training report held are read as written" in (out / "report.md").read_text()
    assert metrics["checkpoint"]["kind"] == "random-init"
    for domain in ("chest_xray", "pathology"):
        r2i = metrics["report2image"]["per_domain"][domain]
        assert r2i["n"] == 2
        assert r2i["domain_fd"]["value"] >= 0
        assert r2i["domain_fd"]["feature_extractor"]["name"] == "medim-judge-penultimate"
        assert "cannot be downloaded" in r2i["fid"]["skipped"]
        assert 0 <= r2i["consistency"]["agreement"] <= 1
        assert r2i["chance_consistency"]["repeats"] == 5 and 0 <= r2i["chance_consistency"]["agreement"] <= 1
        assert 0 <= r2i["chance_consistency"]["f1_macro"] <= 1
        i2r = metrics["image2report"]["per_domain"][domain]
        assert set(i2r["text"]) == {f"nltk_sentence_bleu_{n}" for n in range(1, 5)}
        assert {"f1_micro", "f1_macro", "per_finding"} <= set(i2r["ce"]) and "ce_vs_labels" in i2r
        assert i2r["ce_chance"]["n"] == 2 and 0 <= i2r["ce_chance"]["f1_micro"] <= 1
        assert "form" not in i2r  # not the synthetic generator's corpus: no templates to hold reports to
    assert metrics["pair"]["n"] == 4 and sum(metrics["pair"]["domain_counts"].values()) == 4
    infill = metrics["infill"]
    assert infill["fraction"] == 0.15
    for side in ("report", "image"):
        assert infill[side]["masked"] > 0 and 0 <= infill[side]["accuracy"] <= 1
        assert set(infill[side]["per_domain"]) == {"chest_xray", "pathology"}
    assert [item["steps"] for item in metrics["steps_sweep"]] == [1, 2]
    assert any("VLM judge skipped" in message for message in metrics["skipped"])
    report = (out / "report.md").read_text()
    for heading in (
        "Table 1: chest X-ray",
        "Table 2: pathology",
        "Image → report (Table 3)",
        "Sentence-level BLEU",
        "Clinical efficacy",
        "Sampling steps vs quality",
        "medim-judge-penultimate",
        "another report of the domain (chance)",
        "chance F1 (micro / macro)",
        "Infill at 15% masked",
    ):
        assert heading in report
    # the report says how it was made: the exact command, and how to write a synthetic corpus again
    assert report.splitlines()[2].startswith(
        f"- command: `python -m medim evaluate --checkpoint {random_checkpoint}"
    )
    assert "written again by" not in report  # this corpus is not the synthetic generator's
    metrics["data"]["corpus_command"] = "python -m medim.data.synthetic --n 8 --out c --seed 0"
    assert "- corpus: synthetic, written again by `python -m medim.data.synthetic --n 8" in markdown_report(
        metrics
    )
    for figure in ("report2image_samples", "pair_samples", "consistency_per_finding", "steps_curve"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 1000
    assert len(list((out / "samples" / "report2image").glob("*.png"))) == 4
    assert len((out / "samples" / "image2report.jsonl").read_text().splitlines()) == 4


def test_missing_java_fails_before_generating(random_checkpoint, tiny_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(text.shutil, "which", lambda name: None)
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(random_checkpoint),
            "--data",
            str(tiny_corpus),
            "--tasks",
            "image2report",
            "--out",
            str(tmp_path / "eval"),
        ]
    )
    assert code == 2
    assert "Java runtime" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()


def test_bad_settings_and_missing_data_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="tasks"):
        EvaluationSettings(tasks=("caption",))
    with pytest.raises(ValueError, match="batch_size"):
        EvaluationSettings(batch_size=100)
    with pytest.raises(ValueError, match="evaluation data not found"):
        load_eval_dataset(tmp_path / "nowhere", "test")


def test_markdown_report_separates_corpus_and_sentence_level_bleu():
    text_scores = {
        "coco_bleu_1": 0.4,
        "coco_bleu_2": 0.3,
        "coco_bleu_3": 0.2,
        "coco_bleu_4": 0.1,
        "coco_meteor": 0.25,
        "coco_rouge_l": 0.35,
        "coco_cider": 0.5,
        "nltk_sentence_bleu_1": 0.38,
        "nltk_sentence_bleu_2": 0.21,
        "nltk_sentence_bleu_3": 0.11,
        "nltk_sentence_bleu_4": 0.05,
    }
    ce = {"precision_micro": 0.5, "recall_micro": 0.5, "f1_micro": 0.5, "f1_macro": 0.4}
    metrics = {
        "checkpoint": {"kind": "trained", "sha256": "abcdef0123"},
        "image2report": {
            "seconds_per_sample": 0.1,
            "per_domain": {
                "chest_xray": {"n": 3, "text": text_scores, "ce": ce},
                "pathology": {"n": 3, "text": text_scores, "ce": ce},
            },
        },
    }
    report = markdown_report(metrics)
    table3 = report.split("**Table 3: corpus-level metrics (pycocoevalcap, PTB tokenisation)**")[1]
    header, _, row = table3.strip().splitlines()[:3]
    assert header.count("B-1") == 2 and "chest X-ray MTR" in header and "pathology R-L" in header
    assert row.startswith("| MeDiM (trained, abcdef01) | 0.400 | 0.300 | 0.200 | 0.250 | 0.350 | 0.400")
    sentence = report.split("Sentence-level BLEU")[1]
    assert "| chest_xray | 0.380 | 0.210 | 0.110 | 0.050 |" in sentence
    assert "not with Table 3" in sentence


def test_the_bundled_judge_is_recorded_relative_to_the_project(tmp_path, monkeypatch):
    from medim.commands.evaluate import DEFAULT_JUDGE
    from medim.paths import shown_path

    monkeypatch.chdir(DEFAULT_JUDGE.parents[1])
    assert shown_path(DEFAULT_JUDGE) == Path("assets") / "judge"  # reports name no machine
    monkeypatch.chdir(tmp_path)
    assert (
        shown_path(DEFAULT_JUDGE) == DEFAULT_JUDGE
    )  # outside the project the full path is the only true one


def test_on_the_synthetic_corpus_the_report_says_whether_reports_read_as_reports(random_checkpoint, tmp_path):
    from medim.data.synthetic import write_corpus

    corpus = tmp_path / "corpus"
    write_corpus(corpus, 40, seed=0, image_size=32, split_fractions=(0.5, 0.25, 0.25), progress=False)
    out = tmp_path / "eval"
    argv = ["evaluate", "--checkpoint", str(random_checkpoint), "--data", str(corpus), "--split", "test"]
    argv += ["--tasks", "image2report", "--limit", "4", "--text-metrics", "nltk", "--out", str(out)]
    assert main([*argv, "--threads", "1", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for domain in ("chest_xray", "pathology"):
        form = metrics["image2report"]["per_domain"][domain]["form"]
        assert form["n"] == 2 and 0 <= form["reports"] <= 1 and 0 <= form["sentences"] <= 1
    assert "**Report form**" in (out / "report.md").read_text()
