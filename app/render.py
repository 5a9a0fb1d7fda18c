"""Drawing for the demo: upscaled images with masked cells hatched, commit-step heat-maps and token HTML.

Everything here is pure (PIL images, numpy arrays, strings in and out) so it can be tested without Gradio.
Colours: report tokens are shaded by the model's confidence (one blue hue, light = unsure, deep = sure);
commit steps use the viridis colour map in both the image heat-map and the report, so a word and an image
region that locked in at the same step share a colour.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DISPLAY_SIZE = 320  # target edge of displayed images in pixels
MASK_SHADE = np.array([30, 41, 59], dtype=np.float32)  # slate-800: masked cells are pulled towards it
HATCH_COLOUR = np.array([148, 163, 184], dtype=np.float32)  # slate-400 hatching over masked cells
CONDITION_COLOUR = (229, 231, 235)  # grey-200: positions given as the condition (never generated)
SELECT_COLOUR = np.array([245, 158, 11], dtype=np.float32)  # amber-500: cells chosen for re-masking
CONFIDENCE_RGB = (37, 99, 235)  # blue-600, alpha-scaled by confidence


@dataclass(frozen=True)
class TokenView:
    """One visible report token: its text, confidence (None while masked) and commit step (-1 masked, 0 fixed)."""

    text: str
    confidence: float | None
    committed_at: int


# ---------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------


def cell_pixels(grid: tuple[int, int], target: int = DISPLAY_SIZE) -> int:
    """Edge of one grid cell on screen: an integer so cell borders fall on pixel boundaries."""
    return max(1, round(target / max(grid)))


def cell_name(row: int, col: int) -> str:
    """Spreadsheet-style cell label: column letter(s) + 1-based row, e.g. (0, 0) -> 'A1', (2, 27) -> 'AB3'."""
    letters = ""
    col += 1
    while col:
        col, rest = divmod(col - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"{letters}{row + 1}"


def cell_names(grid: tuple[int, int]) -> list[str]:
    """All cell labels of a grid in row-major order (the order of the image tokens)."""
    return [cell_name(r, c) for r in range(grid[0]) for c in range(grid[1])]


def upscale(image: Image.Image, grid: tuple[int, int], target: int = DISPLAY_SIZE) -> Image.Image:
    """Resize a small generated image (bicubic) so every VQ cell covers an integer number of screen pixels."""
    cell = cell_pixels(grid, target)
    size = (grid[1] * cell, grid[0] * cell)
    resample = Image.Resampling.BICUBIC if min(image.size) >= 16 else Image.Resampling.NEAREST
    return image.convert("RGB").resize(size, resample)


def _cell_mask(cells: np.ndarray, cell: int) -> np.ndarray:
    """Boolean grid [h, w] -> pixel mask [h*cell, w*cell]."""
    return np.kron(cells.astype(np.uint8), np.ones((cell, cell), dtype=np.uint8)).astype(bool)


def render_masked(
    image: Image.Image,
    masked: np.ndarray | None,
    target: int = DISPLAY_SIZE,
    *,
    grid: tuple[int, int] | None = None,
) -> Image.Image:
    """Upscale `image` and show still-masked cells as darkened, hatched squares over the model's current guess.

    Args:
        image: the decoded picture (masked cells hold the model's current guess).
        masked: bool [h, w], True where the image token is still [MASK]; None draws nothing.
        grid: (h, w) when `masked` is None.
    """
    grid = tuple(masked.shape) if masked is not None else tuple(grid or (1, 1))
    big = upscale(image, grid, target)
    if masked is None or not masked.any():
        return big
    cell = cell_pixels(grid, target)
    pixels = np.asarray(big, dtype=np.float32).copy()
    where = _cell_mask(masked, cell)
    pixels[where] = 0.35 * pixels[where] + 0.65 * MASK_SHADE
    rows, cols = np.indices(where.shape)
    hatch = where & (((rows + cols) % 10) < 2)
    pixels[hatch] = HATCH_COLOUR
    out = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    for r, c in zip(*np.nonzero(masked)):
        draw.rectangle([c * cell, r * cell, (c + 1) * cell - 1, (r + 1) * cell - 1], outline=(71, 85, 105))
    return out


def tile(images: Sequence[Image.Image], gap: int = 8, background=(255, 255, 255)) -> Image.Image:
    """Lay 1–4 images out side by side (2 per row beyond two) for a multi-sample live view."""
    if len(images) == 1:
        return images[0]
    cols = 2 if len(images) > 2 else len(images)
    rows = -(-len(images) // cols)
    w, h = images[0].size
    canvas = Image.new("RGB", (cols * w + (cols - 1) * gap, rows * h + (rows - 1) * gap), background)
    for index, image in enumerate(images):
        r, c = divmod(index, cols)
        canvas.paste(image, (c * (w + gap), r * (h + gap)))
    return canvas


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def _text_colour(rgb: Sequence[float]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on `rgb` (relative luminance threshold)."""
    r, g, b = (float(v) / 255.0 for v in rgb[:3])
    return (17, 24, 39) if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else (255, 255, 255)


def _hex(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb[:3])


def step_colour(step: int, steps: int) -> tuple[int, int, int]:
    """Viridis colour of commit `step` (1..steps)."""
    from matplotlib import colormaps

    fraction = 0.0 if steps <= 1 else (step - 1) / (steps - 1)
    r, g, b, _ = colormaps["viridis"](min(max(fraction, 0.0), 1.0))
    return round(r * 255), round(g * 255), round(b * 255)


def commit_heatmap(committed_at: np.ndarray, steps: int, target: int = DISPLAY_SIZE) -> Image.Image:
    """Grid [h, w] of commit steps -> picture with each cell in its step's colour and the step number written in.

    0 (a condition cell) is light grey with 'c'; -1 (still masked) is hatched dark.
    """
    grid = tuple(committed_at.shape)
    cell = cell_pixels(grid, target)
    canvas = Image.new("RGB", (grid[1] * cell, grid[0] * cell), CONDITION_COLOUR)
    draw = ImageDraw.Draw(canvas)
    font = _font(int(cell * 0.42))
    for r in range(grid[0]):
        for c in range(grid[1]):
            step = int(committed_at[r, c])
            box = [c * cell, r * cell, (c + 1) * cell - 1, (r + 1) * cell - 1]
            colour = CONDITION_COLOUR if step == 0 else MASK_SHADE if step < 0 else step_colour(step, steps)
            colour = tuple(int(v) for v in colour)
            draw.rectangle(box, fill=colour, outline=(255, 255, 255))
            if cell >= 14:
                label = "c" if step == 0 else "·" if step < 0 else str(step)
                draw.text(
                    ((c + 0.5) * cell, (r + 0.5) * cell),
                    label,
                    fill=_text_colour(colour),
                    font=font,
                    anchor="mm",
                )
    return canvas


def selection_overlay(
    image: Image.Image, selected: np.ndarray, target: int = DISPLAY_SIZE, *, labels: bool = True
) -> Image.Image:
    """Upscaled image with a faint cell grid, cell names, and the `selected` [h, w] cells tinted amber."""
    grid = tuple(selected.shape)
    big = upscale(image, grid, target)
    cell = cell_pixels(grid, target)
    pixels = np.asarray(big, dtype=np.float32).copy()
    where = _cell_mask(selected, cell)
    pixels[where] = 0.45 * pixels[where] + 0.55 * SELECT_COLOUR
    out = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out, "RGBA")
    font = _font(int(cell * 0.22))
    for r in range(grid[0]):
        for c in range(grid[1]):
            box = [c * cell, r * cell, (c + 1) * cell - 1, (r + 1) * cell - 1]
            width = 3 if selected[r, c] else 1
            draw.rectangle(box, outline=(255, 255, 255, 200 if selected[r, c] else 70), width=width)
            if labels and cell >= 24:
                draw.text((c * cell + 3, r * cell + 2), cell_name(r, c), fill=(255, 255, 255, 190), font=font)
    return out


# ---------------------------------------------------------------------------------------------------------
# Report tokens
# ---------------------------------------------------------------------------------------------------------


def _token_label(text: str) -> str:
    """Visible form of a token: newlines and undecodable bytes shown as symbols, spaces kept."""
    return text.replace("\n", "⏎").replace("\ufffd", "·")


def _span(text: str, style: str, title: str, css_class: str) -> str:
    return (
        f'<span class="{css_class}" style="{style}" title="{html.escape(title)}">{html.escape(text)}</span>'
    )


def report_html(
    tokens: Sequence[TokenView],
    *,
    mode: str = "confidence",
    steps: int = 1,
    current_step: int | None = None,
    empty: str = "",
) -> str:
    """HTML for one report: [MASK] chips in grey, decoded tokens shaded by confidence or coloured by commit step.

    Args:
        tokens: the visible tokens in order (padding removed).
        mode: "confidence" (blue, deeper = surer) or "commit" (viridis colour of the commit step).
        steps: number of sampling steps (for the commit colours).
        current_step: tokens committed at this step get an outline (the ones that just appeared).
    """
    if mode not in ("confidence", "commit"):
        raise ValueError(f"mode must be 'confidence' or 'commit', got {mode!r}")
    if not tokens:
        return f'<div class="medim-report">{html.escape(empty)}</div>'
    parts = []
    for token in tokens:
        if token.committed_at < 0:
            parts.append(_span("[MASK]", "", "still masked", "medim-tok medim-mask"))
            continue
        label = _token_label(token.text)
        if token.committed_at == 0:
            parts.append(_span(label, "", "given (condition)", "medim-tok medim-given"))
            continue
        fresh = " medim-fresh" if current_step is not None and token.committed_at == current_step else ""
        conf = float(token.confidence) if token.confidence is not None else 0.0
        title = f"confidence {conf:.2f} · committed at step {token.committed_at}"
        if mode == "confidence":
            alpha = 0.12 + 0.78 * min(max(conf, 0.0), 1.0)
            r, g, b = CONFIDENCE_RGB
            ink = "#fff" if alpha > 0.55 else "#111827"
            style = f"background:rgba({r},{g},{b},{alpha:.2f});color:{ink}"
        else:
            colour = step_colour(token.committed_at, steps)
            style = f"background:{_hex(colour)};color:{_hex(_text_colour(colour))}"
        parts.append(_span(label, style, title, "medim-tok" + fresh))
    return '<div class="medim-report">' + "".join(parts) + "</div>"


def legend_html(mode: str, steps: int = 1) -> str:
    """A small colour key for `report_html`'s modes."""
    if mode == "confidence":
        r, g, b = CONFIDENCE_RGB
        bar = f"linear-gradient(90deg, rgba({r},{g},{b},0.12), rgba({r},{g},{b},0.9))"
        return (
            '<div class="medim-legend"><span class="medim-tok medim-mask">[MASK]</span> still masked · '
            f'confidence <span class="medim-bar" style="background:{bar}"></span> low → high</div>'
        )
    stops = ", ".join(_hex(step_colour(s, 5)) for s in range(1, 6))
    return (
        f'<div class="medim-legend">committed at step 1 <span class="medim-bar" '
        f'style="background:linear-gradient(90deg, {stops})"></span> step {steps} · '
        '<span class="medim-tok medim-given">c</span> given as condition</div>'
    )


def status_html(step: int, steps: int, detail: str = "", *, done: bool = False) -> str:
    """Step counter with a progress bar; `detail` is shown in small print after the counter."""
    steps = max(steps, 1)
    percent = 100.0 * min(max(step, 0), steps) / steps
    state = "done" if done else "running"
    label = f"Step {step} / {steps}"
    return (
        f'<div class="medim-status medim-{state}" data-step="{step}" data-steps="{steps}">'
        f'<div class="medim-status-line"><b class="medim-step">{label}</b>'
        f'<span class="medim-detail">{html.escape(detail)}</span></div>'
        f'<div class="medim-progress"><div style="width:{percent:.1f}%"></div></div></div>'
    )


def idle_status_html(text: str = "Ready: pick a task below and press Generate.") -> str:
    return (
        f'<div class="medim-status medim-idle"><div class="medim-status-line">{html.escape(text)}</div></div>'
    )
