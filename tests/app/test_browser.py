"""The demo in a real headless Chromium: report → image streams visibly, step by step, with no outside requests;
scan → report on the shipped default shows the report being written over the steps, not all at the last one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from app.handlers import DemoHandlers
from app.rating import StudyHook
from app.runtime import ModelManager
from app.screenshots import CHROMIUM, open_browser, open_demo, run_report_to_image, start_run, watch_steps
from app.ui import serve_locally

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "assets" / "default"
CHEST_SCAN = REPO / "assets" / "examples" / "test" / "images" / "test-cxr-0-000000.png"

pytestmark = pytest.mark.browser

OUTPUT = Path(os.environ.get("MEDIM_TEST_OUTPUT", "test-output"))


@pytest.fixture(scope="module")
def browser_ready():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"chromium is not installed at {CHROMIUM}")
    pytest.importorskip("playwright.sync_api")


def test_report_to_image_streams_in_the_browser(browser_ready, handlers):
    demo, url = serve_locally(handlers)
    outside: list[str] = []
    try:
        with open_browser() as page:
            page.on(
                "request",
                lambda request: (
                    outside.append(request.url)
                    if urlparse(request.url).hostname not in ("127.0.0.1", "localhost")
                    and not request.url.startswith(("data:", "blob:"))
                    else None
                ),
            )
            open_demo(page, url)
            seen = run_report_to_image(page, "FINDINGS: Moderate left pleural effusion.", steps=12)
            OUTPUT.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUTPUT / "app_browser_report_to_image.png"), full_page=True)
            image_src = page.locator("#medim-live-image img").get_attribute("src")
            replay_box = page.locator("#medim-replay input[type=number]")
            replay_box.fill("3")
            replay_box.press("Enter")
            page.wait_for_function(
                "() => document.querySelector('#medim-status .medim-step')?.innerText === 'Step 3 / 12'",
                timeout=10_000,
            )
    finally:
        demo.close()
    assert seen[-1] == "Step 12 / 12"
    # intermediate steps reached the page before the final one (streaming, not one final update)
    assert len([text for text in seen[:-1] if text.startswith("Step ")]) >= 3, seen
    assert image_src and (OUTPUT / "app_browser_report_to_image.png").stat().st_size > 10_000
    assert outside == []  # no CDN fonts, analytics or other outside requests


def _words_on_page(page) -> int:
    return page.locator("#medim-live-report .medim-tok:not(.medim-mask)").count()


def _show_step(page, step: int, steps: int) -> None:
    box = page.locator("#medim-replay input[type=number]")
    box.fill(str(step))
    box.press("Enter")
    # a run whose every slot was decided early (words, then free padding) jumps from there to its last step, so
    # a replayed step past that shows the last one; the replay's own detail line tells it from the live view
    page.wait_for_function(
        f"() => document.querySelector('#medim-status .medim-detail')?.innerText.startsWith('replay') && "
        f"['Step {step} / {steps}', 'Step {steps} / {steps}']"
        ".includes(document.querySelector('#medim-status .medim-step')?.innerText)",
        timeout=10_000,
    )


def test_scan_to_report_shows_the_report_forming_at_the_default_schedule(browser_ready, tmp_path):
    """At the shipped default's own settings for a report (sampler_config.json's image2report steps, arccos), the
    words appear over the steps: the report is partly written by half-way, and the last step does not bring most
    of it (padding decided early is free)."""
    if not (DEFAULT / "model.safetensors").exists():
        pytest.skip("the shipped default checkpoint is not in this checkout")
    from medim.config import SamplerConfig
    from medim.pipeline import MeDiMPipeline

    manager = ModelManager("default")
    manager.add("default", MeDiMPipeline.from_pretrained(DEFAULT, device="cpu"))
    handlers = DemoHandlers(manager, study=StudyHook(reason="off in tests"), bundle_dir=tmp_path / "bundles")
    demo, url = serve_locally(handlers)
    try:
        with open_browser() as page:
            open_demo(page, url)
            page.get_by_role("tab", name="Scan → Report").click()
            page.locator("input[type=file]").first.set_input_files(str(CHEST_SCAN))
            page.wait_for_function(
                "() => document.querySelector('#medim-scan-note')?.innerText.includes('px')", timeout=30_000
            )
            start_run(page, "medim-btn-i2r")
            seen = watch_steps(page)
            steps = int(seen[-1].split("/")[-1])
            words = []  # the words the live view shows after each step, as the replay slider shows them again
            for step in range(1, steps + 1):
                _show_step(page, step, steps)
                words.append(_words_on_page(page))
    finally:
        demo.close()
    assert steps == SamplerConfig.load(DEFAULT / "sampler_config.json").for_task("image2report").steps
    final = words[-1]
    assert final >= 10, words  # a report, not a stub
    assert words == sorted(words), words  # committed words never disappear
    assert words[steps // 2 - 1] >= 0.2 * final, words  # partly written by half-way
    assert final - words[-2] <= 0.4 * final, words  # the last step adds a minority of the words
    assert len(set(words)) >= steps // 2, words  # words arrive at many steps
