"""Event handlers of the demo, one method per user action, returning `{output name: value}` dicts.

`ui.build_demo` maps names to components (missing names are left unchanged), so handlers are plain Python that
tests call directly. Streaming handlers are generators: one dict per sampling step, then a final dict that also
fills the replay slider, the commit-step views, the edit pickers and the download bundle. User mistakes and
failed checkpoints become `gr.Error`s with a readable message; nothing a user does changes another session.
"""

from __future__ import annotations

import contextlib
import html
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image, ImageOps

from app.bundle import read_bundle, same_result, write_bundle
from app.inputs import (
    InputError,
    build_prompt,
    check_report,
    fallback_examples,
    load_examples,
    load_scan,
    prompt_details,
    prompt_findings,
)
from app.rating import StudyHook, study_hook_from_env
from app.render import cell_names, legend_html, status_html
from app.runtime import CheckpointError, ModelManager, display_name, model_card, model_summary, model_warnings
from app.session import (
    TASK_TITLES,
    Run,
    Settings,
    cell_at,
    commit_views,
    edit_canvas,
    render_step,
    replay_frame,
    stream_edit,
    stream_inpaint,
    stream_task,
    token_choices,
)

PREVIEW_SIZE = 320

# Outputs of every generation event, in the order ui.build_demo wires them.
RESULT_OUTPUTS = (
    "live_image",
    "live_report",
    "status",
    "notices",
    "report_text",
    "run",
    "after_run",
    "replay",
    "sample",
    "commit_image",
    "commit_report",
    "edit_canvas",
    "edit_cells",
    "edit_tokens",
    "bundle",
    "rate_row",
    "rate_status",
    "seed",
)
SETTINGS_OUTPUTS = ("steps", "temperature", "guidance", "schedule", "seed", "random_seed", "samples")
# "Run it again" lives on the Model tab: its verdict is shown there too, next to the button
REPRODUCE_OUTPUTS = (*dict.fromkeys((*RESULT_OUTPUTS, *SETTINGS_OUTPUTS)), "reproduce_status")


LOGGER = logging.getLogger("medim.app")


def refusal(message: str, title: str) -> gr.Error:
    """A gr.Error for an expected refusal (bad input, nothing to act on): one INFO line on the server console
    instead of a traceback, which is kept for real faults."""
    LOGGER.info("refused (%s): %s", title, message)
    return gr.Error(message, title=title, print_exception=False)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn refusals (bad input, bad checkpoint, pipeline ValueErrors) into gr.Error messages for the user."""
    try:
        yield
    except gr.Error:
        raise
    except (InputError, CheckpointError, ValueError) as error:
        raise refusal(str(error), title="Cannot do that") from error


class DemoHandlers:
    """All handlers, bound to a ModelManager, the examples and the optional rating study.

    Args:
        manager: loads checkpoints on demand.
        examples_dir: folder with <set>/metadata.jsonl example pairs (default assets/examples).
        study: rating hook (default: from MEDIM_STUDY_DB / MEDIM_STUDY_ID).
        bundle_dir: where result zips are written (default: a fresh temporary folder).
    """

    def __init__(
        self,
        manager: ModelManager,
        *,
        examples_dir: Path | None = None,
        study: StudyHook | None = None,
        bundle_dir: Path | None = None,
    ):
        self.manager = manager
        found = load_examples(examples_dir) if examples_dir is not None else load_examples()
        self.examples = found or fallback_examples()
        self.study = study if study is not None else study_hook_from_env()
        self.bundle_dir = Path(bundle_dir or tempfile.mkdtemp(prefix="medim-bundles-"))

    # ---- examples ------------------------------------------------------------------------------------
    @property
    def report_examples(self) -> list[str]:
        return [example.label for example in self.examples]

    @property
    def scan_examples(self) -> list[str]:
        return [example.label for example in self.examples if example.image_path is not None]

    def _example(self, label: str):
        for example in self.examples:
            if example.label == label:
                return example
        raise InputError(f"Unknown example {label!r}.")

    def pick_report_example(self, label: str | None) -> dict[str, Any]:
        if not label:
            return {}
        with user_errors():
            return {"report_in": self._example(label).report}

    def pick_scan_example(self, label: str | None) -> dict[str, Any]:
        if not label:
            return {}
        with user_errors():
            example = self._example(label)
            if example.image_path is None:
                raise InputError(f"Example {example.id} has no image.")
            return self._scan_loaded(
                load_scan(example.image_path), f"Example {example.id} ({example.domain})"
            )

    # ---- session and checkpoints -----------------------------------------------------------------------
    def _pipe(self, key: str | None):
        with user_errors():
            return self.manager.get(key)

    def session_start(self, key: str | None) -> dict[str, Any]:
        """Header, model card and checkpoint list for a new browser session."""
        key = key or self.manager.default_key
        try:
            pipe = self.manager.get(key)
        except CheckpointError as error:
            return {
                "model_line": f"⚠️ {error}",
                "model_card": f"⚠️ {error}\n\nChoose another checkpoint below.",
                "checkpoint_choice": gr.update(choices=self.manager.choices(), value=key),
            }
        return {
            "model_line": self._model_line(pipe, key),
            "model_card": model_card(pipe, key),
            "checkpoint_choice": gr.update(choices=self.manager.choices(), value=key),
            "steps": pipe.sampler_config.steps,
            "domain": gr.update(choices=list(pipe.config.domains), value=pipe.config.domains[0]),
        }

    def task_defaults(self, task: str, key: str | None) -> dict[str, Any]:
        """The steps and temperature sliders' values for a task tab: the checkpoint's settings for that task
        (`SamplerConfig.for_task`)."""
        try:
            pipe = self.manager.get(key or self.manager.default_key)
        except CheckpointError:
            return {}  # the session's checkpoint failed to load; its error is already shown
        config = pipe.sampler_config.for_task(task)
        return {"steps": config.steps, "temperature": config.temperature}

    def _model_line(self, pipe, key: str) -> str:
        warnings = "".join(f"<br>⚠️ {html.escape(w)}" for w in model_warnings(pipe))
        return f"{model_summary(pipe, key)}{warnings}"

    def load_checkpoint(self, choice: str | None, typed: str | None, key: str | None) -> dict[str, Any]:
        """Switch this session to a checkpoint (the typed path/hub id wins over the list); on failure the
        previous checkpoint keeps serving and the user gets the reason."""
        target = (typed or "").strip() or (choice or "").strip()
        with user_errors():
            if not target:
                raise InputError("Choose a checkpoint from the list or type a local directory or hub id.")
            from app.runtime import normalise_key

            new_key = normalise_key(target)
            pipe = self.manager.get(new_key)
        for warning in model_warnings(pipe):
            gr.Warning(warning)
        gr.Info(f"Loaded {display_name(new_key)}")
        return {
            "checkpoint": new_key,
            "model_line": self._model_line(pipe, new_key),
            "model_card": model_card(pipe, new_key),
            "checkpoint_choice": gr.update(choices=self.manager.choices(), value=new_key),
            "checkpoint_text": "",
            "steps": pipe.sampler_config.steps,
        }

    # ---- inputs ----------------------------------------------------------------------------------------
    def _scan_loaded(self, image: Image.Image, note: str) -> dict[str, Any]:
        preview = ImageOps.contain(image.convert("RGB"), (PREVIEW_SIZE, PREVIEW_SIZE))
        w, h = image.size
        return {
            "scan": image,
            "scan_preview": preview,
            "scan_note": f"{note} · {w}×{h} px, mode {image.mode}",
        }

    def upload_scan(self, path: str | None) -> dict[str, Any]:
        """Check an upload by content (PNG/JPEG/DICOM); a bad file is refused with the reason."""
        if not path:
            return {"scan": None, "scan_preview": None, "scan_note": ""}
        with user_errors():
            return self._scan_loaded(load_scan(path), "Uploaded scan")

    def update_findings(self, domain: str | None) -> dict[str, Any]:
        findings = prompt_findings(domain or "")
        return {
            "finding": gr.update(choices=findings, value=findings[0]),
            "detail": gr.update(choices=[], value=None, visible=False),
            "prompt": "",
        }

    def update_prompt(self, domain: str | None, finding: str | None, detail: str | None) -> dict[str, Any]:
        with user_errors():
            details = prompt_details(domain or "", finding or "")
            detail = detail if detail in details else (details[0] if details else None)
            return {
                "detail": gr.update(choices=details, value=detail, visible=bool(details)),
                "prompt": build_prompt(domain or "", finding, detail),
            }

    # ---- generation ------------------------------------------------------------------------------------
    def generate_image(self, report, steps, temperature, guidance, schedule, seed, random_seed, samples, key):
        """Report → image, streamed."""
        with user_errors():
            report = check_report(report)
            settings = Settings.from_ui(steps, temperature, guidance, schedule, seed, random_seed, samples)
        yield from self._generate(key, "report2image", settings, report=report)

    def generate_report(self, scan, steps, temperature, guidance, schedule, seed, random_seed, samples, key):
        """Scan → report, streamed."""
        with user_errors():
            if scan is None:
                raise InputError("Upload a scan (PNG, JPEG or DICOM) or pick an example first.")
            settings = Settings.from_ui(steps, temperature, guidance, schedule, seed, random_seed, samples)
        yield from self._generate(key, "image2report", settings, image=scan)

    def generate_pair(self, prompt, steps, temperature, guidance, schedule, seed, random_seed, samples, key):
        """Image–report pair, unconditional or starting with `prompt`, streamed."""
        with user_errors():
            prompt = check_report(prompt, what="prompt") if prompt and prompt.strip() else ""
            settings = Settings.from_ui(steps, temperature, guidance, schedule, seed, random_seed, samples)
        yield from self._generate(key, "pair", settings, prompt=prompt)

    def _generate(self, key, task, settings: Settings, **inputs):
        pipe = self._pipe(key)
        key = key or self.manager.default_key
        yield self._starting(task, settings)
        with user_errors():
            progress = stream_task(pipe, display_name(key), task, settings, **inputs)
            yield from self._stream(progress, pipe, settings)

    def _starting(self, task: str, settings: Settings) -> dict[str, Any]:
        label = "Image (the scan as image tokens)" if task == "image2report" else "Image"
        return {
            "live_image": gr.update(label=label),
            "status": status_html(
                0, settings.steps, f"{TASK_TITLES[task]} · seed {settings.seed} · starting…"
            ),
            "after_run": gr.update(visible=False),
            "notices": "",
        }

    def _stream(self, progress, pipe, settings: Settings, verdict=None):
        """Live-view updates per step, then `finish`; `verdict(run)` may add notices to the final one."""
        for item in progress:
            if item.run is not None:
                yield self.finish(item.run, notices=verdict(item.run) if verdict else None)
                return
            detail = f"seed {settings.seed} · {item.elapsed:.1f} s"
            frame = render_step(pipe.layout, item.state, detail=detail)
            yield {"live_image": frame.image, "live_report": frame.report, "status": frame.status}

    def finish(self, run: Run, sample: int = 0, notices: list[str] | None = None) -> dict[str, Any]:
        """Every output after a run: final view, replay slider, commit views, edit pickers, bundle."""
        notes = [f"⚠️ {html.escape(note)}" for note in run.warnings] + [html.escape(n) for n in notices or []]
        for note in run.warnings:
            gr.Warning(note)
        final = run.states[-1]
        detail = (
            f"{TASK_TITLES[run.task]} · seed {run.settings.seed} · first step {run.first_step_s:.2f} s · "
            f"done in {run.total_s:.2f} s"
        )
        frame = render_step(run.layout, final, detail=detail, final_images=run.images)
        reports = (
            run.reports[0]
            if run.num_samples == 1
            else "\n\n".join(f"Sample {i + 1}: {text}" for i, text in enumerate(run.reports))
        )
        out = {
            "live_image": frame.image,
            "live_report": frame.report,
            "status": frame.status,
            "notices": "<br>".join(notes),
            "report_text": reports,
            "run": run,
            "after_run": gr.update(visible=True),
            "replay": gr.update(minimum=1, maximum=max(run.steps, 1), value=run.steps, step=1),
            "sample": gr.update(
                choices=[(f"Sample {i + 1}", i) for i in range(run.num_samples)],
                value=sample,
                visible=run.num_samples > 1,
            ),
            "bundle": gr.update(value=str(write_bundle(run, self.bundle_dir)), visible=True),
            "rate_row": gr.update(visible=self.study.enabled),
            "rate_status": "",
            "seed": run.settings.seed,
        }
        out.update(self._focus(run, sample))
        return out

    def _focus(self, run: Run, sample: int) -> dict[str, Any]:
        heatmap, commit_text = commit_views(run, sample)
        return {
            "commit_image": heatmap,
            "commit_report": legend_html("commit", run.steps) + commit_text,
            "edit_canvas": edit_canvas(run, sample, []),
            "edit_cells": gr.update(choices=cell_names(run.grid), value=[]),
            "edit_tokens": gr.update(choices=token_choices(run, sample), value=[]),
        }

    # ---- after a run -------------------------------------------------------------------------------------
    @staticmethod
    def _require_run(run: Run | None) -> Run:
        if run is None:
            raise refusal("Generate something first.", title="No result yet")
        return run

    @staticmethod
    def _sample(run: Run, sample) -> int:
        sample = int(sample or 0)
        return sample if 0 <= sample < run.num_samples else 0

    def replay(self, run: Run | None, step, sample) -> dict[str, Any]:
        """Show the live view as it was after `step` (only the chosen sample when there are several)."""
        if run is None:
            return {}
        frame = replay_frame(
            run, int(step or run.steps), self._sample(run, sample) if run.num_samples > 1 else None
        )
        return {"live_image": frame.image, "live_report": frame.report, "status": frame.status}

    def focus_sample(self, run: Run | None, sample) -> dict[str, Any]:
        if run is None:
            return {}
        return self._focus(run, self._sample(run, sample))

    def show_cells(self, run: Run | None, sample, cells) -> dict[str, Any]:
        if run is None:
            return {}
        return {"edit_canvas": edit_canvas(run, self._sample(run, sample), cells or [])}

    def toggle_cell(self, run: Run | None, sample, cells, event: gr.SelectData) -> dict[str, Any]:
        """A click on the edit canvas adds or removes the cell under the pointer."""
        if run is None or event is None or not isinstance(event.index, list | tuple):
            return {}
        sample = self._sample(run, sample)
        cell_px = edit_canvas(run, sample, []).size
        name = cell_at(run, event.index, cell_px)
        chosen = list(cells or [])
        chosen = [c for c in chosen if c != name] if name in chosen else [*chosen, name]
        order = cell_names(run.grid)
        chosen.sort(key=order.index)
        return {"edit_cells": chosen, "edit_canvas": edit_canvas(run, sample, chosen)}

    def clear_selection(self, run: Run | None, sample) -> dict[str, Any]:
        out: dict[str, Any] = {"edit_cells": [], "edit_tokens": []}
        if run is not None:
            out["edit_canvas"] = edit_canvas(run, self._sample(run, sample), [])
        return out

    def apply_edit(
        self,
        run,
        sample,
        cells,
        tokens,
        steps,
        temperature,
        guidance,
        schedule,
        seed,
        random_seed,
        samples,
        key,
    ):
        """Resample the chosen cells/words of the shown sample; everything else stays fixed. Streamed."""
        run = self._require_run(run)
        sample = self._sample(run, sample)
        with user_errors():
            settings = Settings.from_ui(steps, temperature, guidance, schedule, seed, random_seed, 1)
            if not cells and not tokens:
                raise InputError("Pick image cells (click the image) and/or report words to resample first.")
        pipe = self._pipe(key)
        if pipe.layout != run.layout:
            raise refusal(
                "This result came from another checkpoint; switch back to it to edit.", title="Cannot edit"
            )
        yield self._starting("inpaint", settings)
        key = key or self.manager.default_key
        notices = []
        if run.num_samples > 1:
            # the edit resamples one sample; say so rather than let the others vanish without a word
            others = run.num_samples - 1
            notices.append(
                f"Edited sample {sample + 1} of {run.num_samples}: this result holds only that sample. The "
                f"other {others} {'sample is' if others == 1 else 'samples are'} in the previous result's "
                "bundle (download it before editing to keep them)."
            )
        with user_errors():
            progress = stream_edit(pipe, display_name(key), run, sample, cells or [], tokens or [], settings)
            yield from self._stream(progress, pipe, settings, verdict=lambda _run: notices)

    def reproduce(self, path, key):
        """Run a downloaded bundle again with this session's checkpoint and say whether the result is identical."""
        with user_errors():
            if not path:
                raise InputError("Upload a bundle zip downloaded from this demo.")
            bundle = read_bundle(path)
        pipe = self._pipe(key)
        key = key or self.manager.default_key
        notes = []
        if bundle.checkpoint_sha256 and bundle.checkpoint_sha256 != pipe.checkpoint_hash:
            notes.append(
                "⚠️ The bundle was made with another checkpoint (sha256 differs); the result will differ too."
            )
        settings = bundle.settings
        restored = {
            "steps": settings.steps,
            "temperature": settings.temperature,
            "guidance": settings.guidance_scale,
            "schedule": settings.schedule,
            "seed": settings.seed,
            "random_seed": False,
            "samples": settings.num_samples,
        }
        yield {**self._starting(bundle.task, settings), **restored}
        with user_errors():
            if bundle.task == "inpaint":
                progress = stream_inpaint(
                    pipe, display_name(key), bundle.base_tokens, bundle.positions, settings
                )
            else:
                inputs = {name: bundle.inputs.get(name) for name in ("report", "image", "prompt")}
                progress = stream_task(pipe, display_name(key), bundle.task, settings, **inputs)

            def verdict(run: Run) -> list[str]:
                same = same_result(bundle, run)
                return [
                    *notes,
                    "✅ Reproduced: identical tokens, image and report."
                    if same
                    else "❌ Not identical to the bundle.",
                ]

            for update in self._stream(progress, pipe, settings, verdict):
                if "run" in update:
                    status = "<br>".join(verdict(update["run"])) + " The result is on the Generate tab."
                    yield {**update, **restored, "reproduce_status": status}
                else:
                    yield update

    def send_to_study(self, run: Run | None, sample) -> dict[str, Any]:
        run = self._require_run(run)
        if not self.study.enabled:
            raise refusal(f"Rating is not available: {self.study.reason}", title="Rating off")
        sample = self._sample(run, sample)
        source = {
            "system": "medim-demo",
            "checkpoint": run.checkpoint_sha256,
            "checkpoint_name": run.checkpoint,
            "task": run.task,
            "settings": run.settings.to_dict(),
        }
        try:
            item = self.study.submit(run.images[sample], run.reports[sample], source)
        except Exception as error:  # the study database is another service: report, don't crash the demo
            raise refusal(f"The study did not accept the pair: {error}", title="Rating failed") from error
        when = time.strftime("%H:%M:%S")
        return {"rate_status": f"Sent sample {sample + 1} to the rating study as item {item} ({when})."}


def empty_view() -> Image.Image:
    """A neutral placeholder for image outputs before the first run."""
    return Image.fromarray(np.full((PREVIEW_SIZE, PREVIEW_SIZE, 3), 241, dtype=np.uint8))
