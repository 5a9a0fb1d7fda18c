"""`python -m medim` end to end on a tiny random checkpoint."""

import json

import pytest
from PIL import Image

from medim.__main__ import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    assert (
        main(
            [
                "init-random",
                "--out",
                str(out),
                "--hidden",
                "32",
                "--layers",
                "1",
                "--image-size",
                "16",
                "--grid",
                "4",
                "--codebook",
                "16",
                "--text-tokens",
                "12",
            ]
        )
        == 0
    )
    return out


def test_info_says_the_checkpoint_is_random(checkpoint, capsys):
    assert main(["info", str(checkpoint), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "random-init" and "noise" in info["warning"]
    assert info["sequence_length"] == 16 + 12 + 2
    assert info["trained_text_ids"] == "not recorded"
    assert info["image_tokenizer"].startswith("VQ, ")


def test_info_says_which_report_ids_the_default_was_trained_on(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["trained_text_ids"].startswith("342 of 1212; the others are read as ")


@pytest.mark.parametrize("task", ["report2image", "pair"])
def test_generate_writes_png_and_metadata(checkpoint, tmp_path, task):
    args = [
        "generate",
        "--task",
        task,
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(tmp_path),
        "--steps",
        "2",
        "--threads",
        "1",
        "--device",
        "cpu",
    ]
    if task == "report2image":
        args += ["--report", "FINDINGS: The heart is enlarged."]
    assert main(args) == 0
    meta = json.loads((tmp_path / "generation.json").read_text())
    image = Image.open(tmp_path / meta["outputs"][0]["image"])
    assert image.size == (16, 16)
    assert meta["checkpoint_sha256"] and meta["settings"]["steps"] == 2


def test_generate_report_from_an_image_file(checkpoint, tmp_path):
    Image.new("L", (50, 40), 90).save(tmp_path / "scan.png")
    args = [
        "generate",
        "--task",
        "image2report",
        "--checkpoint",
        str(checkpoint),
        "--image",
        str(tmp_path / "scan.png"),
        "--out",
        str(tmp_path / "out"),
        "--steps",
        "2",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    assert (tmp_path / "out" / "image2report_0_0.txt").is_file()


def test_user_errors_are_messages_not_tracebacks(checkpoint, tmp_path, capsys):
    assert (
        main(["generate", "--task", "report2image", "--checkpoint", str(checkpoint), "--device", "cpu"]) == 2
    )
    assert "needs --report" in capsys.readouterr().err
    (tmp_path / "notes.png").write_text("this is not an image")
    args = [
        "generate",
        "--task",
        "image2report",
        "--checkpoint",
        str(checkpoint),
        "--image",
        str(tmp_path / "notes.png"),
        "--device",
        "cpu",
    ]
    assert main(args) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize(
    "report, match",
    [
        ("右侧少量胸腔积液，心影不大。", "does not look like English"),
        ("x " * 1500, "the limit is 2,000"),
        ("   ", "empty"),
    ],
)
def test_cli_app_and_library_refuse_the_same_reports_with_the_same_message(checkpoint, capsys, report, match):
    from app.inputs import InputError, check_report
    from medim.pipeline import MeDiMPipeline
    from medim.reports import ReportError

    args = ["generate", "--task", "report2image", "--checkpoint", str(checkpoint), "--device", "cpu"]
    assert main([*args, "--report", report]) == 2
    cli_message = capsys.readouterr().err
    with pytest.raises(ReportError, match=match) as library:
        MeDiMPipeline.from_pretrained(checkpoint, device="cpu").generate_image(report, steps=1)
    with pytest.raises(InputError, match=match) as app:
        check_report(report)
    assert str(library.value) == str(app.value) and str(library.value) in cli_message


def test_text_the_model_has_not_seen_is_generated_with_a_visible_notice(checkpoint):
    from medim.pipeline import MeDiMPipeline

    pipe = MeDiMPipeline.from_pretrained(checkpoint, device="cpu")
    german = pipe.generate_image("Befund: Kleiner Pleuraerguss links. Herzgröße normal. 🫀", steps=1, seed=0)
    assert any("not trained on (ß ö 🫀)" in w for w in german.warnings)
    assert any("not in the model's vocabulary" in w for w in german.warnings)
