"""The demo in a real headless Chromium: report → image streams visibly, step by step, with no outside requests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from app.screenshots import CHROMIUM, open_browser, open_demo, run_report_to_image
from app.ui import serve_locally

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
