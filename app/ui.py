"""Layout of the MeDiM demo and the wiring of its events (handlers live in app.handlers).

Generation events share one queue slot (`concurrency_id="generate"`, limit 1, bounded queue) because a basic
Space has two CPU cores; light events (replaying a step, picking cells, building a prompt) skip the queue so the
page stays responsive while someone else generates. `launch()` is the entry point used by app.py.
"""

from __future__ import annotations

import functools
import inspect
import os
from typing import Any

import gradio as gr

from app.handlers import REPRODUCE_OUTPUTS, RESULT_OUTPUTS, DemoHandlers, empty_view
from app.inputs import UNCONDITIONAL, prompt_findings
from app.render import idle_status_html, legend_html
from app.runtime import DISCLAIMER, ModelManager, configure_threads, widget_sampler_defaults
from app.session import MAX_SAMPLES, MAX_STEPS

MAX_QUEUE = 16
MAX_FILE_SIZE = "20mb"
GENERATE = "generate"  # the shared concurrency group of every event that runs the model

SYSTEM_FONTS = [
    "ui-sans-serif",
    "system-ui",
    "-apple-system",
    "Segoe UI",
    "Roboto",
    "Helvetica Neue",
    "Arial",
    "sans-serif",
]
SYSTEM_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]

CSS = """
.gradio-container { max-width: 1280px !important; margin: auto; }
#medim-title h1 { margin-bottom: 0; font-size: 1.6rem; }
#medim-title p { margin-top: 2px; color: var(--body-text-color-subdued); }
#medim-model-line { font-size: 0.9rem; }
.medim-status { padding: 8px 12px; border-radius: 8px; background: var(--block-background-fill);
  border: 1px solid var(--border-color-primary); }
.medim-status-line { display: flex; gap: 12px; align-items: baseline; }
.medim-step { font-variant-numeric: tabular-nums; min-width: 7.5em; }
.medim-detail { color: var(--body-text-color-subdued); font-size: 0.85rem; }
.medim-progress { height: 6px; margin-top: 6px; border-radius: 3px; background: var(--border-color-primary);
  overflow: hidden; }
.medim-progress > div { height: 100%; background: #2563eb; transition: width 0.15s ease; }
.medim-done .medim-progress > div { background: #16a34a; }
.medim-idle { color: var(--body-text-color-subdued); }
.medim-report { line-height: 2.0; font-size: 0.95rem; padding: 6px 2px; min-height: 3em; }
.medim-tok { border-radius: 4px; padding: 2px 1px; white-space: pre-wrap; }
.medim-mask { background: #e5e7eb; color: #9ca3af; font-family: ui-monospace, monospace; font-size: 0.72rem;
  padding: 2px 4px; margin: 0 2px; border: 1px dashed #cbd5e1; }
.medim-given { background: #f3f4f6; color: #374151; text-decoration: underline dotted #9ca3af; }
.medim-fresh { outline: 2px solid #f59e0b; outline-offset: 0; }
.medim-sample { font-weight: 600; font-size: 0.85rem; margin-top: 6px; color: var(--body-text-color-subdued); }
.medim-legend { font-size: 0.8rem; color: var(--body-text-color-subdued); margin: 4px 0; }
.medim-bar { display: inline-block; width: 90px; height: 10px; border-radius: 3px; vertical-align: middle;
  margin: 0 4px; }
#medim-cells .wrap, #medim-tokens .wrap { gap: 4px !important; }
#medim-cells label, #medim-tokens label { padding: 2px 6px !important; font-size: 0.78rem !important; }
#medim-notices { color: #b45309; }
#medim-disclaimer { background: #fffbeb; border: 1px solid #fcd34d; border-radius: 8px; padding: 6px 12px;
  font-size: 0.88rem; color: #78350f; }
#medim-disclaimer p { margin: 0; }
"""


def theme() -> gr.themes.Base:
    """Default Gradio look with system fonts only, so the page needs no font downloads (works offline)."""
    return gr.themes.Default(
        primary_hue="blue", neutral_hue="slate", font=SYSTEM_FONTS, font_mono=SYSTEM_MONO
    )


def _task_defaults_handler(handlers: DemoHandlers, task: str):
    def task_defaults(key):
        return handlers.task_defaults(task, key)

    return task_defaults


def _wire(handler, names: tuple[str, ...] | list[str], components: dict[str, Any]):
    """Adapt a handler returning/yielding {name: value} dicts to Gradio's positional outputs (missing → skip)."""

    def as_tuple(update: dict[str, Any]):
        unknown = set(update) - set(names)
        if unknown:
            raise KeyError(
                f"handler {handler.__name__} returned outputs it is not wired to: {sorted(unknown)}"
            )
        values = tuple(update.get(name, gr.skip()) for name in names)
        return values if len(values) > 1 else values[0]

    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def streaming(*args, **kwargs):
            for update in handler(*args, **kwargs):
                yield as_tuple(update)

        wrapped = streaming
    else:

        @functools.wraps(handler)
        def single(*args, **kwargs):
            return as_tuple(handler(*args, **kwargs))

        wrapped = single
    # functools.wraps keeps the handler's signature and annotations: Gradio injects gr.SelectData by annotation
    return wrapped, [components[name] for name in names]


def build_demo(handlers: DemoHandlers | None = None) -> gr.Blocks:
    """Lay out the demo. Loads no model: the first session (or `launch`) does."""
    handlers = handlers or DemoHandlers(ModelManager())
    sampler = widget_sampler_defaults()
    c: dict[str, Any] = {}
    with gr.Blocks(title="MeDiM — medical discrete diffusion demo", analytics_enabled=False) as demo:
        c["checkpoint"] = gr.State(None)
        c["run"] = gr.State(None)
        c["scan"] = gr.State(None)

        with gr.Row(equal_height=False, elem_id="medim-header"):
            with gr.Column(scale=5):
                gr.Markdown(
                    "# MeDiM demo\nMasked discrete diffusion writes a radiology/pathology **report** and an "
                    "**image** in one sequence: watch the [MASK] tokens resolve step by step.",
                    elem_id="medim-title",
                )
            with gr.Column(scale=4):
                c["model_line"] = gr.Markdown("Loading the model…", elem_id="medim-model-line")
        gr.Markdown(DISCLAIMER, elem_id="medim-disclaimer")

        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                with gr.Row(equal_height=False):
                    # ---------------- inputs
                    with gr.Column(scale=4, min_width=340):
                        with gr.Tabs(elem_id="medim-tasks"):
                            with gr.Tab("Report → Image", id="r2i") as c["tab_r2i"]:
                                c["report_example"] = gr.Dropdown(
                                    handlers.report_examples,
                                    value=None,
                                    label="Example reports",
                                    info="Pick one to fill the box, or type your own.",
                                )
                                c["report_in"] = gr.Textbox(
                                    label="Report",
                                    lines=6,
                                    elem_id="medim-report-in",
                                    placeholder="FINDINGS: Moderate left pleural effusion. The heart is normal in "
                                    "size. IMPRESSION: Left effusion.",
                                    value=handlers.examples[0].report if handlers.examples else "",
                                )
                                c["btn_r2i"] = gr.Button(
                                    "Generate image", variant="primary", elem_id="medim-btn-r2i"
                                )
                            with gr.Tab("Scan → Report", id="i2r") as c["tab_i2r"]:
                                c["scan_file"] = gr.File(
                                    label="Upload a scan (PNG, JPEG or DICOM — read by content, max 20 MB)",
                                    file_count="single",
                                    type="filepath",
                                    height=110,
                                )
                                c["scan_example"] = gr.Dropdown(
                                    handlers.scan_examples,
                                    value=None,
                                    label="Example scans",
                                    visible=bool(handlers.scan_examples),
                                )
                                c["scan_preview"] = gr.Image(
                                    label="Scan",
                                    type="pil",
                                    format="png",
                                    interactive=False,
                                    height=220,
                                    buttons=[],
                                )
                                c["scan_note"] = gr.Markdown("", elem_id="medim-scan-note")
                                c["btn_i2r"] = gr.Button(
                                    "Write report", variant="primary", elem_id="medim-btn-i2r"
                                )
                            with gr.Tab("Pair", id="pair") as c["tab_pair"]:
                                gr.Markdown(
                                    "Generate an image and its report together — from nothing, or from a "
                                    "first sentence built here (edit it freely)."
                                )
                                with gr.Row():
                                    c["domain"] = gr.Dropdown(
                                        ["chest_xray", "pathology"],
                                        value="chest_xray",
                                        label="Domain",
                                        min_width=110,
                                        scale=2,
                                    )
                                    c["finding"] = gr.Dropdown(
                                        prompt_findings("chest_xray"),
                                        value=UNCONDITIONAL,
                                        label="Finding",
                                        min_width=160,
                                        scale=3,
                                    )
                                    c["detail"] = gr.Dropdown(
                                        [],
                                        value=None,
                                        label="Detail",
                                        visible=False,
                                        min_width=110,
                                        scale=2,
                                    )
                                c["prompt"] = gr.Textbox(
                                    label="First sentence (empty = unconditional)",
                                    lines=2,
                                )
                                c["btn_pair"] = gr.Button(
                                    "Generate pair", variant="primary", elem_id="medim-btn-pair"
                                )

                        with gr.Accordion("Sampling settings", open=True):
                            with gr.Row():
                                c["steps"] = gr.Slider(
                                    1,
                                    MAX_STEPS,
                                    value=sampler.steps,
                                    step=1,
                                    label="Steps",
                                    elem_id="medim-steps",
                                )
                                c["samples"] = gr.Slider(
                                    1, MAX_SAMPLES, value=1, step=1, label="Samples", elem_id="medim-samples"
                                )
                            with gr.Row():
                                c["temperature"] = gr.Slider(
                                    0.0, 2.0, value=sampler.temperature, step=0.05, label="Temperature"
                                )
                                c["guidance"] = gr.Slider(
                                    0.0, 5.0, value=sampler.guidance_scale, step=0.25, label="Guidance scale"
                                )
                            c["schedule"] = gr.Radio(
                                ["arccos", "cosine", "linear"],
                                value=sampler.schedule,
                                label="Unmasking schedule",
                            )
                            with gr.Row(equal_height=True):
                                c["seed"] = gr.Number(
                                    0, label="Seed", precision=0, minimum=0, maximum=2**31 - 1, scale=2
                                )
                                c["random_seed"] = gr.Checkbox(
                                    False, label="New random seed each run", scale=3
                                )

                    # ---------------- live result
                    with gr.Column(scale=6, min_width=380):
                        c["status"] = gr.HTML(idle_status_html(), elem_id="medim-status")
                        with gr.Row(equal_height=False):
                            c["live_image"] = gr.Image(
                                empty_view(),
                                label="Image",
                                type="pil",
                                format="png",
                                interactive=False,
                                height=340,
                                elem_id="medim-live-image",
                                buttons=["download", "fullscreen"],
                            )
                        gr.HTML(legend_html("confidence"))
                        c["live_report"] = gr.HTML(
                            '<div class="medim-report"></div>', elem_id="medim-live-report"
                        )
                        c["notices"] = gr.Markdown("", elem_id="medim-notices")

                # ---------------- after a run: replay, commit steps, edit, download, rate
                with gr.Column(visible=False) as c["after_run"]:
                    with gr.Row():
                        c["replay"] = gr.Slider(
                            1, 12, value=12, step=1, label="Replay step", scale=4, elem_id="medim-replay"
                        )
                        c["sample"] = gr.Radio(
                            [("Sample 1", 0)], value=0, label="Sample", visible=False, scale=2
                        )
                    with gr.Tabs():
                        with gr.Tab("When each part was decided"):
                            gr.Markdown(
                                "Each image cell and report token in the colour of the step at which it "
                                "was committed: the same colour means decided together."
                            )
                            with gr.Row(equal_height=False):
                                c["commit_image"] = gr.Image(
                                    label="Image cells by commit step",
                                    type="pil",
                                    format="png",
                                    interactive=False,
                                    height=340,
                                    buttons=[],
                                )
                                with gr.Column():
                                    c["commit_report"] = gr.HTML(elem_id="medim-commit-report")
                        with gr.Tab("Edit & resample"):
                            gr.Markdown(
                                "Choose image cells (click the image) and/or report words, then resample "
                                "only those; everything else stays fixed. Uses the settings above."
                            )
                            with gr.Row(equal_height=False):
                                c["edit_canvas"] = gr.Image(
                                    label="Click cells to re-mask",
                                    type="pil",
                                    format="png",
                                    interactive=False,
                                    height=340,
                                    buttons=[],
                                    elem_id="medim-edit-canvas",
                                )
                                with gr.Column():
                                    c["edit_cells"] = gr.CheckboxGroup(
                                        [], label="Image cells", elem_id="medim-cells"
                                    )
                                    c["edit_tokens"] = gr.CheckboxGroup(
                                        [], label="Report words", elem_id="medim-tokens"
                                    )
                                    with gr.Row():
                                        c["btn_edit"] = gr.Button(
                                            "Resample selection", variant="primary", elem_id="medim-btn-edit"
                                        )
                                        c["btn_clear"] = gr.Button("Clear selection")
                        with gr.Tab("Download & share"):
                            c["report_text"] = gr.Textbox(
                                label="Report text", lines=4, interactive=False, buttons=["copy"]
                            )
                            c["bundle"] = gr.DownloadButton(
                                "Download result bundle (.zip)", visible=False, elem_id="medim-bundle"
                            )
                            gr.Markdown(
                                "The zip holds the image, report, seed, every setting and the checkpoint's "
                                "sha256; upload it under *Model & reproducibility* to run it again."
                            )
                            with gr.Row(visible=False) as c["rate_row"]:
                                c["btn_rate"] = gr.Button("Send this pair to the rating study")
                            c["rate_status"] = gr.Markdown(
                                ""
                                if handlers.study.enabled
                                else f"<small>Rating study: off — {handlers.study.reason}.</small>"
                            )

            with gr.Tab("Model & reproducibility", id="model"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        c["checkpoint_choice"] = gr.Dropdown(
                            [],
                            label="Checkpoint",
                            info="Local checkpoints under assets/ and the default ($MEDIM_CHECKPOINT).",
                            allow_custom_value=False,
                        )
                        c["checkpoint_text"] = gr.Textbox(
                            label="…or a local directory / Hugging Face hub id",
                            placeholder="owner/name",
                            max_length=300,
                        )
                        c["btn_load"] = gr.Button("Load checkpoint")
                        gr.Markdown("### Reproduce a bundle")
                        c["bundle_in"] = gr.File(
                            label="Result bundle (.zip)", file_count="single", type="filepath", height=110
                        )
                        c["btn_reproduce"] = gr.Button("Run it again")
                        c["reproduce_status"] = gr.Markdown(elem_id="medim-reproduce-status")
                    with gr.Column(scale=5):
                        c["model_card"] = gr.Markdown("", elem_id="medim-model-card")

            if handlers.study.enabled:
                with gr.Tab("Rate pairs", id="rate"):
                    from eval_human.ui import build_rating_tab

                    build_rating_tab(handlers.study.store)

        settings = [
            c[n] for n in ("steps", "temperature", "guidance", "schedule", "seed", "random_seed", "samples")
        ]
        gen = dict(concurrency_id=GENERATE, concurrency_limit=1, show_progress="hidden")

        def on(trigger, handler, inputs, names, **kwargs):
            fn, outputs = _wire(handler, names, c)
            return trigger(fn, inputs=inputs, outputs=outputs, **kwargs)

        on(
            c["btn_r2i"].click,
            handlers.generate_image,
            [c["report_in"], *settings, c["checkpoint"]],
            RESULT_OUTPUTS,
            api_name="generate_image",
            **gen,
        )
        on(
            c["btn_i2r"].click,
            handlers.generate_report,
            [c["scan"], *settings, c["checkpoint"]],
            RESULT_OUTPUTS,
            api_name="generate_report",
            **gen,
        )
        on(
            c["btn_pair"].click,
            handlers.generate_pair,
            [c["prompt"], *settings, c["checkpoint"]],
            RESULT_OUTPUTS,
            api_name="generate_pair",
            **gen,
        )
        on(
            c["btn_edit"].click,
            handlers.apply_edit,
            [c["run"], c["sample"], c["edit_cells"], c["edit_tokens"], *settings, c["checkpoint"]],
            RESULT_OUTPUTS,
            api_name="edit",
            **gen,
        )
        on(
            c["btn_reproduce"].click,
            handlers.reproduce,
            [c["bundle_in"], c["checkpoint"]],
            REPRODUCE_OUTPUTS,
            api_name="reproduce",
            **gen,
        )
        on(
            c["btn_load"].click,
            handlers.load_checkpoint,
            [c["checkpoint_choice"], c["checkpoint_text"], c["checkpoint"]],
            ("checkpoint", "model_line", "model_card", "checkpoint_choice", "checkpoint_text", "steps"),
            api_name="load_checkpoint",
            **gen,
        )

        light = dict(queue=False, show_progress="hidden", api_visibility="private")
        # each task tab starts the steps and temperature sliders at that task's defaults (sampler_config.json's
        # task_steps and task_settings)
        for tab, task in (("tab_r2i", "report2image"), ("tab_i2r", "image2report"), ("tab_pair", "pair")):
            on(
                c[tab].select,
                _task_defaults_handler(handlers, task),
                [c["checkpoint"]],
                ("steps", "temperature"),
                **light,
            )
        on(
            c["replay"].input,
            handlers.replay,
            [c["run"], c["replay"], c["sample"]],
            ("live_image", "live_report", "status"),
            **light,
        )
        on(
            c["sample"].input,
            handlers.focus_sample,
            [c["run"], c["sample"]],
            ("commit_image", "commit_report", "edit_canvas", "edit_cells", "edit_tokens"),
            **light,
        )
        on(
            c["edit_canvas"].select,
            handlers.toggle_cell,
            [c["run"], c["sample"], c["edit_cells"]],
            ("edit_cells", "edit_canvas"),
            **light,
        )
        on(
            c["edit_cells"].input,
            handlers.show_cells,
            [c["run"], c["sample"], c["edit_cells"]],
            ("edit_canvas",),
            **light,
        )
        on(
            c["btn_clear"].click,
            handlers.clear_selection,
            [c["run"], c["sample"]],
            ("edit_cells", "edit_tokens", "edit_canvas"),
            **light,
        )
        on(
            c["report_example"].input,
            handlers.pick_report_example,
            [c["report_example"]],
            ("report_in",),
            **light,
        )
        on(
            c["domain"].input,
            handlers.update_findings,
            [c["domain"]],
            ("finding", "detail", "prompt"),
            **light,
        )
        for trigger in (c["finding"].input, c["detail"].input):
            on(
                trigger,
                handlers.update_prompt,
                [c["domain"], c["finding"], c["detail"]],
                ("detail", "prompt"),
                **light,
            )
        on(
            c["btn_rate"].click,
            handlers.send_to_study,
            [c["run"], c["sample"]],
            ("rate_status",),
            concurrency_id="study",
            concurrency_limit=2,
            api_name="rate",
        )

        # reading an upload can take a moment (large DICOM): its own small queue, not the generation slot
        io = dict(concurrency_id="io", concurrency_limit=2, show_progress="minimal")
        on(
            c["scan_file"].upload,
            handlers.upload_scan,
            [c["scan_file"]],
            ("scan", "scan_preview", "scan_note"),
            api_name="upload_scan",
            **io,
        )
        on(
            c["scan_example"].input,
            handlers.pick_scan_example,
            [c["scan_example"]],
            ("scan", "scan_preview", "scan_note"),
            api_visibility="private",
            **io,
        )
        on(
            demo.load,
            handlers.session_start,
            [c["checkpoint"]],
            ("model_line", "model_card", "checkpoint_choice", "steps", "domain"),
            api_visibility="private",
            concurrency_id="session",
            concurrency_limit=4,
            show_progress="hidden",
        )
    demo.queue(max_size=MAX_QUEUE, default_concurrency_limit=1)
    return demo


def launch_kwargs() -> dict[str, Any]:
    """Launch options shared by app.py, the tests and the screenshot script: offline theme, upload limit,
    no extra served paths, no server-side rendering (no Node needed)."""
    return dict(
        theme=theme(),
        css=CSS,
        max_file_size=MAX_FILE_SIZE,
        allowed_paths=[],
        ssr_mode=False,
        footer_links=["api"],
        show_error=False,  # only gr.Error messages reach the page, never internal exception text
    )


def launch(**overrides) -> gr.Blocks:
    """Build and launch the demo: threads from MEDIM_THREADS, the default checkpoint loaded before serving."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    configure_threads()
    manager = ModelManager()
    try:
        manager.get()  # load on launch so the first visitor does not wait; a failure is shown in the page
    except Exception as error:  # the page explains it and offers another checkpoint
        print(f"warning: {error}")
    demo = build_demo(DemoHandlers(manager))
    demo.launch(**{**launch_kwargs(), **overrides})
    return demo


def main() -> None:
    """`python app.py [--checkpoint DIR_OR_HUB_ID] [--host H] [--port P]`."""
    import argparse

    parser = argparse.ArgumentParser(description="Launch the MeDiM Gradio demo")
    parser.add_argument(
        "--checkpoint", help="checkpoint directory or hub id (default: $MEDIM_CHECKPOINT or assets/default)"
    )
    parser.add_argument("--host", default=None, help="server name (default: Gradio's, 127.0.0.1 locally)")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    if args.checkpoint:
        os.environ["MEDIM_CHECKPOINT"] = args.checkpoint
    launch(server_name=args.host, server_port=args.port)


def free_port() -> int:
    """A TCP port that is free on localhost right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_locally(handlers: DemoHandlers, port: int | None = None) -> tuple[gr.Blocks, str]:
    """Build the demo and serve it on 127.0.0.1 in a background thread (tests, screenshots); returns
    (demo, url). Close it with `demo.close()`."""
    demo = build_demo(handlers)
    port = port or free_port()
    demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_kwargs()
    )
    return demo, f"http://127.0.0.1:{port}/"
