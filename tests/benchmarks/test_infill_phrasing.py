"""benchmarks.infill_phrasing on a tiny corpus: its classes add up to the evaluation's own infill accuracy."""

import json

import pytest
import torch

from benchmarks.infill_phrasing import CLASSES, main, split_infill, training_reports, training_words
from medim.commands.init_random import build_random_pipeline
from medim.data.synthetic import write_corpus
from medim.evaluation import EvaluationSettings, Evaluator, load_eval_dataset
from medim.pipeline import MeDiMPipeline


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("infill_phrasing")
    corpus = root / "corpus"
    write_corpus(corpus, 160, seed=0, image_size=16, split_fractions=(0.5, 0.25, 0.25), progress=False)
    pipe = build_random_pipeline(hidden=32, layers=1, image_size=16, grid=4, codebook=16, text_tokens=80)
    return corpus, pipe.save_pretrained(root / "ckpt"), root


def test_the_table_splits_each_domain_s_masked_tokens_into_the_three_classes(tiny):
    corpus, checkpoint, root = tiny
    out = root / "infill.md"
    argv = ["--checkpoint", str(checkpoint), "--corpus", str(corpus), "--pairs", "24", "--threads", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "| test | pathology |" in out.read_text()
    results = json.loads(out.with_suffix(".json").read_text())
    for split, per_domain in results.items():
        for entry in per_domain.values():
            assert sum(entry["classes"][kind]["share"] for kind in CLASSES) == pytest.approx(1.0)
            assert entry["accuracy"] <= entry["ceiling"] <= 1.0
            assert 0 <= entry["untrained_ids"] < 1
            if split == "val":  # held-out phrasings are written into the test split only
                assert entry["classes"]["held-out, known words"]["share"] == 0.0
    assert any(e["classes"]["held-out, known words"]["share"] > 0 for e in results["test"].values())


def test_the_classes_add_up_to_the_evaluation_s_report_infill(tiny):
    corpus, checkpoint, _root = tiny
    pipe = MeDiMPipeline.from_pretrained(checkpoint, device="cpu")
    # A denoiser that always answers "." is right exactly where a period was masked: a known, nonzero score.
    period = pipe.text_tokenizer(".", add_special_tokens=False)["input_ids"][0]

    def always_period(input_ids, t):
        logits = torch.zeros(*input_ids.shape, pipe.layout.vocab_size)
        logits[..., period] = 10.0  # text ids are sequence ids
        return logits

    pipe.model.forward = always_period
    dataset = load_eval_dataset(corpus, "test")
    records = [dataset[i] for i in range(24)]
    split = split_infill(pipe, records, training_words(training_reports(corpus)))
    settings = EvaluationSettings(tasks=("report2image",), batch_size=50, seed=0)
    evaluated = Evaluator(pipe, records, settings, progress=False).infill()["report"]["per_domain"]
    for domain, entry in split.items():
        assert 0 < entry["accuracy"] == pytest.approx(evaluated[domain], abs=1e-12)
        assert entry["classes"]["novel word"]["accuracy"] in (0.0, None)  # a period is no word
