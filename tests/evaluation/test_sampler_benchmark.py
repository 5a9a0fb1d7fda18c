"""benchmarks.sampler on a tiny checkpoint: --first picks a later draw of validation pairs and the table says so."""

import json

import pytest

from benchmarks.sampler import main


def test_sampler_benchmark_scores_a_second_draw_of_validation_pairs(
    random_checkpoint, tiny_corpus, judge_dir, tmp_path
):
    out = tmp_path / "sampler.md"
    args = ["--checkpoint", str(random_checkpoint), "--corpus", str(tiny_corpus), "--judge", str(judge_dir)]
    args += [
        "--pairs",
        "6",
        "--first",
        "8",
        "--settings",
        "default,steps24",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    text = out.read_text()
    assert "validation pairs 8–13 (6)" in text
    results = json.loads(out.with_suffix(".json").read_text())
    assert set(results) == {"default", "steps24"} and results["steps24"]["overrides"] == {"steps": 24}
    for entry in results.values():
        assert all(0.0 <= value <= 1.0 for value in entry["scores"].values())


def test_sampler_benchmark_refuses_a_first_pair_outside_the_split(
    random_checkpoint, tiny_corpus, judge_dir, tmp_path
):
    args = ["--checkpoint", str(random_checkpoint), "--corpus", str(tiny_corpus), "--judge", str(judge_dir)]
    with pytest.raises(SystemExit):
        main([*args, "--first", "16", "--out", str(tmp_path / "x.md")])
