"""Consistency judge: a small CNN that reads the synthetic domains' findings (multi-label) and domain from an image.

The synthetic corpus knows the ground truth of every image (``labels`` in ``metadata.jsonl``), so a classifier
trained on its training split gives an automatic, offline reader of generated images: a generated image is
consistent with its report when the judge sees the findings the report states (read by the labeler). The same
network's penultimate layer is the feature space of the *domain Fréchet distance* (:mod:`medim.metrics.images`).

Train (a few minutes on a CPU at 64x64) and inspect::

    python -m medim.metrics.judge train --corpus DIR --image-size 64 --out assets/judge
    python -m medim.metrics.judge evaluate --judge assets/judge --corpus DIR --split test

The judge is saved as ``judge.safetensors`` + ``judge.json`` (config, finding names, training record and the
held-out accuracy/AUC per finding). It only knows the synthetic domains it was trained on; on real images its
readings mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from medim.metrics.images import FeatureExtractor

__all__ = [
    "ConsistencyJudge",
    "FindingJudgeNet",
    "JudgeConfig",
    "JudgeFeatures",
    "LabelledImages",
    "evaluate_judge",
    "load_labelled_split",
    "train_judge",
]

WEIGHTS_NAME = "judge.safetensors"
CONFIG_NAME = "judge.json"


# ---------------------------------------------------------------------------------------------------------
# Config and network
# ---------------------------------------------------------------------------------------------------------


@dataclass
class JudgeConfig:
    """Architecture and label space. ``findings`` maps each domain to its finding names; the network's outputs
    are the findings of all domains concatenated in ``domains`` order, then one logit per domain."""

    findings: dict[str, list[str]]
    image_size: int = 64
    widths: tuple[int, ...] = (16, 32, 64, 128)
    embed_dim: int = 64
    # "mean": global average pooling of the last feature map; "flatten": the whole map, so where a finding lies
    # (left/right, heart width against the thorax) reaches the head. Judges saved before "flatten" read as "mean".
    pooling: str = "mean"

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        if self.pooling not in ("mean", "flatten"):
            raise ValueError(f"pooling must be 'mean' or 'flatten', got {self.pooling!r}")
        if not self.findings or not all(isinstance(v, list | tuple) and v for v in self.findings.values()):
            raise ValueError(
                f"findings must map each domain to a non-empty list of names, got {self.findings!r}"
            )
        self.findings = {domain: list(names) for domain, names in self.findings.items()}
        if self.image_size < 16 or self.image_size % 2 ** len(self.widths):
            raise ValueError(
                f"image_size {self.image_size} must be >= 16 and divisible by {2 ** len(self.widths)}"
            )
        if not self.widths or min(self.widths) < 1 or self.embed_dim < 1:
            raise ValueError(f"bad widths {self.widths} / embed_dim {self.embed_dim}")

    @property
    def domains(self) -> list[str]:
        return list(self.findings)

    @property
    def output_names(self) -> list[tuple[str, str]]:
        """(domain, finding) for each finding output, in order."""
        return [(domain, name) for domain, names in self.findings.items() for name in names]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class FindingJudgeNet(nn.Module):
    """CNN: pixels [B, 3, S, S] in [-1, 1] -> (finding logits [B, F], domain logits [B, D]); ``embed`` gives the
    penultimate features [B, E]. Every stage halves the resolution (a 3x3 stride-2 stem still sees each pixel, so
    2-3 px nodules survive; a full-resolution stem costs 3-4x the training time), then the last map is pooled
    (``config.pooling``) into the embedding."""

    def __init__(self, config: JudgeConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = [_block(3, config.widths[0], 2)]
        for c_in, c_out in zip(config.widths, config.widths[1:]):
            layers += [_block(c_in, c_out, 2), _block(c_out, c_out, 1)]
        self.body = nn.Sequential(*layers)
        cells = (config.image_size // 2 ** len(config.widths)) ** 2 if config.pooling == "flatten" else 1
        self.embedding = nn.Sequential(
            nn.Linear(config.widths[-1] * cells, config.embed_dim), nn.ReLU(inplace=True)
        )
        self.findings_head = nn.Linear(config.embed_dim, len(config.output_names))
        self.domain_head = nn.Linear(config.embed_dim, len(config.domains))

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.body(pixels)
        pooled = features.flatten(1) if self.config.pooling == "flatten" else features.mean(dim=(2, 3))
        return self.embedding(pooled)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.embed(pixels)
        return self.findings_head(features), self.domain_head(features)


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------


@dataclass
class LabelledImages:
    """A split held in memory: ``pixels`` uint8 [N, 3, S, S]; ``targets`` float [N, F] and ``known`` bool [N, F]
    over the judge's finding outputs (known = a finding of the image's domain with a 1/0 label);
    ``domain_index`` long [N]."""

    pixels: torch.Tensor
    targets: torch.Tensor
    known: torch.Tensor
    domain_index: torch.Tensor
    ids: list[str] = field(default_factory=list)


def _to_uint8(image: Image.Image, size: int) -> torch.Tensor:
    from medim.data.preprocess import to_model_tensor

    return ((to_model_tensor(image, size) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def _split_manifest(corpus: str | Path, split: str) -> Path:
    root = Path(corpus)
    if (root / split / "metadata.jsonl").is_file():
        return root / split / "metadata.jsonl"
    if root.is_file() or (root / "metadata.jsonl").is_file():
        return root
    raise ValueError(f"no {split!r} split in {root}: expected {root / split / 'metadata.jsonl'}")


def _finding_space(dataset) -> dict[str, list[str]]:
    """Domain -> sorted finding names seen in the dataset's labels."""
    space: dict[str, set[str]] = {}
    for entry in dataset.entries:
        if entry.labels is None:
            raise ValueError(
                f"{dataset.source}: pair {entry.id!r} has no labels; the judge needs labelled images"
            )
        space.setdefault(entry.domain, set()).update(entry.labels)
    return {domain: sorted(names) for domain, names in sorted(space.items()) if names}


def load_labelled_split(
    corpus, split: str, config: JudgeConfig, *, limit: int | None = None, progress: bool = False
) -> LabelledImages:
    """Read a corpus split (``<corpus>/<split>/metadata.jsonl``) into memory at the judge's resolution."""
    from medim.data.datasets import ManifestDataset

    dataset = ManifestDataset(_split_manifest(corpus, split))
    entries = dataset.entries[:limit] if limit else dataset.entries
    outputs = config.output_names
    pixels = torch.empty(len(entries), 3, config.image_size, config.image_size, dtype=torch.uint8)
    targets = torch.zeros(len(entries), len(outputs))
    known = torch.zeros(len(entries), len(outputs), dtype=torch.bool)
    domain_index = torch.zeros(len(entries), dtype=torch.long)
    iterator = range(len(entries))
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"loading {split}", unit="img", file=sys.stderr)
    for row in iterator:
        record = dataset[row]
        if record.domain not in config.findings:
            raise ValueError(
                f"pair {record.id!r} has domain {record.domain!r}, which the judge does not know"
            )
        pixels[row] = _to_uint8(record.image, config.image_size)
        domain_index[row] = config.domains.index(record.domain)
        labels = record.labels or {}
        for column, (domain, name) in enumerate(outputs):
            value = labels.get(name, 0)
            if domain == record.domain and value in (0, 1):
                targets[row, column] = float(value)
                known[row, column] = True
    return LabelledImages(pixels, targets, known, domain_index, [entry.id for entry in entries])


def _normalise(pixels_uint8: torch.Tensor) -> torch.Tensor:
    return pixels_uint8.float() / 127.5 - 1.0


def _augment(
    pixels: torch.Tensor, generator: torch.Generator, shift: int = 2, noise: float = 0.04
) -> torch.Tensor:
    """Small translations (no flips: laterality is a finding) and pixel noise, so the judge does not depend on
    the exact rendering and tolerates the VQ decoder's softer images."""
    batch, _, size, _ = pixels.shape
    padded = F.pad(pixels, (shift,) * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * shift + 1, (2,), generator=generator).tolist()
    shifted = padded[:, :, dy : dy + size, dx : dx + size]
    return shifted + noise * torch.randn(shifted.shape, generator=generator)


# ---------------------------------------------------------------------------------------------------------
# The judge
# ---------------------------------------------------------------------------------------------------------


class ConsistencyJudge:
    """A trained :class:`FindingJudgeNet` with its config and record; reads findings off images."""

    def __init__(self, network: FindingJudgeNet, record: dict | None = None, source: Path | None = None):
        self.network = network.eval()
        self.config = network.config
        self.record = dict(record or {})
        self.source = source
        self.sha256: str | None = None

    # ---- persistence -----------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_model

        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        save_model(self.network, str(root / WEIGHTS_NAME))
        payload = {"config": self.config.to_dict(), **self.record}
        (root / CONFIG_NAME).write_text(json.dumps(payload, indent=2) + "\n")
        return root

    @classmethod
    def load(cls, directory: str | Path) -> ConsistencyJudge:
        from safetensors.torch import load_model

        from medim.pipeline import file_sha256

        root = Path(directory).expanduser()
        if not (root / CONFIG_NAME).is_file() or not (root / WEIGHTS_NAME).is_file():
            raise ValueError(
                f"no consistency judge in {root}: expected {CONFIG_NAME} and {WEIGHTS_NAME} (train one with "
                "`python -m medim.metrics.judge train --corpus DIR --out DIR`)"
            )
        payload = json.loads((root / CONFIG_NAME).read_text())
        try:
            config = JudgeConfig(**payload.pop("config"))
        except (KeyError, TypeError) as error:
            raise ValueError(f"{root / CONFIG_NAME} is not a judge config: {error}") from error
        network = FindingJudgeNet(config)
        try:
            load_model(network, str(root / WEIGHTS_NAME))
        except Exception as error:
            raise ValueError(f"{root / WEIGHTS_NAME} does not match {root / CONFIG_NAME}: {error}") from error
        judge = cls(network, payload, root)
        judge.sha256 = file_sha256(root / WEIGHTS_NAME)
        return judge

    # ---- reading images --------------------------------------------------------------------------------
    def _pixels(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(
                    f"expected uint8 images [N, 3, H, W], got {images.dtype} {tuple(images.shape)}"
                )
            size = self.config.image_size
            pixels = images.float()
            if pixels.shape[-2:] != (size, size):
                pixels = F.interpolate(
                    pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False
                )
            return pixels / 127.5 - 1.0
        return _normalise(torch.stack([_to_uint8(image, self.config.image_size) for image in images]))

    @torch.no_grad()
    def predict(self, images: Sequence[Image.Image] | torch.Tensor, batch_size: int = 128):
        """Images (PIL list or uint8 [N, 3, H, W]) -> (finding probabilities [N, F], domain probabilities [N, D])
        as numpy arrays; columns follow ``config.output_names`` / ``config.domains``."""
        if len(images) == 0:
            raise ValueError("no images given")
        findings, domains = [], []
        for start in range(0, len(images), batch_size):
            pixels = self._pixels(images[start : start + batch_size])
            finding_logits, domain_logits = self.network(pixels)
            findings.append(torch.sigmoid(finding_logits))
            domains.append(domain_logits.softmax(-1))
        return torch.cat(findings).numpy(), torch.cat(domains).numpy()

    def read_labels(
        self,
        images: Sequence[Image.Image] | torch.Tensor,
        domains: Sequence[str | None] | None = None,
        threshold: float = 0.5,
    ) -> tuple[list[dict[str, int]], list[str]]:
        """The judge's reading of each image as a label dict (finding -> 1/0) of a domain, like the labeler's.

        ``domains[i]`` fixes the domain whose findings are read (e.g. the report's); None lets the judge pick
        the domain it sees. Returns (label dicts, the judge's own domain call per image).
        """
        probabilities, domain_probabilities = self.predict(images)
        seen = [self.config.domains[int(i)] for i in domain_probabilities.argmax(1)]
        domains = list(domains) if domains is not None else [None] * len(seen)
        if len(domains) != len(seen):
            raise ValueError(f"{len(domains)} domains for {len(seen)} images")
        labels = []
        for row, domain in enumerate(domains):
            domain = domain or seen[row]
            if domain not in self.config.findings:
                raise ValueError(f"the judge does not know the domain {domain!r} ({self.config.domains})")
            labels.append(
                {
                    name: int(probabilities[row, column] >= threshold)
                    for column, (d, name) in enumerate(self.config.output_names)
                    if d == domain
                }
            )
        return labels, seen

    def feature_extractor(self) -> JudgeFeatures:
        return JudgeFeatures(self)

    def describe(self) -> dict:
        return {
            "name": "medim-judge-penultimate",
            "file": str(self.source / WEIGHTS_NAME) if self.source else None,
            "sha256": self.sha256,
            "features": self.config.embed_dim,
            "image_size": self.config.image_size,
        }


class JudgeFeatures(FeatureExtractor):
    """The judge's penultimate layer as a torchmetrics feature network: uint8 [N, 3, H, W] -> [N, embed_dim]."""

    def __init__(self, judge: ConsistencyJudge):
        super().__init__()
        self.judge = judge
        self.network = judge.network
        self.num_features = judge.config.embed_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.network.eval().embed(self.judge._pixels(images))

    def describe(self) -> dict:
        return self.judge.describe()


# ---------------------------------------------------------------------------------------------------------
# Training and held-out evaluation
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_judge(judge: ConsistencyJudge, data: LabelledImages, threshold: float = 0.5) -> dict:
    """Per-finding accuracy, ROC AUC, F1 and prevalence on labelled images (only the images of each finding's
    domain count), their macro means, and the domain accuracy."""
    from sklearn.metrics import f1_score, roc_auc_score

    probabilities, domain_probabilities = judge.predict(data.pixels)
    per_finding = {}
    for column, (domain, name) in enumerate(judge.config.output_names):
        rows = data.known[:, column].numpy()
        truth = data.targets[rows, column].numpy().astype(int)
        scores = probabilities[rows, column]
        if len(truth) == 0:
            continue
        predicted = (scores >= threshold).astype(int)
        both_classes = 0 < truth.sum() < len(truth)
        per_finding[f"{domain}/{name}"] = {
            "accuracy": float((predicted == truth).mean()),
            "auc": float(roc_auc_score(truth, scores)) if both_classes else None,
            "f1": float(f1_score(truth, predicted, zero_division=0)),
            "prevalence": float(truth.mean()),
            "n": int(len(truth)),
        }
    aucs = [v["auc"] for v in per_finding.values() if v["auc"] is not None]
    return {
        "per_finding": per_finding,
        "macro_accuracy": float(np.mean([v["accuracy"] for v in per_finding.values()]))
        if per_finding
        else None,
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "macro_f1": float(np.mean([v["f1"] for v in per_finding.values()])) if per_finding else None,
        "domain_accuracy": float((domain_probabilities.argmax(1) == data.domain_index.numpy()).mean()),
        "n": int(len(data.pixels)),
        "threshold": threshold,
    }


def _learning_rate(peak: float, progress: float, warmup: float = 0.05) -> float:
    """Linear warm-up then cosine decay to 0 over ``progress`` in [0, 1]."""
    if progress < warmup:
        return peak * (progress + 1e-3) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup)))


def train_judge(
    corpus: str | Path,
    *,
    image_size: int = 64,
    epochs: int = 12,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    max_minutes: float | None = 30.0,
    seed: int = 0,
    train_split: str = "train",
    heldout_split: str | None = "val",
    limit: int | None = None,
    widths: Sequence[int] = (16, 32, 64, 128),
    embed_dim: int = 64,
    pooling: str = "flatten",
    progress: bool = True,
) -> ConsistencyJudge:
    """Train a judge on ``<corpus>/<train_split>`` and evaluate it on ``<corpus>/<heldout_split>``.

    The finding space is every label name seen per domain in the training split. Training stops after
    ``epochs`` or when ``max_minutes`` is spent (checked per batch). The learning rate warms up and then
    decays (cosine) over the training's progress, measured in steps or in the time budget, whichever is further
    along, so a run stopped by the clock still ends annealed. The held-out metrics are stored in
    ``judge.record["heldout"]``.
    """
    from medim.data.datasets import ManifestDataset

    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"bad training settings: epochs={epochs}, batch_size={batch_size}, lr={lr}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    space = _finding_space(ManifestDataset(_split_manifest(corpus, train_split)))
    if not space:
        raise ValueError(f"{corpus}/{train_split}: no finding labels to learn")
    config = JudgeConfig(
        findings=space, image_size=image_size, widths=tuple(widths), embed_dim=embed_dim, pooling=pooling
    )
    train = load_labelled_split(corpus, train_split, config, limit=limit, progress=progress)
    network = FindingJudgeNet(config)
    steps_per_epoch = math.ceil(len(train.pixels) / batch_size)
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=weight_decay)
    total_steps = epochs * steps_per_epoch
    started = time.monotonic()
    history, stopped_early, step = [], False, 0
    for epoch in range(epochs):
        network.train()
        order = torch.randperm(len(train.pixels), generator=generator)
        total, batches = 0.0, 0
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps_per_epoch, desc=f"judge epoch {epoch + 1}/{epochs}", file=sys.stderr)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            pixels = _augment(_normalise(train.pixels[index]), generator)
            finding_logits, domain_logits = network(pixels)
            known = train.known[index].float()
            bce = F.binary_cross_entropy_with_logits(finding_logits, train.targets[index], reduction="none")
            loss = (bce * known).sum() / known.sum().clamp_min(1) + F.cross_entropy(
                domain_logits, train.domain_index[index]
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            elapsed = time.monotonic() - started
            progress_done = max(step / total_steps, elapsed / (60 * max_minutes) if max_minutes else 0.0)
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(lr, min(progress_done, 1.0))
            optimizer.step()
            step += 1
            total, batches = total + loss.item(), batches + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total / batches:.3f}")
            if max_minutes is not None and time.monotonic() - started > 60 * max_minutes:
                stopped_early = True
                break
        if bar is not None:
            bar.close()
        history.append({"epoch": epoch + 1, "loss": total / max(batches, 1)})
        if stopped_early:
            break
    minutes = (time.monotonic() - started) / 60
    record = {
        "training": {
            "corpus": str(corpus),
            "split": train_split,
            "n_images": len(train.pixels),
            "epochs_run": len(history),
            "epochs_planned": epochs,
            "steps": step,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "minutes": round(minutes, 2),
            "stopped_by_time_budget": stopped_early,
            "history": history,
        }
    }
    judge = ConsistencyJudge(network, record)
    if heldout_split:
        heldout = load_labelled_split(corpus, heldout_split, config, limit=limit, progress=progress)
        judge.record["heldout"] = {"split": heldout_split, **evaluate_judge(judge, heldout)}
    return judge


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------


def format_heldout(metrics: dict) -> str:
    """Markdown table of per-finding held-out metrics."""
    lines = ["| finding | accuracy | AUC | F1 | prevalence | n |", "|---|---|---|---|---|---|"]
    for name, row in metrics["per_finding"].items():
        auc = f"{row['auc']:.3f}" if row["auc"] is not None else "n/a"
        lines.append(
            f"| {name} | {row['accuracy']:.3f} | {auc} | {row['f1']:.3f} | {row['prevalence']:.3f} | "
            f"{row['n']} |"
        )
    macro_auc = f"{metrics['macro_auc']:.3f}" if metrics["macro_auc"] is not None else "n/a"
    lines.append(
        f"| **macro** | {metrics['macro_accuracy']:.3f} | {macro_auc} | {metrics['macro_f1']:.3f} | | "
        f"{metrics['n']} |"
    )
    lines.append(f"\ndomain accuracy: {metrics['domain_accuracy']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medim.metrics.judge", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a judge on a synthetic corpus and report held-out metrics")
    train.add_argument("--corpus", required=True, help="corpus root with train/ and val/ splits")
    train.add_argument("--out", required=True, help="output directory (judge.safetensors + judge.json)")
    train.add_argument("--image-size", type=int, default=64)
    train.add_argument("--epochs", type=int, default=12)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=3e-3)
    train.add_argument("--max-minutes", type=float, default=30.0, help="wall-clock budget (default 30)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--pooling", choices=["flatten", "mean"], default="flatten", help="last feature map -> embedding"
    )
    train.add_argument("--heldout-split", default="val")
    train.add_argument("--limit", type=int, help="use only the first N images of each split")
    train.add_argument("--threads", type=int)
    evaluate = sub.add_parser("evaluate", help="held-out metrics of a saved judge on a corpus split")
    evaluate.add_argument("--judge", required=True)
    evaluate.add_argument("--corpus", required=True)
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--limit", type=int)
    evaluate.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    from medim.commands._common import set_threads

    set_threads(args.threads)
    try:
        if args.command == "train":
            judge = train_judge(
                args.corpus,
                image_size=args.image_size,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                max_minutes=args.max_minutes,
                seed=args.seed,
                heldout_split=args.heldout_split,
                limit=args.limit,
                pooling=args.pooling,
            )
            root = judge.save(args.out)
            training = judge.record["training"]
            print(
                f"trained on {training['n_images']} images for {training['epochs_run']} epoch(s) in "
                f"{training['minutes']:.1f} min -> {root}"
            )
            if "heldout" in judge.record:
                print(f"held-out ({args.heldout_split}):\n{format_heldout(judge.record['heldout'])}")
        else:
            judge = ConsistencyJudge.load(args.judge)
            data = load_labelled_split(args.corpus, args.split, judge.config, limit=args.limit, progress=True)
            print(format_heldout(evaluate_judge(judge, data)))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
