"""The grow-depth benchmark: its arms are valid warm-start configs that differ only in the depth, and its table
reads the arms' logs and exports."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from benchmarks.grow_depth import ARMS, arm_command, main
from tests.benchmarks.arms import arm_config, differing_keys


def _args(tmp_path):
    return SimpleNamespace(
        source="assets/default",
        corpus="c",
        synthetic_n=192000,
        lr=6e-4,
        minutes=25.0,
        layers=8,
        runs=str(tmp_path),
        val_every=150,
    )


def test_the_arms_are_valid_configs_that_differ_only_in_depth(tmp_path):
    configs = [arm_config(arm_command(arm, _args(tmp_path))) for arm in ARMS]
    for config in configs:
        assert config.optim.max_minutes == 25.0 and config.optim.lr == 6e-4
        assert config.diffusion.task_weights == {"joint": 0.25, "report2image": 0.25, "image2report": 0.5}
    assert configs[0].model.backbone["num_hidden_layers"] == 4
    assert configs[1].model.backbone["num_hidden_layers"] == 8 and configs[1].model.grow_depth
    differing = differing_keys(*configs)
    assert differing == {("model", "backbone"), ("model", "grow_depth")}


def _fake_arm(root, arm, layers, steps, val_rows):
    run = root / f"depth_{arm}"
    (run / "logs").mkdir(parents=True)
    (run / "medim").mkdir()
    train = ["step,loss,nll_image,nll_text,lr,tokens_per_s,minutes"]
    train += [f"{s},0,0,0,0,0,{s / steps * 25:.3f}" for s in range(10, steps + 1, 10)]
    (run / "logs" / "train.csv").write_text("\n".join(train) + "\n")
    val = ["step,val_loss,val_nll_image,val_nll_text"]
    val += [f"{step},0,{image},{text}" for step, image, text in val_rows]
    (run / "logs" / "val.csv").write_text("\n".join(val) + "\n")
    (run / "medim" / "medim_config.json").write_text(json.dumps({"backbone": {"num_hidden_layers": layers}}))
    info = {"runs": [{"steps": 100}, {"steps": steps, "tokens_seen": steps * 8320}]}
    (run / "medim" / "checkpoint_info.json").write_text(json.dumps(info))
    save_file({"w": torch.zeros(layers, 1000)}, str(run / "medim" / "model.safetensors"))


def test_reuse_tabulates_the_arms_logs_at_the_end_of_the_budget(tmp_path):
    _fake_arm(tmp_path, "continue", 4, 1000, [(500, 4.15, 0.55), (1000, 4.14, 0.54)])
    _fake_arm(tmp_path, "grown", 8, 500, [(250, 4.20, 0.56), (500, 4.10, 0.52)])
    out = tmp_path / "result.md"
    argv = ["--corpus", "c", "--runs", str(tmp_path), "--reuse", "--out", str(out)]
    assert main(argv) == 0
    text = out.read_text()
    assert "| `continue` | 4 | 0.00 M | 1000 | 8.3 M | 25.0 | 4.140 | 0.540 |" in text
    assert "| `grown` | 8 | 0.01 M | 500 | 4.2 M | 25.0 | 4.100 | 0.520 |" in text
    assert "| `grown` | 250 | 12.5 | 4.200 | 0.560 |" in text
    assert "Lower image + report NLL at the end: `grown` (4.620 against 4.680)" in text
    with pytest.raises(SystemExit):
        main([*argv, "--layers", "4"])
