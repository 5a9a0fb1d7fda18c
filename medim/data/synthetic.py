"""Seeded procedural image–report pairs with ground-truth findings: MeDiM's embedded default training data.

Two domains are generated: frontal chest radiographs ("chest_xray", CheXpert-named findings) and H&E
histopathology patches ("pathology": Tumor, High Grade, Necrosis, Inflammation). Each pair is a pure function of
``(seed, split, index)``: the scene (findings), the report and the image come from independent random streams, so
the same scene is drawn identically at any ``image_size`` and its report does not depend on the image size.
Test-split reports may use held-out phrasings that never occur in the train or validation splits.

Command line::

    python -m medim.data.synthetic --n 1000 --out data/synthetic [--seed 0 --image-size 128 --domains chest_xray]
    python -m medim.data.synthetic contact-sheet --out docs/contact_sheet.png [--count 16 --seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from medim.data import _synthetic_chest, _synthetic_pathology
from medim.metrics.labeler import CHEST_FINDINGS, PATHOLOGY_FINDINGS

DOMAINS = ("chest_xray", "pathology")
SPLITS = ("train", "val", "test")
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_DOMAIN_CODE = {"chest_xray": 0, "pathology": 1}


@dataclass
class SyntheticPair:
    """One generated image–report pair.

    ``labels`` holds every finding of the domain: 1 drawn, 0 not drawn (the generator is never uncertain).
    ``attributes`` holds ``{"side", "severity", "location"}`` (plus ``"type"`` for lesions, devices and tumours)
    for each drawn finding; pathology pairs also carry ``"Tissue": {"type": "colon" | "breast" | "lung"}``.
    """

    id: str
    image: Image.Image
    report: str
    domain: str
    labels: dict[str, int]
    attributes: dict[str, dict] = field(default_factory=dict)

    def metadata(self, image_path: str) -> dict:
        """The metadata.jsonl record of this pair, with ``image_path`` relative to its split directory."""
        return {
            "id": self.id,
            "image": image_path,
            "report": self.report,
            "domain": self.domain,
            "labels": self.labels,
            "attributes": self.attributes,
        }


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")


def _streams(seed: int, split: str, index: int, domain: str) -> list[np.random.Generator]:
    """Independent generators for (scene, report, image) of one pair."""
    sequence = np.random.SeedSequence([seed, _SPLIT_CODE[split], _DOMAIN_CODE[domain], index])
    return [np.random.default_rng(child) for child in sequence.spawn(3)]


def _check_request(index, seed, split: str, domain: str | None) -> str:
    """Validate the common arguments and return the resolved domain."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _check_choice("split", split, SPLITS)
    domain = DOMAINS[index % len(DOMAINS)] if domain is None else domain
    _check_choice("domain", domain, DOMAINS)
    return domain


def _scene(index: int, seed: int, split: str, domain: str):
    """(scene, report, labels, attributes, image generator) of one pair; the image is not drawn yet."""
    scene_rng, report_rng, image_rng = _streams(int(seed), split, int(index), domain)
    test = split == "test"
    if domain == "chest_xray":
        findings = _synthetic_chest.sample_findings(scene_rng)
        report = _synthetic_chest.write_report(findings, report_rng, test=test)
        labels = {name: int(name in findings) for name in CHEST_FINDINGS}
        labels["No Finding"] = int(not set(findings) - {"Support Devices"})
        return (None, findings), report, labels, findings, image_rng
    tissue, findings = _synthetic_pathology.sample_findings(scene_rng)
    report = _synthetic_pathology.write_report(tissue, findings, report_rng, test=test)
    labels = {name: int(name in findings) for name in PATHOLOGY_FINDINGS}
    return (tissue, findings), report, labels, {**findings, "Tissue": {"type": tissue}}, image_rng


def generate_report(
    index: int, *, seed: int = 0, split: str = "train", domain: str | None = None
) -> tuple[str, dict[str, int], dict[str, dict]]:
    """(report, labels, attributes) of pair ``index`` without drawing its image (identical to generate_pair's)."""
    domain = _check_request(index, seed, split, domain)
    _, report, labels, attributes, _ = _scene(index, seed, split, domain)
    return report, labels, attributes


def generate_pair(
    index: int, *, seed: int = 0, split: str = "train", domain: str | None = None, image_size: int = 128
) -> SyntheticPair:
    """Generate pair ``index`` of ``split`` deterministically.

    ``domain=None`` alternates domains by index (even: chest_xray, odd: pathology). The returned image is an RGB
    PIL image of ``image_size``² pixels (chest radiographs are grey replicated to three channels).
    """
    domain = _check_request(index, seed, split, domain)
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, (int, np.integer))
        or not 16 <= image_size <= 1024
    ):
        raise ValueError(f"image_size must be an integer in [16, 1024], got {image_size!r}")
    (tissue, findings), report, labels, attributes, image_rng = _scene(index, seed, split, domain)
    if domain == "chest_xray":
        grey = _synthetic_chest.render(findings, image_rng, int(image_size))
        image = Image.fromarray(grey, mode="L").convert("RGB")
    else:
        image = Image.fromarray(
            _synthetic_pathology.render(tissue, findings, image_rng, int(image_size)), mode="RGB"
        )
    pair_id = f"{split}-{'cxr' if domain == 'chest_xray' else 'path'}-{seed}-{index:06d}"
    return SyntheticPair(pair_id, image, report, domain, labels, attributes)


def split_sizes(n: int, fractions: Sequence[float]) -> dict[str, int]:
    """Number of pairs per split for ``n`` pairs split by ``fractions`` (train, val, test); sums to ``n``."""
    if (
        len(fractions) != 3
        or any(f < 0 for f in fractions)
        or not math.isclose(sum(fractions), 1.0, abs_tol=1e-3)
    ):
        raise ValueError(
            f"split_fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}"
        )
    n_train, n_val = round(n * fractions[0]), round(n * fractions[1])
    return {"train": n_train, "val": n_val, "test": n - n_train - n_val}


CORPUS_RECIPE = "corpus.json"  # beside the split folders: how to write the corpus again


def write_corpus(
    out_dir: str | Path,
    n: int,
    *,
    seed: int = 0,
    image_size: int = 128,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    domains: Sequence[str] = DOMAINS,
    progress: bool = True,
) -> dict[str, int]:
    """Write ``n`` pairs as ``out_dir/{split}/images/<id>.png`` plus ``out_dir/{split}/metadata.jsonl``.

    Within each split, pair ``i`` has domain ``domains[i % len(domains)]``. Returns the number of pairs per split.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    domains = tuple(domains)
    if not domains:
        raise ValueError("domains must name at least one domain")
    for domain in domains:
        _check_choice("domain", domain, DOMAINS)
    sizes = split_sizes(int(n), split_fractions)
    from tqdm.auto import tqdm

    out = Path(out_dir)
    with tqdm(total=int(n), desc="synthetic pairs", unit="pair", disable=not progress) as bar:
        for split, count in sizes.items():
            image_dir = out / split / "images"
            image_dir.mkdir(parents=True, exist_ok=True)
            with open(out / split / "metadata.jsonl", "w", encoding="utf-8") as meta:
                for i in range(count):
                    pair = generate_pair(
                        i, seed=seed, split=split, domain=domains[i % len(domains)], image_size=image_size
                    )
                    relative = f"images/{pair.id}.png"
                    pair.image.save(out / split / relative, optimize=False, compress_level=6)
                    meta.write(json.dumps(pair.metadata(relative)) + "\n")
                    bar.update(1)
    fractions = " ".join(f"{f:g}" for f in split_fractions)
    recipe = {
        "generator": "medim.data.synthetic",
        "n": int(n),
        "seed": seed,
        "image_size": image_size,
        "split_fractions": list(split_fractions),
        "domains": list(domains),
        "sizes": sizes,
        # the corpus is a pure function of these settings: this command writes it again, byte for byte
        "command": f"python -m medim.data.synthetic --n {int(n)} --out {out_dir} --seed {seed} "
        f"--image-size {image_size} --domains {' '.join(domains)} --split-fractions {fractions}",
    }
    (out / CORPUS_RECIPE).write_text(json.dumps(recipe, indent=1) + "\n", encoding="utf-8")
    return sizes


def corpus_recipe(split_dir_or_manifest: str | Path) -> dict | None:
    """The settings that wrote the synthetic corpus holding a split folder or manifest (None if not one)."""
    path = Path(split_dir_or_manifest)
    for folder in (path, *path.parents[:2]):
        if (folder / CORPUS_RECIPE).is_file():
            return json.loads((folder / CORPUS_RECIPE).read_text(encoding="utf-8"))
    return None


def make_contact_sheet(
    out_path: str | Path,
    *,
    count: int = 16,
    seed: int = 0,
    split: str = "train",
    image_size: int = 128,
    columns: int = 4,
    start: int = 0,
) -> Path:
    """Save a grid of ``count`` pairs (image above its wrapped report) as a PNG for people to inspect."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if count < 1 or columns < 1:
        raise ValueError(f"count and columns must be positive, got count={count}, columns={columns}")
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(
        rows * 2, columns, figsize=(4.2 * columns, 5.4 * rows), gridspec_kw={"height_ratios": [3, 1.5] * rows}
    )
    axes = np.asarray(axes).reshape(rows * 2, columns)
    for slot in range(rows * columns):
        image_ax, text_ax = (
            axes[2 * (slot // columns), slot % columns],
            axes[2 * (slot // columns) + 1, slot % columns],
        )
        image_ax.axis("off")
        text_ax.axis("off")
        if slot >= count:
            continue
        pair = generate_pair(start + slot, seed=seed, split=split, image_size=image_size)
        image_ax.imshow(pair.image, interpolation="nearest")
        positives = [k for k, v in pair.labels.items() if v == 1] or ["none"]
        image_ax.set_title(f"{pair.id}\n{', '.join(positives)}", fontsize=8)
        text_ax.text(
            0.0,
            1.0,
            textwrap.fill(pair.report, 52),
            va="top",
            ha="left",
            fontsize=7.2,
            family="serif",
            transform=text_ax.transAxes,
        )
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: write a corpus, or (``contact-sheet``) a contact sheet PNG."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["contact-sheet"]:
        parser = argparse.ArgumentParser(
            prog="python -m medim.data.synthetic contact-sheet",
            description="Render a grid of synthetic pairs for visual inspection.",
        )
        parser.add_argument("--out", required=True, help="output PNG path")
        parser.add_argument("--count", type=int, default=16)
        parser.add_argument("--columns", type=int, default=4)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--split", default="train", choices=SPLITS)
        parser.add_argument("--image-size", type=int, default=128)
        parser.add_argument("--start", type=int, default=0, help="index of the first pair shown")
        args = parser.parse_args(argv[1:])
        path = make_contact_sheet(
            args.out,
            count=args.count,
            seed=args.seed,
            split=args.split,
            image_size=args.image_size,
            columns=args.columns,
            start=args.start,
        )
        print(f"wrote {path}")
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m medim.data.synthetic",
        description="Write a synthetic image-report corpus (train/val/test).",
    )
    parser.add_argument("--n", type=int, required=True, help="total number of pairs over all splits")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=DOMAINS)
    parser.add_argument(
        "--split-fractions", nargs=3, type=float, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "VAL", "TEST")
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    sizes = write_corpus(
        args.out,
        args.n,
        seed=args.seed,
        image_size=args.image_size,
        split_fractions=args.split_fractions,
        domains=args.domains,
        progress=not args.no_progress,
    )
    print(f"wrote {sum(sizes.values())} pairs to {args.out}: {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
