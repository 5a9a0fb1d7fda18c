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
