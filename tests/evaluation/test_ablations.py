"""benchmarks/ablations.py: the training overrides per variant and the Table-4-style comparison (no training)."""

from pathlib import Path

import pytest

from benchmarks.ablations import (
    comparison_table,
    evaluation_command,
    main,
    parse_args,
    share_cache,
    training_command,
)


def test_each_variant_flips_one_switch_under_the_same_budget(tmp_path):
    args = parse_args(["--max-steps", "300", "--seed", "3"])
    commands = {name: training_command(args, name, tmp_path) for name in args.variants}
    shared = {"seed=3", "optim.max_steps=300", f"data.root={tmp_path / 'corpus'}"}
    assert all(shared <= set(command) for command in commands.values())
    assert "model.causal_attention=true" in commands["causal"]
    assert "model.timestep_conditioning=off" in commands["no-timestep"]
    assert "model.timestep_conditioning=additive" in commands["additive"]
    assert not any(part.startswith(("model.", "tokenizer.path", "vq.path")) for part in commands["baseline"])
    assert f"vq.path={tmp_path / 'baseline' / 'image_tokenizer'}" in commands["causal"]
    # demo-cpu pretrains: the baseline pretrains once, every other variant adapts that same export
    assert commands["baseline"][2:4] == ["train", "all"]
    for name in ("causal", "no-timestep", "additive"):
        assert commands[name][2:4] == ["train", "medim"]
        assert f"model.init_from={tmp_path / 'baseline' / 'pretrain'}" in commands[name]
    evaluation = evaluation_command(args, "causal", tmp_path, Path("judge"))
    assert evaluation[evaluation.index("--checkpoint") + 1] == str(tmp_path / "causal" / "medim")


def test_dry_run_prints_commands_and_trains_nothing(tmp_path, capsys):
    assert (
        main(
            ["--dry-run", "--max-minutes", "1", "--work-dir", str(tmp_path), "--variants", "baseline,causal"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.count("-m train all") == 1 and printed.count("-m train medim") == 1
    assert printed.count("-m medim evaluate") == 2
    assert not any(tmp_path.iterdir())


def test_without_pretraining_every_variant_trains_from_scratch(tmp_path):
    args = parse_args(
        ["--max-steps", "10", "--override", "pretrain.max_minutes=0", "--corpus", str(tmp_path / "c")]
    )
    for name in args.variants:
        command = training_command(args, name, tmp_path)
        assert command[2:4] == ["train", "all"]
        assert not any(part.startswith("model.init_from") for part in command)
        assert f"data.root={tmp_path / 'c'}" in command


def test_variants_share_the_baseline_token_cache(tmp_path):
    (tmp_path / "baseline" / "cache" / "train").mkdir(parents=True)
    share_cache(tmp_path, "causal")
    assert (tmp_path / "causal" / "cache").resolve() == (tmp_path / "baseline" / "cache").resolve()
    share_cache(tmp_path, "baseline")  # the baseline keeps its own
    assert not (tmp_path / "baseline" / "cache").is_symlink()


def test_unknown_variant_is_rejected():
    with pytest.raises(SystemExit):
        parse_args(["--variants", "baseline,bigger"])


def test_comparison_table_averages_domains_and_marks_failures():
    def domain(bleu, fd):
        return {
            "text": {"coco_bleu_1": bleu},
            "ce": {"f1_micro": 0.5},
            "domain_fd": {"value": fd},
            "fid": {"skipped": "no inception"},
        }

    metrics = {
        "image2report": {"per_domain": {"chest_xray": domain(0.2, 0), "pathology": domain(0.4, 0)}},
        "report2image": {
            "per_domain": {
                "chest_xray": {"domain_fd": {"value": 10.0}},
                "pathology": {"domain_fd": {"value": 30.0}},
            }
        },
        "training": {
            "steps": 300,
            "wall_minutes": 12.5,
            "final_val": {"val_loss": 4.2308, "val_nll_image": 6.081, "val_nll_text": 2.294},
        },
    }
    table = comparison_table([("MeDiM", metrics, "ok"), ("w/ causal mask", None, "training failed")])
    baseline, failed = table.splitlines()[2:]
    cells = [cell.strip() for cell in baseline.split("|")[1:-1]]
    assert cells[1] == "0.300" and cells[6] == "0.500"  # mB-1 and mCE-F1
    assert cells[7] == "—" and cells[9] == "20.00"  # mFID skipped, m domain FD averaged
    assert cells[-3:] == ["4.231 (6.08 / 2.29)", "300 steps, 12.5 min", "ok"]
    assert failed.endswith("| — | — | training failed |")
