"""The demo's handlers on a tiny random checkpoint: every task, replay, edits, bundles, checkpoints and bad input."""

from __future__ import annotations

import json
import types
import zipfile

import gradio as gr
import pytest
import torch
from PIL import Image

from app.bundle import read_bundle
from app.handlers import RESULT_OUTPUTS, DemoHandlers
from app.inputs import InputError
from app.rating import StudyHook, study_hook_from_env
from app.runtime import ModelManager, model_card, model_warnings
from tests.app.helpers import RANDOM_KEY, phantom, settings_args

REPORT = "FINDINGS: Moderate left pleural effusion. The heart is normal in size."


def run_all(generator):
    """Exhaust a streaming handler; returns the list of update dicts."""
    updates = list(generator)
    for update in updates:
        assert set(update) <= set(RESULT_OUTPUTS) | {
            "steps",
            "temperature",
            "guidance",
            "schedule",
            "random_seed",
            "samples",
            "reproduce_status",
        }
    return updates


def test_report_to_image_streams_every_step_then_matches_pipeline_run(handlers, pipe):
    updates = run_all(handlers.generate_image(REPORT, *settings_args(steps=6, seed=11), None))
    steps = [u for u in updates if "live_report" in u and "run" not in u]
    assert len(steps) >= 3  # intermediate steps arrive before the final one
    assert [f"Step {i} / 6" in u["status"] for i, u in enumerate(steps, start=1)] == [True] * len(steps)
    assert steps[0]["live_image"].size == (320, 320)
    final = updates[-1]
    run = final["run"]
    assert run.task == "report2image" and run.settings.seed == 11 and len(run.states) >= 6
    assert "medim-done" in final["status"] and "medim-mask" not in final["live_report"]
    # the streamed result is exactly what the library's one-shot call gives
    expected = pipe.generate_image(
        REPORT, seed=11, steps=6, temperature=1.0, guidance_scale=0.0, schedule="arccos"
    )
    assert torch.equal(run.tokens, expected.tokens)
    assert list(run.images[0].getdata()) == list(expected.images[0].getdata())
    assert final["replay"]["maximum"] == 6 and final["after_run"]["visible"] is True


def test_intermediate_frames_show_fewer_masked_cells_over_time(handlers):
    updates = run_all(handlers.generate_image(REPORT, *settings_args(steps=5), None))
    masked = [int(state.image_masked.sum()) for state in updates[-1]["run"].states]
    assert masked[0] > 0 and masked[-1] == 0
    assert masked == sorted(masked, reverse=True)


def test_scan_to_report_and_multiple_samples(handlers):
    scan = phantom(seed=5)
    updates = run_all(handlers.generate_report(scan, *settings_args(steps=4, samples=2), None))
    run = updates[-1]["run"]
    assert run.task == "image2report" and run.num_samples == 2 and len(run.reports) == 2
    assert updates[-1]["sample"]["visible"] is True
    assert "Sample 2" in updates[-1]["live_report"]
    # the scan is the condition: its image tokens are fixed (committed_at 0) in every state
    image_slice = run.layout.image_slice
    assert (run.states[0].committed_at[:, image_slice] == 0).all()
    assert any("[MASK]" in u.get("live_report", "") for u in updates[1:-1])


def test_prompted_pair_keeps_the_prompt_and_unconditional_pair_runs(handlers, pipe):
    prompt = "FINDINGS: Small left pleural effusion."
    run = run_all(handlers.generate_pair(prompt, *settings_args(steps=4), None))[-1]["run"]
    ids = pipe.text_tokenizer(prompt, add_special_tokens=False)["input_ids"][: run.layout.text_tokens]
    text = run.tokens[0, run.layout.text_slice].tolist()
    assert text[: len(ids)] == ids
    assert run.inputs["prompt"] == prompt
    free = run_all(handlers.generate_pair("", *settings_args(steps=4), None))[-1]["run"]
    assert free.inputs["prompt"] == "" and (free.states[-1].committed_at[0, free.layout.text_slice] > 0).any()


def test_truncated_report_gives_a_visible_notice(handlers):
    long_report = " ".join(["The heart is normal in size and the lungs are clear."] * 12)
    final = run_all(handlers.generate_image(long_report, *settings_args(steps=3), None))[-1]
    assert "truncated" in final["notices"] and any("truncated" in w for w in final["run"].warnings)


@pytest.mark.parametrize(
    "report, settings, match",
    [
        ("", settings_args(), "empty"),
        ("右侧少量胸腔积液，心影不大。", settings_args(), "English"),
        ("x " * 1500, settings_args(), "limit"),
        (REPORT, settings_args(steps=0), "steps"),
        (REPORT, settings_args(samples=9), "samples"),
        (REPORT, settings_args(temperature=-1.0), "temperature"),
        (REPORT, settings_args(schedule="zigzag"), "schedule"),
    ],
)
def test_bad_generation_input_is_a_clear_gradio_error(handlers, report, settings, match, caplog):
    with caplog.at_level("INFO", logger="medim.app"), pytest.raises(gr.Error, match=match) as error:
        run_all(handlers.generate_image(report, *settings, None))
    # an expected refusal: one INFO line on the console, no traceback (Gradio prints one unless told not to)
    assert error.value.print_exception is False
    assert [r.levelname for r in caplog.records if r.name == "medim.app"] == ["INFO"]


def test_scan_handlers_refuse_missing_and_broken_scans(handlers, tmp_path):
    with pytest.raises(gr.Error, match="Upload a scan"):
        run_all(handlers.generate_report(None, *settings_args(), None))
    broken = tmp_path / "xray.png"
    broken.write_bytes(b"GIF89a not really")
    with pytest.raises(gr.Error, match="GIF") as error:
        handlers.upload_scan(str(broken))
    assert str(tmp_path) not in str(error.value)
    good = tmp_path / "ok.jpg"
    phantom(size=200).save(good, format="PNG")
    loaded = handlers.upload_scan(str(good))
    assert loaded["scan"].size == (200, 200) and "200×200" in loaded["scan_note"]


def test_examples_fill_the_inputs(handlers):
    label = handlers.report_examples[0]
    assert handlers.pick_report_example(label)["report_in"] == "FINDINGS: Small left effusion."
    assert handlers.pick_scan_example(handlers.scan_examples[0])["scan"].size == (64, 64)
    with pytest.raises(gr.Error, match="Unknown example"):
        handlers.pick_report_example("not an example")


def test_replay_shows_any_earlier_step(handlers):
    run = run_all(handlers.generate_image(REPORT, *settings_args(steps=6), None))[-1]["run"]
    frames = {step: handlers.replay(run, step, 0) for step in (1, 3, 6)}
    for step, frame in frames.items():
        assert f"Step {step} / 6" in frame["status"]
    first, last = frames[1]["live_image"], frames[6]["live_image"]
    assert list(first.getdata()) != list(last.getdata())  # masked cells are drawn hatched early on
    assert handlers.replay(None, 2, 0) == {}


def test_commit_views_and_edit_pickers_follow_the_run(handlers):
    final = run_all(handlers.generate_pair("", *settings_args(steps=4), None))[-1]
    run = final["run"]
    assert final["commit_image"].size == (320, 320)
    assert "committed at step" in final["commit_report"]
    assert final["edit_cells"]["choices"][0] in ("A1", ("A1", "A1"))
    assert len(final["edit_tokens"]["choices"]) == len(run.report_positions(0))


def test_clicking_the_canvas_toggles_cells(handlers):
    run = run_all(handlers.generate_image(REPORT, *settings_args(steps=3), None))[-1]["run"]
    click = types.SimpleNamespace(index=[320 * 0.9, 320 * 0.1])  # top-right cell of a 4x4 grid
    chosen = handlers.toggle_cell(run, 0, [], click)
    assert chosen["edit_cells"] == ["D1"]
    assert handlers.toggle_cell(run, 0, ["A1", "D1"], click)["edit_cells"] == ["A1"]


def test_edit_resamples_only_the_selection(handlers):
    run = run_all(handlers.generate_pair("", *settings_args(steps=4, samples=2), None))[-1]["run"]
    offsets = run.report_positions(1)[:2]
    edited = run_all(
        handlers.apply_edit(run, 1, ["A1", "C3"], offsets, *settings_args(steps=3, seed=99), None)
    )
    new = edited[-1]["run"]
    assert new.task == "inpaint" and new.num_samples == 1
    layout = run.layout
    chosen = torch.zeros(layout.seq_len, dtype=torch.bool)
    chosen[layout.image_slice.start + 0] = chosen[layout.image_slice.start + 10] = True
    for offset in offsets:
        chosen[layout.text_slice.start + offset] = True
    assert torch.equal(new.tokens[0, ~chosen], run.tokens[1, ~chosen])
    assert (new.states[-1].committed_at[0, chosen] > 0).all()
    # the other sample is not silently dropped: the result says where it went
    assert "Edited sample 2 of 2" in edited[-1]["notices"] and "other 1 sample is" in edited[-1]["notices"]
    single = run_all(handlers.generate_pair("", *settings_args(steps=3), None))[-1]["run"]
    alone = run_all(handlers.apply_edit(single, 0, ["A1"], [], *settings_args(steps=3), None))[-1]
    assert "Edited sample" not in alone["notices"]
    with pytest.raises(gr.Error, match="Pick image cells"):
        run_all(handlers.apply_edit(run, 0, [], [], *settings_args(), None))
    with pytest.raises(gr.Error, match="unknown image cell"):
        run_all(handlers.apply_edit(run, 0, ["Z9"], [], *settings_args(), None))


@pytest.mark.parametrize("task", ["report2image", "image2report", "pair", "inpaint"])
def test_bundle_has_everything_and_reproduces_the_same_result(handlers, pipe, task):
    settings = settings_args(steps=4, seed=123, temperature=0.8)
    if task == "report2image":
        final = run_all(handlers.generate_image(REPORT, *settings, None))[-1]
    elif task == "image2report":
        final = run_all(handlers.generate_report(phantom(seed=2).convert("RGB"), *settings, None))[-1]
    elif task == "pair":
        final = run_all(handlers.generate_pair("FINDINGS: Small left effusion.", *settings, None))[-1]
    else:
        base = run_all(handlers.generate_pair("", *settings, None))[-1]["run"]
        final = run_all(handlers.apply_edit(base, 0, ["B2"], [0], *settings, None))[-1]
    run = final["run"]
    path = final["bundle"]["value"]
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        assert {"settings.json", "image.png", "report.txt", "tokens.json", "README.txt"} <= names
        saved = json.loads(archive.read("settings.json"))
        assert archive.read("report.txt").decode().strip() == run.reports[0]
    assert saved["seed"] == 123 and saved["settings"]["temperature"] == 0.8 and saved["task"] == task
    assert saved["checkpoint"]["sha256"] == pipe.checkpoint_hash
    assert torch.equal(read_bundle(path).tokens, run.tokens)
    # the settings box values differ now: reproducing must use the bundle's, and say it matched
    again = run_all(handlers.reproduce(path, None))
    assert again[0]["seed"] == 123 and again[0]["steps"] == 4
    assert "Reproduced: identical" in again[-1]["notices"]
    # the verdict also shows on the Model tab, next to the "Run it again" button
    assert "Reproduced: identical" in again[-1]["reproduce_status"]
    assert torch.equal(again[-1]["run"].tokens, run.tokens)


def test_bad_bundles_are_refused(handlers, tmp_path):
    not_zip = tmp_path / "a.zip"
    not_zip.write_bytes(b"plain text")
    no_settings = tmp_path / "b.zip"
    with zipfile.ZipFile(no_settings, "w") as archive:
        archive.writestr("image.png", b"x")
    bomb = tmp_path / "c.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("settings.json", b" " * (21 * 1024 * 1024))
    wrong = tmp_path / "d.zip"
    with zipfile.ZipFile(wrong, "w") as archive:
        archive.writestr("settings.json", json.dumps({"format": "medim-demo-bundle/1", "task": "teleport"}))
    for path, match in (
        (not_zip, "not a zip"),
        (no_settings, "settings.json"),
        (bomb, "zip bomb"),
        (wrong, "Unknown task"),
    ):
        with pytest.raises(gr.Error, match=match):
            run_all(handlers.reproduce(str(path), None))
    with pytest.raises(InputError):
        read_bundle(tmp_path / "missing.zip")


def test_checkpoint_switch_loads_a_directory_and_survives_a_bad_one(handlers, pipe, tmp_path):
    saved = pipe.save_pretrained(tmp_path / "ckpt", info={"requires_gpu": True})
    (saved / "MODEL_CARD.md").write_text("# Tiny card\nTrained on nothing.")
    with pytest.raises(gr.Error, match="Could not load"):
        handlers.load_checkpoint(None, str(tmp_path / "nowhere"), None)
    with pytest.raises(gr.Error, match="Choose a checkpoint"):
        handlers.load_checkpoint("", "  ", None)
    assert handlers.manager.get(None) is pipe  # the session's previous checkpoint still serves
    loaded = handlers.load_checkpoint(None, str(saved), None)
    assert loaded["checkpoint"] == str(saved.resolve())
    assert "GPU" in loaded["model_line"] and "Tiny card" in loaded["model_card"]
    assert "not for clinical use" in loaded["model_card"]
    new_pipe = handlers.manager.get(loaded["checkpoint"])
    assert new_pipe.checkpoint_hash and any("GPU" in w for w in model_warnings(new_pipe))


def test_session_start_shows_the_model_card_or_the_load_error(handlers, tmp_path):
    start = handlers.session_start(None)
    assert "random-init" in start["model_line"] and "untrained" in start["model_line"]
    assert "not for clinical use" in start["model_card"]
    broken = DemoHandlers(ModelManager(str(tmp_path / "missing")), study=StudyHook(reason="off"))
    message = broken.session_start(None)
    assert "Could not load" in message["model_line"]


def test_model_card_falls_back_to_checkpoint_info(pipe):
    card = model_card(pipe, RANDOM_KEY)
    assert "random-init" in card and "not for clinical use" in card and "parameters" in card
    assert f"| image tokenizer | {pipe.image_tokenizer.describe()} |" in card


def test_rating_hook_is_off_without_configuration_and_sends_pairs_when_on(handlers, tmp_path):
    assert not study_hook_from_env({}).enabled and "MEDIM_STUDY_DB" in study_hook_from_env({}).reason
    run = run_all(handlers.generate_image(REPORT, *settings_args(steps=3), None))[-1]["run"]
    with pytest.raises(gr.Error, match="Rating is not available"):
        handlers.send_to_study(run, 0)
    pytest.importorskip("eval_human.study")
    from eval_human.store import StudyStore

    db = tmp_path / "study.sqlite"
    store = StudyStore(db)
    store.add_raters(store.create_study("demo-study"), ["rater-a", "rater-b"])
    missing = study_hook_from_env({"MEDIM_STUDY_DB": str(db), "MEDIM_STUDY_ID": "no-such-study"})
    assert not missing.enabled and "could not be opened" in missing.reason
    handlers.study = study_hook_from_env({"MEDIM_STUDY_DB": str(db), "MEDIM_STUDY_ID": "demo-study"})
    assert handlers.study.enabled
    sent = handlers.send_to_study(run, 0)
    assert "as item" in sent["rate_status"]


def test_final_images_are_plain_rgb_pngs(handlers):
    final = run_all(handlers.generate_image(REPORT, *settings_args(steps=3), None))[-1]
    with zipfile.ZipFile(final["bundle"]["value"]) as archive, archive.open("image.png") as handle:
        image = Image.open(handle)
        image.load()
    assert image.format == "PNG" and image.mode == "RGB" and image.size == (32, 32)


def test_the_page_the_text_box_the_bundle_and_the_cli_show_the_same_report(handlers, pipe, tmp_path):
    """One seed, one report: the tokens on the page, the "Report text" box, the bundle's report.txt and the
    CLI's output are the same text (the sampler only pads a suffix, so no view can show words after a pad)."""
    import html as html_lib
    import re

    from medim.__main__ import main as cli
    from medim.data.io import load_image

    scan = tmp_path / "scan.png"
    phantom(seed=4).convert("RGB").save(scan)
    settings = settings_args(steps=4, seed=7)
    final = run_all(handlers.generate_report(load_image(scan), *settings, None))[-1]
    report_div = final["live_report"].split('<div class="medim-legend">')[0]
    pieces = re.findall(r'<span class="medim-tok[^"]*"[^>]*>(.*?)</span>', report_div)
    page = " ".join(html_lib.unescape("".join(pieces)).split())
    box = final["report_text"]
    with zipfile.ZipFile(final["bundle"]["value"]) as archive:
        bundle = archive.read("report.txt").decode().strip()
    checkpoint = pipe.save_pretrained(tmp_path / "ckpt")
    args = ["generate", "--task", "image2report", "--checkpoint", str(checkpoint), "--image", str(scan)]
    assert cli([*args, "--out", str(tmp_path / "cli"), "--steps", "4", "--seed", "7", "--device", "cpu"]) == 0
    from_cli = (tmp_path / "cli" / "image2report_7_0.txt").read_text().strip()

    def words(text: str) -> str:  # the page draws bytes that decode to nothing (U+FFFD) as "·"
        return " ".join(text.replace("\ufffd", "·").split())

    assert box and page == words(box) == words(bundle) == words(from_cli)


def test_task_tabs_start_the_steps_and_temperature_sliders_at_each_task_s_own_settings(
    handlers, pipe, tmp_path
):
    saved = pipe.save_pretrained(tmp_path / "ckpt")
    config = json.loads((saved / "sampler_config.json").read_text())
    config.update(
        steps=6,
        temperature=1.0,
        task_steps={"image2report": 9},
        task_settings={"image2report": {"temperature": 0.7}, "pair": {"steps": 8}},
    )
    (saved / "sampler_config.json").write_text(json.dumps(config))
    key = handlers.load_checkpoint(None, str(saved), None)["checkpoint"]
    assert handlers.task_defaults("image2report", key) == {"steps": 9, "temperature": 0.7}
    assert handlers.task_defaults("report2image", key) == {"steps": 6, "temperature": 1.0}
    assert handlers.task_defaults("pair", key) == {"steps": 8, "temperature": 1.0}
    # a checkpoint that cannot be loaded leaves the sliders alone (its error is shown elsewhere)
    assert handlers.task_defaults("image2report", str(tmp_path / "nowhere")) == {}


def test_a_task_s_own_confidence_noise_reaches_the_demo_s_stream(handlers, pipe, tmp_path):
    # Confidence noise has no slider: the demo must take it from the checkpoint's settings for the task.
    saved = pipe.save_pretrained(tmp_path / "ckpt")
    config = json.loads((saved / "sampler_config.json").read_text())
    config["task_settings"] = {"image2report": {"confidence_noise": 0.0}}
    (saved / "sampler_config.json").write_text(json.dumps(config))
    key = handlers.load_checkpoint(None, str(saved), None)["checkpoint"]
    scan = phantom(seed=3)
    run = run_all(handlers.generate_report(scan, *settings_args(steps=5, seed=4), key))[-1]["run"]
    expected = pipe.generate_report(
        scan, seed=4, steps=5, temperature=1.0, guidance_scale=0.0, schedule="arccos", confidence_noise=0.0
    )
    assert torch.equal(run.tokens, expected.tokens)
