"""The demo served on localhost, driven through gradio_client; plus its queue and launch configuration."""

from __future__ import annotations

import ast
import html

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from app.handlers import DemoHandlers
from app.rating import StudyHook
from app.runtime import REPO_ROOT, ModelManager
from app.ui import GENERATE, MAX_QUEUE, build_demo, launch_kwargs, serve_locally
from tests.app.helpers import phantom, settings_args


@pytest.fixture(scope="module")
def served(pipe, tmp_path_factory):
    """The demo on a random localhost port (module-wide: starting a server costs a few seconds)."""
    from tests.app.helpers import RANDOM_KEY

    manager = ModelManager(RANDOM_KEY)
    manager.add(RANDOM_KEY, pipe)
    handlers = DemoHandlers(
        manager, study=StudyHook(reason="off"), bundle_dir=tmp_path_factory.mktemp("bundles")
    )
    demo, url = serve_locally(handlers)
    yield url
    demo.close()


def test_report_to_image_streams_through_the_api(served):
    client = Client(served, verbose=False)
    job = client.submit(
        "FINDINGS: Small right pneumothorax.", *settings_args(steps=5, seed=3), api_name="/generate_image"
    )
    final = job.result(timeout=120)
    streamed = job.outputs()
    assert len(streamed) >= 4  # the start, intermediate steps, the final state
    image_path, _report, status = final[0], final[1], final[2]
    assert "Step 5 / 5" in status and "medim-done" in status
    assert Image.open(image_path).size == (320, 320)
    assert any("Step 2 / 5" in output[2] for output in streamed if isinstance(output[2], str))


def test_api_errors_are_readable(served, tmp_path):
    client = Client(served, verbose=False)
    with pytest.raises(Exception, match="empty"):
        client.predict("   ", *settings_args(), api_name="/generate_image")
    text = tmp_path / "scan.png"
    text.write_text("this is not an image")
    with pytest.raises(Exception, match="not a PNG, JPEG or DICOM"):
        client.predict(handle_file(str(text)), api_name="/upload_scan")


def test_upload_then_scan_to_report_in_one_session(served, tmp_path):
    client = Client(served, verbose=False)
    path = tmp_path / "scan.jpg"
    phantom(size=96).convert("RGB").save(path, format="JPEG")
    _preview, note = client.predict(handle_file(str(path)), api_name="/upload_scan")
    assert "96×96" in note
    final = client.predict(*settings_args(steps=3), api_name="/generate_report")
    assert "Step 3 / 3" in final[2] and isinstance(final[4], str)


def test_uploads_over_the_size_limit_are_refused(served, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (21 * 1024 * 1024))
    with pytest.raises(Exception, match="(?i)size|large|413"):
        Client(served, verbose=False).predict(handle_file(str(big)), api_name="/upload_scan")


def test_generation_shares_one_slot_and_light_events_skip_the_queue(handlers):
    demo = build_demo(handlers)
    fns = {fn.api_name or fn.name: fn for fn in demo.fns.values()}
    for name in (
        "generate_image",
        "generate_report",
        "generate_pair",
        "edit",
        "reproduce",
        "load_checkpoint",
    ):
        assert fns[name].concurrency_id == GENERATE and fns[name].concurrency_limit == 1 and fns[name].queue
    light = [
        fn for fn in demo.fns.values() if fn.name in ("replay", "toggle_cell", "update_prompt", "show_cells")
    ]
    assert len(light) >= 4 and not any(fn.queue for fn in light)
    assert demo._queue.max_size == MAX_QUEUE
    options = launch_kwargs()
    assert options["max_file_size"] and options["allowed_paths"] == [] and options["ssr_mode"] is False
    fonts = [getattr(font, "name", font) for font in options["theme"]._font]
    assert all(
        isinstance(font, str) and "Google" not in type(font).__name__ for font in options["theme"]._font
    )
    assert "system-ui" in fonts


def test_importing_or_building_the_app_loads_no_model():
    """Model code is imported inside functions only, and building the page never calls the loader."""
    heavy = ("medim.pipeline", "medim.modeling", "medim.commands")
    for path in sorted((REPO_ROOT / "app").glob("*.py")) + [REPO_ROOT / "app.py"]:
        for node in ast.parse(path.read_text()).body:  # module level only
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(name.startswith(heavy) for name in names), f"{path.name} imports {names} at load"

    def explode(key):
        raise AssertionError(f"build_demo loaded {key}")

    build_demo(DemoHandlers(ModelManager("x", loader=explode), study=StudyHook(reason="off")))


def test_editing_one_sample_of_several_says_where_the_others_are(served):
    """Through the server: a two-sample pair, then an edit of the second sample in the same session."""
    client = Client(served, verbose=False)
    client.predict("", *settings_args(steps=3, samples=2), api_name="/generate_pair")
    final = client.predict(1, ["A1"], [], *settings_args(steps=3), api_name="/edit")
    notices = html.unescape(final[3])  # the notices box is HTML
    assert "Edited sample 2 of 2" in notices and "previous result's bundle" in notices
