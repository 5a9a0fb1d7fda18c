"""One generation run of the demo, independent of Gradio: settings, streaming, replay frames and edits.

`stream_task` drives `MeDiMPipeline.prepare` + `MeDiMPipeline.stream` for report→image, image→report and pair
generation; `stream_edit` re-masks chosen image cells and report tokens of a finished sample and resamples only
those (`apply_task_mask` + `stream`). Both yield a `Progress` per sampling step; the last one carries the finished
`Run`, which keeps every `StepState` so any step can be replayed later without the model.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from app.render import (
    TokenView,
    cell_names,
    commit_heatmap,
    render_masked,
    report_html,
    selection_overlay,
    status_html,
    tile,
)
from medim.config import SamplerConfig
from medim.sampling import apply_task_mask

TASKS = ("report2image", "image2report", "pair")
TASK_TITLES = {
    "report2image": "Report → image",
    "image2report": "Scan → report",
    "pair": "Image + report pair",
    "inpaint": "Edit (resampled selection)",
}
MAX_SAMPLES = 4
MAX_STEPS = 64
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class Settings:
    """The user's sampling settings (everything needed, with the inputs, to reproduce a run)."""

    steps: int = 12
    temperature: float = 1.0
    guidance_scale: float = 0.0
    schedule: str = "arccos"
    seed: int = 0
    num_samples: int = 1

    def __post_init__(self) -> None:
        if not 1 <= int(self.steps) <= MAX_STEPS:
            raise ValueError(f"steps must be in [1, {MAX_STEPS}], got {self.steps}")
        if not 1 <= int(self.num_samples) <= MAX_SAMPLES:
            raise ValueError(f"number of samples must be in [1, {MAX_SAMPLES}], got {self.num_samples}")
        if not 0 <= int(self.seed) <= MAX_SEED:
            raise ValueError(f"seed must be in [0, {MAX_SEED}], got {self.seed}")
        self.sampler_config(SamplerConfig())  # validates temperature, guidance and schedule

    @classmethod
    def from_ui(
        cls, steps, temperature, guidance_scale, schedule, seed, random_seed, num_samples
    ) -> Settings:
        """Settings from the widgets; `random_seed` draws a fresh seed (which is then recorded)."""
        if random_seed or seed is None or seed == "":
            seed = secrets.randbelow(MAX_SEED + 1)
        return cls(
            steps=int(steps),
            temperature=float(temperature),
            guidance_scale=float(guidance_scale),
            schedule=str(schedule),
            seed=int(seed),
            num_samples=int(num_samples),
        )

    def sampler_config(self, base: SamplerConfig) -> SamplerConfig:
        """The checkpoint's sampler defaults with this run's steps, temperature, guidance and schedule."""
        return dataclasses.replace(
            base,
            steps=int(self.steps),
            temperature=float(self.temperature),
            guidance_scale=float(self.guidance_scale),
            schedule=str(self.schedule),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Run:
    """A finished generation: its inputs, settings, every step, and the final images/reports of B samples."""

    task: str
    checkpoint: str
    checkpoint_sha256: str | None
    settings: Settings
    sampler: dict[str, Any]
    inputs: dict[str, Any]
    layout: Any
    grid: tuple[int, int]
    states: list[Any]
    images: list[Image.Image]
    reports: list[str]
    tokens: torch.Tensor
    warnings: list[str] = field(default_factory=list)
    first_step_s: float = 0.0
    total_s: float = 0.0

    @property
    def steps(self) -> int:
        return self.states[-1].steps

    @property
    def num_samples(self) -> int:
        return int(self.tokens.shape[0])

    def report_positions(self, sample: int) -> list[int]:
        """Text-slice offsets of the visible (non-pad) report tokens of `sample`, in order."""
        return visible_text_positions(self.layout, self.tokens, sample)


@dataclass
class Progress:
    """One streamed step: the pipeline's StepState, seconds since the start, and the Run once finished."""

    state: Any
    elapsed: float
    run: Run | None = None


# ---------------------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------------------


def stream_task(
    pipe,
    checkpoint: str,
    task: str,
    settings: Settings,
    *,
    report: str | None = None,
    image: Image.Image | None = None,
    prompt: str | None = None,
) -> Iterator[Progress]:
    """Generate with `pipe`, yielding a Progress per step; the last carries the Run.

    Raises ValueError (from the pipeline) for inputs it refuses, e.g. an empty report.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    x_init, generate, warnings = pipe.prepare(
        task, report=report, image=image, prompt=prompt or None, num_samples=settings.num_samples
    )
    inputs = (
        {"report": report} if task == "report2image" else {"image": image} if task == "image2report" else {}
    )
    if task == "pair":
        inputs = {"prompt": prompt or ""}
    if settings.num_samples == 1 or task != "report2image":
        warnings = [w.replace("report 0 was truncated", "The report was truncated") for w in warnings]
    yield from _stream(pipe, checkpoint, task, settings, x_init, generate, inputs, list(warnings))


def stream_edit(
    pipe,
    checkpoint: str,
    run: Run,
    sample: int,
    cells: Sequence[str],
    token_offsets: Sequence[int],
    settings: Settings,
) -> Iterator[Progress]:
    """Re-mask `cells` (names like 'B3') and report `token_offsets` (text-slice offsets) of `run`'s `sample` and
    resample only them, keeping every other token fixed. Yields a Progress per step; the last carries the Run."""
    positions = edit_positions(run, cells, token_offsets)
    base = run.tokens[sample : sample + 1].clone()
    inputs = {"parent_task": run.task, "cells": list(cells), "token_offsets": [int(i) for i in token_offsets]}
    yield from stream_inpaint(pipe, checkpoint, base, positions[None], settings, inputs)


def stream_inpaint(
    pipe,
    checkpoint: str,
    base: torch.Tensor,
    positions: torch.Tensor,
    settings: Settings,
    inputs: dict | None = None,
) -> Iterator[Progress]:
    """Resample `positions` [1, L] (bool) of a finished sequence `base` [1, L], keeping every other token."""
    if base.shape != positions.shape or base.shape[0] != 1 or base.shape[1] != pipe.layout.seq_len:
        raise ValueError(
            f"base tokens {tuple(base.shape)} and positions {tuple(positions.shape)} must both be "
            f"[1, {pipe.layout.seq_len}] for this checkpoint"
        )
    if (base < 0).any() or (base >= pipe.layout.vocab_size).any():
        raise ValueError(f"base tokens must be ids in [0, {pipe.layout.vocab_size}) for this checkpoint")
    single = dataclasses.replace(settings, num_samples=1)
    x_init = apply_task_mask(base, positions, pipe.layout)
    inputs = {**(inputs or {}), "base_tokens": base.clone(), "positions": positions.clone()}
    yield from _stream(pipe, checkpoint, "inpaint", single, x_init, positions, inputs, [])


def edit_positions(run: Run, cells: Sequence[str], token_offsets: Sequence[int]) -> torch.Tensor:
    """BoolTensor [L]: sequence positions of the chosen image cells and report tokens."""
    layout = run.layout
    names = cell_names(run.grid)
    positions = torch.zeros(layout.seq_len, dtype=torch.bool)
    for cell in cells:
        if cell not in names:
            raise ValueError(f"unknown image cell {cell!r}; cells go from {names[0]} to {names[-1]}")
        positions[layout.image_slice.start + names.index(cell)] = True
    for offset in token_offsets:
        offset = int(offset)
        if not 0 <= offset < layout.text_tokens:
            raise ValueError(f"report token {offset} is outside the report (0..{layout.text_tokens - 1})")
        positions[layout.text_slice.start + offset] = True
    if not positions.any():
        raise ValueError("nothing selected to resample: pick image cells and/or report words first")
    return positions


def _stream(pipe, checkpoint, task, settings, x_init, generate, inputs, warnings) -> Iterator[Progress]:
    config = settings.sampler_config(
        pipe.sampler_config.for_task(task)
    )  # the task's own confidence noise etc.
    start = time.perf_counter()
    states, first = [], None
    for state in pipe.stream(x_init, generate, sampler_config=config, seed=settings.seed, decode_images=True):
        elapsed = time.perf_counter() - start
        first = elapsed if first is None else first
        states.append(state)
        if not state.done:
            yield Progress(state, elapsed)
    final = states[-1]
    # the final picture is decoded from the committed tokens, exactly as MeDiMPipeline.run does
    images = pipe.decode_images(pipe.layout.image_codes(final.tokens).clamp_min(0))
    run = Run(
        task=task,
        checkpoint=checkpoint,
        checkpoint_sha256=pipe.checkpoint_hash,
        settings=settings,
        sampler=config.to_dict(),
        inputs=inputs,
        layout=pipe.layout,
        grid=tuple(pipe.config.image_grid),
        states=states,
        images=images,
        reports=list(final.reports),
        tokens=final.tokens.clone(),
        warnings=warnings,
        first_step_s=first or 0.0,
        total_s=time.perf_counter() - start,
    )
    yield Progress(final, run.total_s, run)


# ---------------------------------------------------------------------------------------------------------
# Views of a step
# ---------------------------------------------------------------------------------------------------------


def visible_text_positions(layout, tokens: torch.Tensor, sample: int) -> list[int]:
    """Text-slice offsets whose token is not padding (the order of StepState.report_pieces)."""
    row = tokens[sample, layout.text_slice].tolist()
    return [i for i, token in enumerate(row) if token != layout.pad_id]


def token_views(layout, state, sample: int) -> list[TokenView]:
    """The visible report tokens of `sample` at `state`, with confidence and commit step."""
    offsets = visible_text_positions(layout, state.tokens, sample)
    start = layout.text_slice.start
    committed = state.committed_at[sample].tolist()
    return [
        TokenView(text, conf, int(committed[start + offset]))
        for (text, conf), offset in zip(state.report_pieces[sample], offsets)
    ]


@dataclass
class Frame:
    """What the live view shows for one step: the (tiled) image, the report HTML and the status bar."""

    image: Image.Image
    report: str
    status: str


def render_step(
    layout, state, *, samples: Sequence[int] | None = None, detail: str = "", final_images=None
) -> Frame:
    """Render `state` for the live view: masked cells hatched, [MASK] chips, confidence colours."""
    samples = list(range(state.tokens.shape[0])) if samples is None else list(samples)
    pictures = final_images if final_images is not None and state.done else state.images
    masks = state.image_masked.numpy()
    image = tile(
        [
            render_masked(pictures[i], masks[i] if not state.done else None, grid=masks[i].shape)
            for i in samples
        ]
    )
    blocks = []
    for i in samples:
        fresh = None if state.done else state.step  # outline the tokens that appeared at this step
        body = report_html(token_views(layout, state, i), current_step=fresh, empty="(empty report)")
        heading = f'<div class="medim-sample">Sample {i + 1}</div>' if len(samples) > 1 else ""
        blocks.append(heading + body)
    return Frame(image, "".join(blocks), status_html(state.step, state.steps, detail, done=state.done))


def replay_frame(run: Run, step: int, sample: int | None = None) -> Frame:
    """The live view of `run` as it was after `step` (1..steps), for one sample or all of them."""
    step = int(min(max(int(step), 1), len(run.states)))
    # states are one per step, except a run that finished early jumps to its last step: find by step number
    state = next((s for s in run.states if s.step >= step), run.states[-1])
    samples = None if sample is None else [int(sample)]
    detail = f"replay · {TASK_TITLES[run.task]} · seed {run.settings.seed}"
    return render_step(run.layout, state, samples=samples, detail=detail, final_images=run.images)


def commit_views(run: Run, sample: int) -> tuple[Image.Image, str]:
    """(heat-map of the image grid coloured by commit step, report tokens coloured by commit step)."""
    final = run.states[-1]
    layout = run.layout
    committed = final.committed_at[sample, layout.image_slice].view(*run.grid).numpy()
    heatmap = commit_heatmap(committed, run.steps)
    text = report_html(
        token_views(layout, final, sample), mode="commit", steps=run.steps, empty="(empty report)"
    )
    return heatmap, text


def edit_canvas(run: Run, sample: int, cells: Sequence[str]) -> Image.Image:
    """The final image of `sample` with the cells chosen for re-masking tinted."""
    names = cell_names(run.grid)
    selected = np.zeros(len(names), dtype=bool)
    for cell in cells or ():
        if cell in names:
            selected[names.index(cell)] = True
    return selection_overlay(run.images[sample], selected.reshape(run.grid))


def token_choices(run: Run, sample: int) -> list[tuple[str, int]]:
    """(label, text offset) of each visible report token, for the re-mask picker."""
    final = run.states[-1]
    offsets = run.report_positions(sample)
    out = []
    for (text, _conf), offset in zip(final.report_pieces[sample], offsets):
        # "" is a later byte of the multi-byte character shown by the token before it
        label = "◦" if text == "" else text.strip().replace("\n", "⏎") or "␣"
        out.append((label, offset))
    return out


def cell_at(run: Run, xy: Sequence[float], image_size: tuple[int, int]) -> str:
    """Name of the grid cell under pixel `xy` (x, y) of a displayed image of `image_size` (w, h)."""
    h, w = run.grid
    x, y = float(xy[0]), float(xy[1])
    col = min(max(int(x * w / max(image_size[0], 1)), 0), w - 1)
    row = min(max(int(y * h / max(image_size[1], 1)), 0), h - 1)
    return cell_names(run.grid)[row * w + col]
