"""Result bundles: a zip with the images, reports, seed, settings, inputs and checkpoint hash of one run.

Layout of a bundle (format ``medim-demo-bundle/1``)::

    settings.json        task, seed, sampler settings, number of samples, inputs, checkpoint name + sha256
    image.png            the generated image (image_1.png, image_2.png, ... for several samples)
    report.txt           the generated report (report_1.txt, ... likewise)
    input_image.png      scan → report: the scan as the model read it (lossless, so a rerun sees the same pixels)
    tokens.json          final token ids; for an edit also the sequence it started from and the re-masked positions
    README.txt           what the files are and how to reproduce

`read_bundle` checks an uploaded bundle before trusting it: size limits, only the names above, JSON that parses
into valid settings. `reproduce` runs it again with a pipeline; the same checkpoint and settings give the same
tokens.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from app.inputs import InputError, check_report
from app.session import TASKS, Run, Settings

FORMAT = "medim-demo-bundle/1"
MAX_BUNDLE_BYTES = 30 * 1024 * 1024
MAX_MEMBER_BYTES = 20 * 1024 * 1024
MAX_MEMBERS = 24

README = """MeDiM demo result bundle ({format})

settings.json holds everything needed to generate this result again: the task, its inputs, the seed, the
sampler settings and the checkpoint's sha256. Load this zip in the demo ("Reproduce a bundle") with the same
checkpoint to get the same tokens, or use the Python API:

    from medim.pipeline import MeDiMPipeline
    pipe = MeDiMPipeline.from_pretrained("<checkpoint>")   # sha256 of model.safetensors: {sha}
    pipe.run("{task}", seed={seed}, num_samples={n}, steps={steps}, temperature={temperature},
             guidance_scale={guidance}, schedule="{schedule}", ...inputs...)

Synthetic research output: not for clinical use.
"""


def _names(prefix: str, suffix: str, count: int) -> list[str]:
    return [f"{prefix}{suffix}"] if count == 1 else [f"{prefix}_{i + 1}{suffix}" for i in range(count)]


def bundle_settings(run: Run) -> dict[str, Any]:
    """The settings.json content of `run` (JSON-serialisable)."""
    inputs: dict[str, Any] = {}
    if run.task == "report2image":
        inputs["report"] = run.inputs["report"]
    elif run.task == "image2report":
        inputs["image"] = "input_image.png"
    elif run.task == "pair":
        inputs["prompt"] = run.inputs.get("prompt", "")
    else:
        inputs.update(
            parent_task=run.inputs.get("parent_task"),
            cells=run.inputs.get("cells", []),
            token_offsets=run.inputs.get("token_offsets", []),
            base_tokens="tokens.json",
        )
    return {
        "format": FORMAT,
        "task": run.task,
        "seed": run.settings.seed,
        "settings": run.settings.to_dict(),
        "sampler": run.sampler,
        "inputs": inputs,
        "checkpoint": {"name": run.checkpoint, "sha256": run.checkpoint_sha256},
        "outputs": {
            "images": _names("image", ".png", run.num_samples),
            "reports": _names("report", ".txt", run.num_samples),
        },
        "warnings": run.warnings,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_bundle(run: Run, directory: str | Path) -> Path:
    """Write `run` as a zip under `directory`; returns the file path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    settings = bundle_settings(run)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = (
        directory / f"medim-{run.task}-seed{run.settings.seed}-{stamp}-{time.perf_counter_ns() % 10**6}.zip"
    )
    tokens: dict[str, Any] = {"tokens": run.tokens.tolist()}
    if run.task == "inpaint":
        tokens["base_tokens"] = run.inputs["base_tokens"].tolist()
        tokens["positions"] = run.inputs["positions"].to(torch.int8).tolist()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("settings.json", json.dumps(settings, indent=2) + "\n")
        for name, image in zip(settings["outputs"]["images"], run.images):
            archive.writestr(name, _png(image))
        for name, report in zip(settings["outputs"]["reports"], run.reports):
            archive.writestr(name, report + "\n")
        if run.task == "image2report":
            archive.writestr("input_image.png", _png(run.inputs["image"]))
        archive.writestr("tokens.json", json.dumps(tokens) + "\n")
        sampler = settings["settings"]
        archive.writestr(
            "README.txt",
            README.format(
                format=FORMAT,
                sha=run.checkpoint_sha256,
                task=run.task,
                seed=run.settings.seed,
                n=run.num_samples,
                steps=sampler["steps"],
                temperature=sampler["temperature"],
                guidance=sampler["guidance_scale"],
                schedule=sampler["schedule"],
            ),
        )
    return path


@dataclass
class Bundle:
    """A parsed, checked bundle."""

    task: str
    settings: Settings
    inputs: dict[str, Any]
    checkpoint_sha256: str | None
    tokens: torch.Tensor
    images: list[Image.Image]
    reports: list[str]
    base_tokens: torch.Tensor | None = None
    positions: torch.Tensor | None = None


def read_bundle(path: str | Path) -> Bundle:
    """Open and check a bundle zip; raises InputError with a user-facing reason for anything wrong."""
    from app.inputs import load_scan

    path = Path(path)
    if not path.is_file():
        raise InputError("No bundle uploaded.")
    if path.stat().st_size > MAX_BUNDLE_BYTES:
        raise InputError(f"The bundle is {path.stat().st_size:,} bytes; the limit is {MAX_BUNDLE_BYTES:,}.")
    if not zipfile.is_zipfile(path):
        raise InputError("The upload is not a zip file: download a bundle from the demo and upload it as is.")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise InputError(
                    f"The bundle has {len(members)} files; a demo bundle has at most {MAX_MEMBERS}."
                )
            sizes = {m.filename: m.file_size for m in members}
            if any(size > MAX_MEMBER_BYTES for size in sizes.values()):
                raise InputError("A file in the bundle is too large once unpacked (possible zip bomb).")
            if "settings.json" not in sizes:
                raise InputError("The zip has no settings.json: it is not a MeDiM demo bundle.")

            def read(name: str) -> bytes:
                if name not in sizes:
                    raise InputError(f"The bundle is missing {name}.")
                return archive.read(name)

            settings = json.loads(read("settings.json"))
            if not isinstance(settings, dict) or settings.get("format") != FORMAT:
                raise InputError(f"settings.json is not a {FORMAT} file.")
            task = settings.get("task")
            if task not in (*TASKS, "inpaint"):
                raise InputError(f"Unknown task {task!r} in settings.json.")
            run_settings = Settings(**{k: settings["settings"][k] for k in Settings.__dataclass_fields__})
            token_data = json.loads(read("tokens.json"))
            outputs = settings.get("outputs", {})
            images = [_read_png(read(name)) for name in outputs.get("images", [])]
            reports = [read(name).decode("utf-8").rstrip("\n") for name in outputs.get("reports", [])]
            inputs = dict(settings.get("inputs", {}))
            if task == "image2report":
                with _scratch(read("input_image.png")) as scan_path:
                    inputs["image"] = load_scan(scan_path)
            if task == "report2image":
                inputs["report"] = check_report(inputs.get("report"))
            bundle = Bundle(
                task=task,
                settings=run_settings,
                inputs=inputs,
                checkpoint_sha256=(settings.get("checkpoint") or {}).get("sha256"),
                tokens=torch.tensor(token_data["tokens"], dtype=torch.long),
                images=images,
                reports=reports,
            )
            if task == "inpaint":
                bundle.base_tokens = torch.tensor(token_data["base_tokens"], dtype=torch.long)
                bundle.positions = torch.tensor(token_data["positions"], dtype=torch.bool)
            return bundle
    except InputError:
        raise
    except (
        zipfile.BadZipFile,
        json.JSONDecodeError,
        KeyError,
        TypeError,
        ValueError,
        UnicodeDecodeError,
    ) as error:
        raise InputError(
            f"The bundle is damaged or not from this demo: {type(error).__name__}: {error}"
        ) from error


def _read_png(data: bytes) -> Image.Image:
    from medim.data.io import load_image

    return load_image(data, max_pixels=20_000_000).convert("RGB")


class _scratch:
    """A temporary file holding `data`, removed on exit (load_scan reads paths)."""

    def __init__(self, data: bytes):
        self.data = data

    def __enter__(self) -> Path:
        import tempfile

        handle = tempfile.NamedTemporaryFile(suffix=".bin", delete=False)
        handle.write(self.data)
        handle.close()
        self.path = Path(handle.name)
        return self.path

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def same_result(bundle: Bundle, run: Run) -> bool:
    """True when `run` produced exactly the bundle's tokens (hence the same images and reports)."""
    return bundle.tokens.shape == run.tokens.shape and torch.equal(bundle.tokens, run.tokens)
