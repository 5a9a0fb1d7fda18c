"""Model-free parts of the demo: drawing, report checks, upload checks, examples, prompts, runtime settings."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from app.inputs import (
    UNCONDITIONAL,
    InputError,
    build_prompt,
    check_report,
    load_examples,
    load_scan,
    prompt_details,
    prompt_findings,
)
from app.render import (
    TokenView,
    cell_name,
    cell_names,
    commit_heatmap,
    render_masked,
    report_html,
    status_html,
    step_colour,
)
from app.runtime import CheckpointError, ModelManager, configure_threads, display_name, local_checkpoints
from medim.reports import MAX_REPORT_CHARS
from tests.app.helpers import phantom, write_dicom

# ---------------------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------------------


def test_cell_names_are_row_major_spreadsheet_labels():
    assert cell_names((2, 3)) == ["A1", "B1", "C1", "A2", "B2", "C2"]
    assert cell_name(0, 26) == "AA1"


def test_render_masked_darkens_exactly_the_masked_cells():
    image = Image.new("RGB", (32, 32), (200, 200, 200))
    masked = np.array([[True, False], [False, False]])
    out = np.asarray(render_masked(image, masked), dtype=float)
    assert out.shape == (320, 320, 3)
    masked_cell, free_cell = out[:160, :160].mean(), out[160:, 160:].mean()
    assert masked_cell < 0.7 * free_cell
    assert np.allclose(out[160:, 160:], 200, atol=2)  # unmasked cells are untouched


def test_commit_heatmap_gives_cells_of_one_step_one_colour():
    committed = np.array([[1, 3], [3, 0]])
    out = np.asarray(commit_heatmap(committed, steps=3))
    corner = lambda r, c: tuple(out[r * 160 + 4, c * 160 + 4])  # noqa: E731 - sample away from the label
    assert corner(0, 1) == corner(1, 0) == step_colour(3, 3)
    assert corner(0, 0) == step_colour(1, 3) != corner(0, 1)
    assert corner(1, 1) == (229, 231, 235)  # condition cell


def test_report_html_shows_masks_escapes_text_and_colours_by_confidence():
    tokens = [TokenView("<b>heart", 0.9, 2), TokenView("[MASK]", None, -1), TokenView(" x", 0.1, 1)]
    text = report_html(tokens, current_step=2)
    assert "&lt;b&gt;heart" in text and "<b>heart" not in text
    assert text.count("medim-mask") == 1
    assert "rgba(37,99,235,0.82)" in text and "rgba(37,99,235,0.20)" in text
    assert text.count("medim-fresh") == 1
    with pytest.raises(ValueError, match="mode"):
        report_html(tokens, mode="rainbow")


def test_status_html_reports_step_and_fraction():
    html = status_html(3, 12, "seed 1")
    assert "Step 3 / 12" in html and "width:25.0%" in html and 'data-step="3"' in html


# ---------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------


def test_check_report_cleans_whitespace_and_control_characters():
    assert check_report("  FINDINGS:\tSmall\x00 left\neffusion.  ") == "FINDINGS: Small left effusion."
    assert check_report("Épanchement pleural gauche, modéré.")  # Latin script with accents passes


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty"),
        ("   \n\t", "empty"),
        (None, "empty"),
        ("x" * (MAX_REPORT_CHARS + 1), "limit"),
        ("12 34 56 !!", "no words"),
        ("右侧少量胸腔积液，心影不大。", "English"),
        ("Небольшой левосторонний плевральный выпот.", "English"),
    ],
)
def test_check_report_refuses_bad_reports(text, match):
    with pytest.raises(InputError, match=match):
        check_report(text)


# ---------------------------------------------------------------------------------------------------------
# Uploads
# ---------------------------------------------------------------------------------------------------------


def _png_bomb(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels (the data is a tiny valid zlib stream)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def test_load_scan_reads_png_and_dicom_by_content(tmp_path):
    disguised = tmp_path / "scan.dcm"  # a PNG with a DICOM extension: content decides
    phantom().save(disguised, format="PNG")
    assert load_scan(disguised).size == (64, 64)
    dicom = write_dicom(tmp_path / "no_extension")
    image = load_scan(dicom)
    assert image.mode == "L" and image.size == (48, 48)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "empty"),
        (b"hello, I am a text file", "not a PNG, JPEG or DICOM"),
        (b"%PDF-1.7 ...", "PDF"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "corrupt|truncated|cannot parse"),
        (_png_bomb(30_000, 30_000), "bomb|max_pixels"),
    ],
)
def test_load_scan_refuses_bad_files_without_revealing_paths(tmp_path, content, match):
    path = tmp_path / "gradio_tmp8f3k2.png"  # the temporary name an upload gets
    path.write_bytes(content)
    with pytest.raises(InputError, match=match) as error:
        load_scan(path)
    message = str(error.value)
    assert str(tmp_path) not in message and "tmp8f3k2" not in message
    # one statement of what is wrong, not "…not a usable scan: upload: …"
    assert message.startswith("The upload is not a usable scan: ") and "upload:" not in message


def test_load_scan_refuses_tiny_and_missing_images(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "tiny.png")
    with pytest.raises(InputError, match="at least 8"):
        load_scan(tmp_path / "tiny.png")
    with pytest.raises(InputError, match="No scan"):
        load_scan(None)


# ---------------------------------------------------------------------------------------------------------
# Examples and prompts
# ---------------------------------------------------------------------------------------------------------


def test_examples_skip_broken_lines_and_paths_outside_their_folder(examples_dir):
    examples = load_examples(examples_dir)
    assert [e.id for e in examples] == ["ex1", "ex2"]
    assert examples[0].image_path is not None and examples[0].image_path.is_file()
    assert examples[1].image_path is None  # ../../../etc/passwd is not followed


def test_prompt_builder_makes_a_first_sentence_per_finding():
    assert build_prompt("chest_xray", UNCONDITIONAL, None) == ""
    assert prompt_findings("chest_xray")[0] == UNCONDITIONAL
    details = prompt_details("chest_xray", "Pleural effusion")
    assert (
        build_prompt("chest_xray", "Pleural effusion", details[1])
        == "FINDINGS: Moderate right pleural effusion."
    )
    assert build_prompt("pathology", "Necrosis", "focal") == "There is focal necrosis."
    with pytest.raises(InputError, match="Unknown finding"):
        build_prompt("chest_xray", "Broken leg", None)


# ---------------------------------------------------------------------------------------------------------
# Runtime
# ---------------------------------------------------------------------------------------------------------


def test_configure_threads_reads_medim_threads():
    try:
        assert configure_threads({"MEDIM_THREADS": "2"}) == 2 and torch.get_num_threads() == 2
        assert configure_threads({}) == 2
        for bad in ("0", "two"):
            with pytest.raises(ValueError, match="MEDIM_THREADS"):
                configure_threads({"MEDIM_THREADS": bad})
    finally:
        torch.set_num_threads(1)


def test_manager_reports_a_failed_load_and_keeps_serving(pipe, tmp_path):
    manager = ModelManager("good")
    manager.add("good", pipe)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "medim_config.json").write_text("{not json")
    for key in (str(tmp_path / "broken"), str(tmp_path / "missing"), "nobody/nothing-offline"):
        with pytest.raises(CheckpointError, match="Could not load"):
            manager.get(key)
    assert manager.get() is pipe


def test_checkpoint_names_hide_server_paths(tmp_path):
    (tmp_path / "assets" / "a" / "ckpt").mkdir(parents=True)
    (tmp_path / "assets" / "a" / "ckpt" / "medim_config.json").write_text("{}")
    assert local_checkpoints(tmp_path / "assets") == [str((tmp_path / "assets" / "a" / "ckpt").resolve())]
    assert display_name(str(tmp_path / "somewhere" / "ckpt")) == "ckpt"
    assert display_name("owner/name") == "owner/name"
