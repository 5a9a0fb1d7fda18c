"""The image-code-init benchmark: its arms are valid warm-start configs that differ only in the init, and its
table reads the arms' validation logs."""

from __future__ import annotations

from types import SimpleNamespace

from benchmarks.image_code_init import ARMS, arm_command, main
from tests.benchmarks.arms import arm_config, differing_keys


def _args(tmp_path):
    return SimpleNamespace(
        source="assets/default",
        corpus="c",
        synthetic_n=192000,
        lr=1e-3,
        runs=str(tmp_path),
        steps=120,
        val_every=40,
    )


def test_the_arms_are_valid_configs_that_differ_only_in_the_image_code_init(tmp_path):
    configs = [arm_config(arm_command(arm, _args(tmp_path))) for arm in ARMS]
    for arm, config in zip(ARMS, configs):
        assert config.model.new_image_codes and config.model.image_code_init == arm
        assert config.optim.max_steps == 120 and config.data.synthetic_n == 192000
    differing = differing_keys(*configs)
    assert differing == {("model", "image_code_init")}


def test_reuse_tabulates_the_arms_validation_logs(tmp_path):
    curves = {"random": [(40, 6.5, 0.9), (80, 6.0, 0.8)], "codebook": [(40, 6.1, 0.9), (80, 5.75, 0.8)]}
    for arm, rows in curves.items():
        logs = tmp_path / f"k16_{arm}" / "logs"
        logs.mkdir(parents=True)
        lines = ["step,val_loss,val_nll_image,val_nll_text"]
        lines += [f"{step},0,{image},{text}" for step, image, text in rows]
        (logs / "val.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "result.md"
    argv = [
        "--corpus",
        "c",
        "--image-tokenizer",
        "assets/candidates/patch_kmeans16",
        "--runs",
        str(tmp_path),
        "--reuse",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    text = out.read_text()
    assert "| 80 | 6.000 / 0.800 | 5.750 / 0.800 | -0.250 |" in text
    assert "Lower image NLL after 80 steps: `codebook` (5.750 vs 6.000)" in text
