"""Publish a trained run as the embedded default: copy the exported pipeline into assets/, draw the
report / generated image / reference image contact sheet on test pairs, and copy the loss curve.

    python -m train.model_card --run runs/demo-cpu --out assets/default --rows 8

The MODEL_CARD.md beside it is written by hand from the numbers this and `python -m medim evaluate` print. A
tokenizer the run reused byte for byte keeps the training log and metrics published with it (`carry_history`).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import textwrap
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

PUBLISHED = (
    "medim_config.json",
    "model.safetensors",
    "sampler_config.json",
    "checkpoint_info.json",
    "diffusion_config.json",
    "trained_text_ids.json",
    "train_config.yaml",
    "text_tokenizer",
    "image_tokenizer",
)


# the files that make a tokenizer what it is; its other files (training log, metrics, length statistics) describe
# how it was made
_TOKENIZER_IDENTITY = ("*.safetensors", "tokenizer.json")


def _identity(folder: Path) -> dict[str, bytes]:
    """Relative path -> content of every identity file under ``folder``."""
    files = {f for pattern in _TOKENIZER_IDENTITY for f in folder.rglob(pattern) if f.is_file()}
    return {str(f.relative_to(folder)): f.read_bytes() for f in files}


def carry_history(old: Path, new: Path) -> list[Path]:
    """Copy into ``new`` the files of ``old`` it lacks (a tokenizer's training log, metrics, length statistics), in
    every folder whose identity files (weights, tokenizer.json) are byte for byte the same in both: a run that reused
    a tokenizer exports only what loading needs, and the history of the reused tokenizer still applies. Returns the
    files copied."""
    copied = []
    for folder in [old, *sorted(d for d in old.rglob("*") if d.is_dir())]:
        twin = new / folder.relative_to(old)
        identity = _identity(folder)
        if not twin.is_dir() or not identity or identity != _identity(twin):
            continue
        for file in sorted(f for f in folder.iterdir() if f.is_file()):
            if not (twin / file.name).exists():
                shutil.copy(file, twin / file.name)
                copied.append(twin / file.name)
    return copied


def publish(run: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in PUBLISHED:
        source = run / "medim" / name
        target = out / name
        if source.is_dir():
            with tempfile.TemporaryDirectory() as keep:
                previous = Path(keep) / name
                if target.is_dir():
                    shutil.copytree(target, previous)
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(source, target)
                if previous.is_dir():
                    for file in carry_history(previous, target):
                        print(f"kept {file} (same tokenizer as the one published before)")
        elif source.is_file():
            shutil.copy(source, target)
    if (run / "logs" / "loss_curve.png").is_file():
        shutil.copy(run / "logs" / "loss_curve.png", out / "loss_curve.png")


def test_corpus(run: Path, data: Path | None = None) -> Path:
    """The corpus a run trained on: an explicit root, the run's `data.root`, or the corpus it generated."""
    if data is not None:
        return data
    config_path = run / "medim" / "train_config.yaml"
    if config_path.is_file():
        import yaml

        root = (yaml.safe_load(config_path.read_text()).get("data") or {}).get("root")
        if root:
            return Path(root)
    return run / "corpus"


def contact_sheet(pipe, records, path: Path, seed: int = 0, cell: int = 192) -> Path:
    """Rows of (report text, image generated from it, the reference image) for test-split pairs."""
    reports = [record.report for record in records]
    generated = pipe.generate_image(reports, seed=seed).images
    text_width = 520
    sheet = Image.new("RGB", (text_width + 2 * cell + 30, len(records) * (cell + 10) + 30), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    draw.text((10, 8), "report (test split)", fill="black", font=font)
    draw.text((text_width + 10, 8), "generated from the report", fill="black", font=font)
    draw.text((text_width + cell + 20, 8), "reference image", fill="black", font=font)
    for row, (record, image) in enumerate(zip(records, generated)):
        top = 26 + row * (cell + 10)
        wrapped = textwrap.fill(record.report, width=84)
        draw.multiline_text((10, top), wrapped, fill="black", font=font, spacing=2)
        sheet.paste(image.resize((cell, cell), Image.NEAREST), (text_width + 10, top))
        reference = record.image.convert("RGB").resize((cell, cell), Image.BICUBIC)
        sheet.paste(reference, (text_width + cell + 20, top))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="corpus root with a test/ split (default: the run's data.root, else <run>/corpus)",
    )
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from medim.data.datasets import ManifestDataset
    from medim.pipeline import MeDiMPipeline

    publish(args.run, args.out)
    pipe = MeDiMPipeline.from_pretrained(args.out, device="cpu")
    test = ManifestDataset(test_corpus(args.run, args.data) / "test" / "metadata.jsonl")
    # alternate domains so both appear: the corpus interleaves chest (even) and pathology (odd) indices
    records = [test[index] for index in range(min(args.rows, len(test)))]
    print(contact_sheet(pipe, records, args.out / "contact_sheet.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
