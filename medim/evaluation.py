"""Evaluation of a MeDiM checkpoint on the three tasks, laid out like the paper's Tables 1–3.

- **report→image** (Tables 1–2): each test report is turned into an image; FID/IS with a local Inception-v3
  (skipped without one), the domain Fréchet distance on the consistency judge's features, and the judge's
  agreement with the report's findings (the same judge on the *reference* images gives the ceiling).
- **image→report** (Table 3): each test image is turned into a report; corpus-level BLEU-1..4, METEOR, ROUGE-L,
  CIDEr (pycocoevalcap), clearly separated sentence-level NLTK BLEU, clinical efficacy (labeler findings of the
  generated vs the reference report, and vs the corpus' ground-truth labels), and judge consistency between the
  input image and the generated report.
- **pair** (Fig. 5a): unconditional image–report pairs; the judge's consistency per inferred domain, domain FD
  against the test images, and a VLM judge when one is given.
- **steps sweep**: domain FD and CE-F1 against the number of MaskGIT steps K.

Reference images are resized to the checkpoint's resolution before any image metric, so the numbers measure
generation, not resolution. Generation is batched (``batch_size`` reports/images per sampler call, seed
``seed + batch index``), so results are reproducible for a given batch size.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medim.config import SAMPLED_TASKS
from medim.data.datasets import PairRecord

__all__ = [
    "TASKS",
    "EvaluationSettings",
    "Evaluator",
    "default_corpus",
    "generate_images",
    "generate_pairs",
    "generate_reports",
    "finding_scores",
    "load_eval_dataset",
    "write_outputs",
]

TASKS = SAMPLED_TASKS  # the three generation tasks
MAX_SAMPLER_BATCH = 64  # MeDiMPipeline's num_samples limit


@dataclass
class EvaluationSettings:
    """What to run. ``sampler`` holds SamplerConfig overrides (None = the checkpoint's default)."""

    tasks: tuple[str, ...] = TASKS
    limit: int | None = None
    batch_size: int = 16
    seed: int = 0
    steps_sweep: tuple[int, ...] = ()
    text_metrics: tuple[str, ...] = ("coco", "nltk")
    pair_samples: int | None = None
    sampler: dict[str, Any] = field(default_factory=dict)
    # Score the generated reports' sentences against the synthetic corpus's templates
    # (`medim.metrics.report_form`); meaningful only on the synthetic corpus.
    report_form: bool = False

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        unknown = set(self.tasks) - set(TASKS)
        if unknown or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {list(self.tasks)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if not 1 <= self.batch_size <= MAX_SAMPLER_BATCH:
            raise ValueError(f"batch_size must be in [1, {MAX_SAMPLER_BATCH}], got {self.batch_size}")
        self.steps_sweep = tuple(int(k) for k in self.steps_sweep)
        if any(k < 1 for k in self.steps_sweep):
            raise ValueError(f"steps_sweep values must be >= 1, got {list(self.steps_sweep)}")
        self.text_metrics = tuple(self.text_metrics)
        if set(self.text_metrics) - {"coco", "nltk"} or not self.text_metrics:
            raise ValueError(
                f"text_metrics must be a non-empty subset of ('coco', 'nltk'), got {self.text_metrics}"
            )
        if self.pair_samples is not None and self.pair_samples < 1:
            raise ValueError(f"pair_samples must be >= 1, got {self.pair_samples}")
        self.sampler = {k: v for k, v in dict(self.sampler).items() if v is not None}


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------


def default_corpus(checkpoint_dir: str | Path | None) -> Path | None:
    """The synthetic corpus a checkpoint was trained on, from the ``train_config.yaml`` saved beside it
    (``data.root``, else ``<output_dir>/corpus``); None when unknown or absent."""
    if checkpoint_dir is None or not (Path(checkpoint_dir) / "train_config.yaml").is_file():
        return None
    import yaml

    config = yaml.safe_load((Path(checkpoint_dir) / "train_config.yaml").read_text()) or {}
    data = config.get("data") or {}
    if data.get("source", "synthetic") != "synthetic":
        return None
    root = Path(data.get("root") or Path(config.get("output_dir", "")) / "corpus")
    return root if root.is_dir() else None


def load_eval_dataset(data: str | Path, split: str = "test"):
    """A :class:`medim.data.datasets.ManifestDataset` for a corpus root (``<data>/<split>/metadata.jsonl``), a
    split folder, or a manifest file (``.jsonl``/``.csv``)."""
    from medim.data.datasets import ManifestDataset, MissingFileError

    root = Path(data).expanduser()
    if (root / split).is_dir():
        return ManifestDataset(root / split)
    if root.is_file() or root.is_dir():
        return ManifestDataset(root)
    raise MissingFileError(
        f"evaluation data not found: {root} (pass --data, a synthetic corpus root such as runs/demo-cpu/corpus "
        "written by `python -m medim.data.synthetic`, a split folder, or a manifest)"
    )


def pack_records(pipe, records, batch_size: int = 50):
    """The clean packed sequences ``[N, L]`` of the records (their reports and images encoded ``batch_size`` at a
    time), on the pipeline's device: what infill masks."""
    import torch

    sequences = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        text_ids, _ = pipe.encode_reports([r.report for r in chunk])
        codes = pipe.encode_images([r.image for r in chunk])
        sequences.append(pipe.layout.pack(text_ids.to(pipe.device), codes.to(pipe.device)))
    return torch.cat(sequences)


def infill_options(pipe, *, fraction: float = 0.15, seed: int = 0) -> dict:
    """The `medim.metrics.infill` options `Evaluator.infill` runs the pipeline's denoiser with: its training noise
    schedule, and reading what the pipeline reads (`pipe.model_input`)."""
    return {
        "fraction": fraction,
        "schedule": pipe.noise_schedule_name,
        "seed": seed,
        "model_input": pipe.model_input,
    }


def infill_as_evaluated(pipe, sequences, modality: str = "text", *, fraction: float = 0.15, seed: int = 0):
    """`medim.metrics.infill.infill_predictions` of the pipeline's denoiser with the evaluation's options (the
    same masks as `Evaluator.infill` for the same sequences and seed)."""
    from medim.metrics.infill import infill_predictions

    return infill_predictions(
        pipe.model, sequences, modality, **infill_options(pipe, fraction=fraction, seed=seed)
    )


# ---------------------------------------------------------------------------------------------------------
# Batched generation
# ---------------------------------------------------------------------------------------------------------


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sample", file=sys.stderr, disable=not enabled)


def generate_images(
    pipe, reports: Sequence[str], *, batch_size: int = 16, seed: int = 0, progress: bool = True, **sampler
) -> list[Image.Image]:
    """report→image for N reports, ``batch_size`` per sampler call (seed ``seed + batch index``)."""
    images: list[Image.Image] = []
    with _progress(len(reports), "report→image", progress) as bar:
        for batch, start in enumerate(range(0, len(reports), batch_size)):
            chunk = list(reports[start : start + batch_size])
            images += pipe.run("report2image", report=chunk, seed=seed + batch, **sampler).images
            bar.update(len(chunk))
    return images


def generate_reports(
    pipe,
    images: Sequence[Image.Image],
    *,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
    **sampler,
) -> list[str]:
    """image→report for N images, ``batch_size`` per sampler call (seed ``seed + batch index``)."""
    reports: list[str] = []
    with _progress(len(images), "image→report", progress) as bar:
        for batch, start in enumerate(range(0, len(images), batch_size)):
            chunk = list(images[start : start + batch_size])
            reports += pipe.run("image2report", image=chunk, seed=seed + batch, **sampler).reports
            bar.update(len(chunk))
    return reports


def generate_pairs(
    pipe,
    count: int,
    *,
    batch_size: int = 16,
    seed: int = 0,
    prompt: str | None = None,
    progress: bool = True,
    **sampler,
) -> tuple[list[Image.Image], list[str]]:
    """``count`` unconditional (or prompted) image–report pairs, ``batch_size`` per sampler call."""
    images: list[Image.Image] = []
    reports: list[str] = []
    with _progress(count, "pair", progress) as bar:
        for batch, start in enumerate(range(0, count, batch_size)):
            size = min(batch_size, count - start)
            result = pipe.run("pair", prompt=prompt, num_samples=size, seed=seed + batch, **sampler)
            images += result.images
            reports += result.reports
            bar.update(size)
    return images, reports


# ---------------------------------------------------------------------------------------------------------
# The evaluator
# ---------------------------------------------------------------------------------------------------------


def _by_domain(domains: Sequence[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index, domain in enumerate(domains):
        groups.setdefault(domain, []).append(index)
    return dict(sorted(groups.items()))


class Evaluator:
    """Runs the configured tasks for one pipeline over a list of records and collects metrics.

    Args:
        pipe: a :class:`medim.pipeline.MeDiMPipeline`.
        records: the evaluation pairs (:class:`PairRecord`), e.g. the first ``limit`` of a test split.
        judge: a :class:`medim.metrics.judge.ConsistencyJudge` (None: consistency and domain FD are skipped).
        inception: a :class:`medim.metrics.images.InceptionNetwork` (None: FID/IS are skipped).
        vlm: a :class:`medim.metrics.consistency.VLMJudge` (None: skipped).
        labeler: ``labeler(text, domain) -> {finding: 1/0/-1}``; default the rule-based labeler.
        samples_dir: where generated images/reports are written (None: not written).
    """

    def __init__(
        self,
        pipe,
        records: Sequence[PairRecord],
        settings: EvaluationSettings,
        *,
        judge=None,
        inception=None,
        vlm=None,
        labeler: Callable | None = None,
        samples_dir: Path | None = None,
        progress: bool = True,
    ):
        if not records:
            raise ValueError("no evaluation records")
        self.pipe = pipe
        self.records = list(records)
        self.settings = settings
        self.judge = judge
        self.inception = inception
        self.vlm = vlm
        if labeler is None:
            from medim.metrics.labeler import label_report as labeler
        self.labeler = labeler
        self.samples_dir = samples_dir
        self.progress = progress
        self.skipped: list[str] = []
        self.image_size = pipe.config.image_size
        self.domains = [record.domain for record in self.records]
        self.groups = _by_domain(self.domains)
        self._reference_uint8 = None
        self.samples: dict[str, Any] = {}

    # ---- helpers ---------------------------------------------------------------------------------------
    def _skip(self, message: str) -> dict:
        if message not in self.skipped:
            self.skipped.append(message)
        return {"skipped": message}

    def _uint8(self, images: Sequence[Image.Image]):
        from medim.metrics.images import images_to_uint8

        return images_to_uint8(list(images), size=self.image_size)

    def reference_uint8(self):
        if self._reference_uint8 is None:
            self._reference_uint8 = self._uint8([record.image for record in self.records])
        return self._reference_uint8

    def _domain_fd(self, generated_uint8, generated_rows: list[int], domain: str) -> dict:
        from medim.metrics.images import frechet_distance

        if self.judge is None:
            return self._skip("domain FD skipped: no consistency judge (pass --judge DIR)")
        real = self.reference_uint8()[self.groups.get(domain, [])]
        if len(real) < 2 or len(generated_rows) < 2:
            return {
                "skipped": f"needs >= 2 reference and generated {domain} images (have {len(real)}, "
                f"{len(generated_rows)})"
            }
        return frechet_distance(real, generated_uint8[generated_rows], self.judge.feature_extractor())

    def _inception(self, generated_uint8, generated_rows: list[int], domain: str) -> dict:
        from medim.metrics.images import INCEPTION_UNAVAILABLE, inception_metrics

        if self.inception is None:
            self._skip(INCEPTION_UNAVAILABLE)
            return {"fid": {"skipped": INCEPTION_UNAVAILABLE}, "is": {"skipped": INCEPTION_UNAVAILABLE}}
        real = self.reference_uint8()[self.groups.get(domain, [])]
        if len(real) < 2 or len(generated_rows) < 2:
            message = f"needs >= 2 reference and generated {domain} images"
            return {"fid": {"skipped": message}, "is": {"skipped": message}}
        return inception_metrics(real, generated_uint8[generated_rows], self.inception)

    def _consistency(self, images, reports, domains) -> dict:
        from medim.metrics.consistency import judge_consistency

        if self.judge is None:
            message = "judge consistency skipped: no consistency judge (pass --judge DIR)"
            self._skip(message)
            return {domain: {"skipped": message} for domain in set(domains)}
        return judge_consistency(self.judge, images, reports, domains=domains, labeler=self.labeler)

    def _chance_consistency(self, images, reports, repeats: int = 5) -> dict:
        """Judge consistency of the images with *another* report of the same domain (seeded permutations within
        each domain, mean of ``repeats``): the score of images that ignore their report."""
        if self.judge is None or min(len(rows) for rows in self.groups.values()) < 2:
            return {}
        rng = np.random.default_rng(self.settings.seed)
        keys = ("f1_macro", "f1_micro", "agreement", "exact_match")
        sums = {domain: dict.fromkeys(keys, 0.0) for domain in self.groups}
        for _ in range(repeats):
            shuffled = list(reports)
            for rows in self.groups.values():
                for row, other in zip(rows, rng.permutation(rows)):
                    shuffled[row] = reports[other]
            scores = self._consistency(images, shuffled, self.domains)
            for domain in self.groups:
                for key in keys:
                    sums[domain][key] += scores[domain][key]
        return {
            domain: {key: value / repeats for key, value in values.items()} | {"repeats": repeats}
            for domain, values in sums.items()
        }

    def infill(self, fraction: float = 0.15) -> dict:
        """15 %-masked report and image infill accuracy on the evaluation pairs (`medim.metrics.infill`): one
        denoiser pass per batch, no sampling, so it reads what the model learned without the sampler's noise."""
        from medim.metrics.infill import infill_accuracy

        pipe, rows = self.pipe, {}
        sequences = pack_records(pipe, self.records, self.settings.batch_size)
        options = infill_options(pipe, fraction=fraction, seed=self.settings.seed)
        for modality in ("text", "image"):
            overall = infill_accuracy(pipe.model, sequences, modality, **options)
            per_domain = {
                domain: infill_accuracy(pipe.model, sequences[indices], modality, **options)["accuracy"]
                for domain, indices in self.groups.items()
            }
            rows["report" if modality == "text" else "image"] = {**overall, "per_domain": per_domain}
        return {"fraction": fraction, **rows}

    def _sampler(self, **extra) -> dict:
        return {**self.settings.sampler, **extra}

    # ---- tasks -----------------------------------------------------------------------------------------
    def report2image(self) -> dict:
        reports = [record.report for record in self.records]
        started = time.perf_counter()
        images = generate_images(
            self.pipe,
            reports,
            batch_size=self.settings.batch_size,
            seed=self.settings.seed,
            progress=self.progress,
            **self._sampler(),
        )
        seconds = time.perf_counter() - started
        self.samples["report2image"] = images
        generated = self._uint8(images)
        consistency = self._consistency(images, reports, self.domains)
        reference = self._consistency([r.image for r in self.records], reports, self.domains)
        chance = self._chance_consistency(images, reports)
        per_domain = {}
        for domain, rows in self.groups.items():
            per_domain[domain] = {
                "n": len(rows),
                "domain_fd": self._domain_fd(generated, rows, domain),
                **self._inception(generated, rows, domain),
                "consistency": consistency.get(domain, {}),
                "reference_consistency": reference.get(domain, {}),
                "chance_consistency": chance.get(domain),
            }
        if self.samples_dir is not None:
            folder = self.samples_dir / "report2image"
            folder.mkdir(parents=True, exist_ok=True)
            for record, image in zip(self.records, images):
                image.save(folder / f"{_safe(record.id)}.png")
        return {
            "n": len(images),
            "seconds_per_sample": seconds / len(images),
            "per_domain": per_domain,
            "consistency_overall": consistency.get("overall"),
        }

    def image2report(self) -> dict:
        from medim.metrics.clinical import chance_clinical_efficacy, clinical_efficacy, domain_findings
        from medim.metrics.report_form import report_form
        from medim.metrics.text import report_metrics

        started = time.perf_counter()
        reports = generate_reports(
            self.pipe,
            [r.image for r in self.records],
            batch_size=self.settings.batch_size,
            seed=self.settings.seed,
            progress=self.progress,
            **self._sampler(),
        )
        seconds = time.perf_counter() - started
        self.samples["image2report"] = reports
        consistency = self._consistency([r.image for r in self.records], reports, self.domains)
        per_domain = {}
        for domain, rows in self.groups.items():
            hypotheses = [reports[i] for i in rows]
            references = [self.records[i].report for i in rows]
            findings = domain_findings(domain)
            generated_labels = [self.labeler(text, domain) for text in hypotheses]
            reference_labels = [self.labeler(text, domain) for text in references]
            entry = {
                "n": len(rows),
                "text": report_metrics(hypotheses, references, families=self.settings.text_metrics),
                "ce": clinical_efficacy(generated_labels, reference_labels, findings),
                "ce_chance": chance_clinical_efficacy(reference_labels, findings, seed=self.settings.seed)
                if len(rows) > 1
                else None,
                "consistency": consistency.get(domain, {}),
            }
            truth = [self.records[i].labels for i in rows]
            if all(labels is not None for labels in truth):
                entry["ce_vs_labels"] = clinical_efficacy(generated_labels, truth, findings)
            if self.settings.report_form:
                entry["form"] = report_form(hypotheses, [domain] * len(hypotheses))[domain]
            per_domain[domain] = entry
        if self.samples_dir is not None:
            self.samples_dir.mkdir(parents=True, exist_ok=True)
            with open(self.samples_dir / "image2report.jsonl", "w", encoding="utf-8") as handle:
                for record, report in zip(self.records, reports):
                    handle.write(
                        json.dumps(
                            {
                                "id": record.id,
                                "domain": record.domain,
                                "reference": record.report,
                                "generated": report,
                            }
                        )
                        + "\n"
                    )
        return {
            "n": len(reports),
            "seconds_per_sample": seconds / len(reports),
            "per_domain": per_domain,
            "consistency_overall": consistency.get("overall"),
        }

    def pair(self) -> dict:
        from medim.metrics.consistency import VLM_UNAVAILABLE
        from medim.metrics.labeler import infer_domain

        count = self.settings.pair_samples or len(self.records)
        started = time.perf_counter()
        images, reports = generate_pairs(
            self.pipe,
            count,
            batch_size=self.settings.batch_size,
            seed=self.settings.seed,
            progress=self.progress,
            **self._sampler(),
        )
        seconds = time.perf_counter() - started
        self.samples["pair"] = (images, reports)
        domains = [infer_domain(report) for report in reports]
        generated = self._uint8(images)
        consistency = self._consistency(images, reports, domains)
        vlm_scores = self.vlm.score(images, reports, domains) if self.vlm is not None else None
        if self.vlm is None:
            self._skip(VLM_UNAVAILABLE)
        per_domain = {}
        for domain, rows in _by_domain(domains).items():
            entry = {
                "n": len(rows),
                "consistency": consistency.get(domain, {}),
                "domain_fd": self._domain_fd(generated, rows, domain),
                **self._inception(generated, rows, domain),
            }
            if vlm_scores is not None:
                entry["vlm"] = {
                    "mean_p_yes": float(np.mean([vlm_scores[i] for i in rows])),
                    "judge": self.vlm.describe(),
                }
            per_domain[domain] = entry
        if self.samples_dir is not None:
            folder = self.samples_dir / "pair"
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / "pairs.jsonl", "w", encoding="utf-8") as handle:
                for index, (image, report, domain) in enumerate(zip(images, reports, domains)):
                    image.save(folder / f"{index:05d}.png")
                    handle.write(
                        json.dumps(
                            {
                                "id": f"{index:05d}",
                                "image": f"{index:05d}.png",
                                "report": report,
                                "domain": domain,
                            }
                        )
                        + "\n"
                    )
        return {
            "n": count,
            "seconds_per_sample": seconds / count,
            "domain_counts": dict(Counter(domains)),
            "per_domain": per_domain,
            "consistency_overall": consistency.get("overall"),
        }

    def steps_sweep(self) -> list[dict]:
        """Domain FD (report→image) and CE-F1 micro (image→report) for each K in ``settings.steps_sweep``."""
        from medim.metrics.clinical import clinical_efficacy, domain_findings

        sweep = []
        reports = [record.report for record in self.records]
        for steps in self.settings.steps_sweep:
            sampler = self._sampler(steps=steps)
            started = time.perf_counter()
            images = generate_images(
                self.pipe,
                reports,
                batch_size=self.settings.batch_size,
                seed=self.settings.seed,
                progress=self.progress,
                **sampler,
            )
            image_seconds = time.perf_counter() - started
            generated = self._uint8(images)
            started = time.perf_counter()
            texts = generate_reports(
                self.pipe,
                [r.image for r in self.records],
                batch_size=self.settings.batch_size,
                seed=self.settings.seed,
                progress=self.progress,
                **sampler,
            )
            report_seconds = time.perf_counter() - started
            item = {
                "steps": steps,
                "domain_fd": {},
                "ce_f1": {},
                "seconds_per_sample": {
                    "report2image": image_seconds / len(images),
                    "image2report": report_seconds / len(texts),
                },
            }
            for domain, rows in self.groups.items():
                fd = self._domain_fd(generated, rows, domain)
                item["domain_fd"][domain] = fd.get("value")
                ce = clinical_efficacy(
                    [self.labeler(texts[i], domain) for i in rows],
                    [self.labeler(reports[i], domain) for i in rows],
                    domain_findings(domain),
                )
                item["ce_f1"][domain] = ce["f1_micro"]
            sweep.append(item)
        return sweep

    # ---- everything ------------------------------------------------------------------------------------
    def run(self) -> dict:
        pipe = self.pipe
        metrics: dict[str, Any] = {
            "checkpoint": {
                "path": pipe.info.get("path"),
                "sha256": pipe.checkpoint_hash,
                "kind": pipe.info.get("kind"),
                "description": pipe.info.get("description"),
                "image_size": self.image_size,
            },
            "data": {"n_records": len(self.records), "domains": {d: len(r) for d, r in self.groups.items()}},
            "settings": {
                **asdict(self.settings),
                "sampler_config": {**pipe.sampler_config.to_dict(), **self.settings.sampler},
                # what the denoiser reads for report ids its training never held (MeDiMPipeline.model_input)
                "unknown_words": pipe.unknown_word_reading,
            },
            "feature_extractors": {
                "domain_fd": self.judge.describe() if self.judge is not None else None,
                "inception": self.inception.describe() if self.inception is not None else None,
            },
        }
        if self.judge is not None:
            heldout = self.judge.record.get("heldout", {})
            metrics["judge"] = {
                **self.judge.describe(),
                "heldout": {
                    k: heldout.get(k)
                    for k in ("split", "macro_accuracy", "macro_auc", "macro_f1", "domain_accuracy", "n")
                },
            }
        metrics["infill"] = self.infill()
        for task in self.settings.tasks:
            metrics[task] = getattr(self, task)()
        if self.settings.steps_sweep:
            metrics["steps_sweep"] = self.steps_sweep()
        metrics["skipped"] = list(self.skipped)
        return metrics


def finding_scores(
    pipe,
    records,
    judge,
    *,
    sampler: dict | None = None,
    seed: int = 0,
    batch_size: int = 50,
    tasks: tuple[str, ...] = ("report2image", "image2report"),
    report_form: bool = False,
) -> dict:
    """The two findings proxies per domain, each beside its chance level: image→report CE macro-F1
    (``ce_f1/<domain>``, ``ce_f1_chance/<domain>``) and report→image judge macro-F1 (``judge_f1/<domain>``,
    ``judge_f1_chance/<domain>``); a chance level that cannot be computed (one pair in a domain) is None.
    ``tasks`` limits the scores to one direction (the other's keys are then absent). ``report_form`` adds the
    generated reports' well-formed sentence and report shares (``form_sentences/<domain>``,
    ``form_reports/<domain>``; synthetic corpus only, `medim.metrics.report_form`)."""
    unknown = set(tasks) - {"report2image", "image2report"}
    if unknown or not tasks:
        raise ValueError(f"tasks must be report2image and/or image2report, got {tasks!r}")
    settings = EvaluationSettings(
        tasks=tuple(tasks),
        batch_size=batch_size,
        seed=seed,
        text_metrics=("nltk",),
        sampler=sampler or {},
        report_form=report_form,
    )
    evaluator = Evaluator(pipe, records, settings, judge=judge, progress=False)
    scores = {}
    if "image2report" in tasks:
        for domain, entry in evaluator.image2report()["per_domain"].items():
            scores[f"ce_f1/{domain}"] = entry["ce"]["f1_macro"]
            scores[f"ce_f1_chance/{domain}"] = (entry.get("ce_chance") or {}).get("f1_macro")
            if report_form:
                scores[f"form_sentences/{domain}"] = entry["form"]["sentences"]
                scores[f"form_reports/{domain}"] = entry["form"]["reports"]
    if "report2image" in tasks:
        for domain, entry in evaluator.report2image()["per_domain"].items():
            scores[f"judge_f1/{domain}"] = entry["consistency"].get("f1_macro")
            scores[f"judge_f1_chance/{domain}"] = (entry.get("chance_consistency") or {}).get("f1_macro")
    return scores


def _safe(identifier: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in identifier)


# ---------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------


def write_outputs(metrics: dict, evaluator: Evaluator, out: str | Path) -> dict[str, Path]:
    """Write metrics.json, report.md and figures/*.png into ``out``; returns their paths."""
    from medim.metrics import figures
    from medim.metrics.tables import markdown_report

    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    records = evaluator.records
    samples = evaluator.samples
    if "report2image" in samples:
        order = [i for rows in evaluator.groups.values() for i in rows[:4]]
        written["report2image_grid"] = figures.sample_grid(
            [records[i].image for i in order],
            [samples["report2image"][i] for i in order],
            out / "figures" / "report2image_samples.png",
            captions=[records[i].report for i in order],
            title="report→image: reference (top) vs generated",
        )
    if "pair" in samples:
        images, reports = samples["pair"]
        written["pair_grid"] = figures.pair_grid(
            images, reports, out / "figures" / "pair_samples.png", title="unconditional image–report pairs"
        )
    bars = {}
    for task in ("report2image", "image2report", "pair"):
        for domain, entry in metrics.get(task, {}).get("per_domain", {}).items():
            if "per_finding" in entry.get("consistency", {}):
                bars.setdefault(task, {})[domain] = entry["consistency"]["per_finding"]
        if task == "report2image":
            for domain, entry in metrics.get(task, {}).get("per_domain", {}).items():
                if "per_finding" in entry.get("reference_consistency", {}):
                    bars.setdefault("reference images", {})[domain] = entry["reference_consistency"][
                        "per_finding"
                    ]
    if bars:
        written["consistency_bars"] = figures.consistency_bars(
            bars, out / "figures" / "consistency_per_finding.png"
        )
    if metrics.get("steps_sweep"):
        written["steps_curve"] = figures.steps_curve(
            metrics["steps_sweep"], out / "figures" / "steps_curve.png"
        )
    metrics["figures"] = {name: str(path.relative_to(out)) for name, path in written.items()}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n")
    (out / "report.md").write_text(
        markdown_report(metrics, image2report_samples=samples.get("image2report"), records=records)
    )
    written["metrics"] = out / "metrics.json"
    written["report"] = out / "report.md"
    return written


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
