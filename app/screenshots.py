"""Screenshots of the demo in headless Chromium: `python -m app.screenshots --out docs/screenshots`.

Serves the demo on localhost with the default checkpoint (or `--checkpoint`, or `--random` for an untrained
tiny model built in memory), drives each task through the page like a user, and saves one PNG per view. The
helpers here (`open_browser`, `run_report_to_image`, ...) are shared with the browser test.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1360, "height": 900}


@contextmanager
def open_browser(executable: str = CHROMIUM) -> Iterator:
    """A headless Chromium page (playwright) with the demo's viewport; closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            yield page
        finally:
            browser.close()


def open_demo(page, url: str, timeout_ms: int = 60_000) -> None:
    """Load the page and wait until the session has its model line (the model is loaded)."""
    page.goto(url, wait_until="domcontentloaded", timeout=timeout_ms)
    page.wait_for_selector("#medim-status", timeout=timeout_ms)
    page.wait_for_function(
        "() => !document.querySelector('#medim-model-line').innerText.includes('Loading')", timeout=timeout_ms
    )


def set_slider(page, elem_id: str, value: int) -> None:
    """Type a value into the number box of the slider with element id `elem_id`."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def watch_steps(page, timeout_s: float = 60.0) -> list[str]:
    """Poll the step counter until the run is done; returns the distinct counter texts seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = page.locator("#medim-status .medim-status")
        text = status.locator(".medim-step").first.inner_text() if status.count() else ""
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        if page.locator("#medim-status .medim-done").count():
            final = page.locator("#medim-status .medim-done .medim-step").inner_text()
            if seen[-1] != final:
                seen.append(final)
            return seen
        time.sleep(0.02)
    raise TimeoutError(f"the run did not finish within {timeout_s} s (saw {seen})")


def start_run(page, button_id: str) -> None:
    """Click a generate button after making sure no earlier 'done' status is mistaken for this run."""
    page.evaluate(
        "() => { const s = document.querySelector('#medim-status .medim-status'); "
        "if (s) s.classList.remove('medim-done'); }"
    )
    page.click(f"#{button_id}")


def run_report_to_image(page, report: str, steps: int, shot_midway: Path | None = None) -> list[str]:
    """Fill the report, generate, and return the step counter texts seen; optionally screenshot mid-run."""
    page.get_by_role("tab", name="Report → Image").click()
    set_slider(page, "medim-steps", steps)
    page.locator("#medim-report-in textarea").fill(report)
    start_run(page, "medim-btn-r2i")
    if shot_midway is not None:
        page.wait_for_function(
            "() => { const s = document.querySelector('#medim-status .medim-status');"
            " return s && Number(s.dataset.step) >= Math.ceil(Number(s.dataset.steps) / 3); }",
            timeout=60_000,
        )
        page.screenshot(path=str(shot_midway), full_page=False)
    return watch_steps(page)


def take_screenshots(url: str, out: Path, scan_path: Path) -> list[Path]:
    """Drive every view of the demo at `url` and save screenshots under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []

    def shot(page, name: str, full_page: bool = True) -> None:
        page.wait_for_timeout(400)  # let images finish painting
        path = out / name
        page.screenshot(path=str(path), full_page=full_page)
        saved.append(path)

    with open_browser() as page:
        open_demo(page, url)
        page.add_style_tag(content=".toast-wrap { display: none !important; }")  # transient pop-ups
        report = (
            "FINDINGS: Moderate left pleural effusion. The heart is normal in size. No pneumothorax. "
            "IMPRESSION: Left pleural effusion."
        )
        midway = out / "report_to_image_streaming.png"
        run_report_to_image(page, report, steps=24, shot_midway=midway)
        saved.append(midway)
        shot(page, "report_to_image.png")

        page.get_by_role("tab", name="Edit & resample").click()
        canvas = page.locator("#medim-edit-canvas img")
        box = canvas.bounding_box()
        for fx, fy in ((0.3, 0.3), (0.55, 0.3), (0.3, 0.55)):
            canvas.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
            page.wait_for_timeout(300)
        tokens = page.locator("#medim-tokens label")
        for index in range(min(tokens.count(), 3)):
            tokens.nth(index + 2 if tokens.count() > 5 else index).click()
        shot(page, "edit_selection.png")
        start_run(page, "medim-btn-edit")
        watch_steps(page)
        page.get_by_role("tab", name="When each part was decided").click()
        shot(page, "commit_steps.png")

        page.get_by_role("tab", name="Scan → Report").click()
        page.locator("input[type=file]").first.set_input_files(str(scan_path))
        page.wait_for_function(
            "() => document.querySelector('#medim-scan-note')?.innerText.includes('px')", timeout=30_000
        )
        start_run(page, "medim-btn-i2r")
        watch_steps(page)
        shot(page, "scan_to_report.png")

        page.get_by_role("tab", name="Pair").click()
        page.get_by_label("Finding").click()
        page.get_by_role("option", name="Pleural effusion").click()
        page.wait_for_timeout(300)
        set_slider(page, "medim-samples", 2)
        start_run(page, "medim-btn-pair")
        watch_steps(page)
        shot(page, "pair.png")

        page.get_by_role("tab", name="Model & reproducibility").click()
        shot(page, "model_card.png")
    return saved


def _scan_file(pipe, directory: Path) -> Path:
    """An example scan to upload: the first example image when there is one, else a generated image."""
    from app.inputs import load_examples

    for example in load_examples():
        if example.image_path is not None:
            return example.image_path
    image = pipe.generate_image("FINDINGS: The lungs are clear.", steps=4).images[0]
    path = directory / "scan.png"
    image.resize((256, 256)).save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/screenshots", type=Path)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="checkpoint directory or hub id (default: the app's default)")
    source.add_argument("--random", action="store_true", help="use an untrained tiny model built in memory")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (see app.py)

    from app.handlers import DemoHandlers
    from app.rating import StudyHook
    from app.runtime import ModelManager, configure_threads
    from app.ui import serve_locally

    configure_threads()
    if args.random:
        from medim.commands.init_random import build_random_pipeline

        manager = ModelManager("random-init (in memory)")
        manager.add(manager.default_key, build_random_pipeline())
    else:
        manager = ModelManager(args.checkpoint)
    pipe = manager.get()
    with tempfile.TemporaryDirectory() as scratch:
        handlers = DemoHandlers(manager, study=StudyHook(reason="not configured for screenshots"))
        demo, url = serve_locally(handlers)
        try:
            for path in take_screenshots(url, args.out, _scan_file(pipe, Path(scratch))):
                print(f"saved {path}")
        finally:
            demo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
