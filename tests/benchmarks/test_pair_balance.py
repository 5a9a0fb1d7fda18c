import json

import pytest

from benchmarks.pair_balance import main
from medim.commands.init_random import build_random_pipeline
from medim.data.synthetic import write_corpus


def test_the_table_counts_every_pair_once_per_setting(tmp_path):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 40, seed=0, image_size=16, split_fractions=(0.5, 0.25, 0.25), progress=False)
    pipe = build_random_pipeline(hidden=32, layers=1, image_size=16, grid=4, codebook=16, text_tokens=40)
    checkpoint = pipe.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "pair_balance.md"
    argv = ["--checkpoint", str(checkpoint), "--corpus", str(corpus), "--pairs", "6", "--threads", "1"]
    assert main([*argv, "--settings", "default,confidence-max", "--out", str(out)]) == 0
    results = json.loads(out.with_suffix(".json").read_text())
    assert list(results) == ["default", "confidence-max"]
    for entry in results.values():
        counted = entry["chest_xray"]["n"] + entry["pathology"]["n"]
        assert entry["n"] == 6 and counted <= 6  # a random model's report may name no domain
    assert "| confidence-max |" in out.read_text()


def test_an_unknown_setting_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        main(["--corpus", str(tmp_path), "--settings", "greedy"])
