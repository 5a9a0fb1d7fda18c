"""Image–report consistency: does an image show the findings its report states?

Two judges:

- :func:`judge_consistency` — automatic and offline for the synthetic domains: the consistency judge
  (:mod:`medim.metrics.judge`) reads the findings off each image, the labeler (:mod:`medim.metrics.labeler`)
  reads them off the report, and the two label sets are compared per finding (agreement, precision/recall/F1
  with the report as reference, exact match) plus whether the judge sees the report's domain at all.
- :class:`VLMJudge` — a vision–language model (e.g. Qwen2-VL, as in the paper) asked whether the report
  describes the image; the score is P("yes") from its next-token logits. It loads only from a local path
  (no downloads) and is skipped with a message when no model is given or it cannot be loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from medim.metrics.clinical import _scores, labels_to_matrix

__all__ = ["VLM_UNAVAILABLE", "VLMJudge", "judge_consistency", "load_vlm_judge", "yes_probability"]

VLM_UNAVAILABLE = (
    "VLM judge skipped: pass --vlm-judge PATH, a local Hugging Face image-text-to-text model such as Qwen2-VL "
    "(nothing is downloaded at run time)."
)

Labeler = Callable[[str, str | None], Mapping[str, int]]


def _default_labeler() -> tuple[Labeler, Callable[[str], str], dict[str, tuple[str, ...]]]:
    from medim.metrics import labeler

    findings = {"chest_xray": tuple(labeler.CHEST_FINDINGS), "pathology": tuple(labeler.PATHOLOGY_FINDINGS)}
    return labeler.label_report, labeler.infer_domain, findings


def judge_consistency(
    judge,
    images: Sequence[Image.Image] | torch.Tensor,
    reports: Sequence[str],
    *,
    domains: Sequence[str] | None = None,
    labeler: Labeler | None = None,
    threshold: float = 0.5,
) -> dict:
    """Compare the judge's reading of each image with the labeler's reading of its report.

    Args:
        judge: a :class:`medim.metrics.judge.ConsistencyJudge`.
        images: N images (PIL list or uint8 [N, 3, H, W]).
        reports: the N reports that go with them.
        domains: each pair's domain; default: inferred from the report (``labeler.infer_domain``).
        labeler: ``labeler(text, domain) -> {finding: 1/0/-1}``; default :func:`medim.metrics.labeler.label_report`.
        threshold: judge probability above which a finding counts as shown.

    Returns:
        ``{domain: {"n", "agreement", "f1_micro", "f1_macro", "precision_micro", "recall_micro", "exact_match",
        "domain_agreement", "findings", "per_finding"}, "overall": {"n", "agreement", "f1_micro",
        "exact_match", "domain_agreement"}}``; scores use the findings both the judge and the labeler know.
    """
    if len(images) != len(reports):
        raise ValueError(f"{len(images)} images but {len(reports)} reports")
    if len(reports) == 0:
        raise ValueError("no image–report pairs to judge")
    default_labeler, infer_domain, labeler_findings = _default_labeler()
    labeler = labeler or default_labeler
    domains = list(domains) if domains is not None else [infer_domain(report) for report in reports]
    if len(domains) != len(reports):
        raise ValueError(f"{len(domains)} domains for {len(reports)} reports")
    unknown = {d for d in domains if d not in judge.config.findings}
    if unknown:
        raise ValueError(f"the judge does not know the domain(s) {sorted(unknown)} ({judge.config.domains})")
    image_labels, seen_domains = judge.read_labels(images, domains, threshold=threshold)
    report_labels = [labeler(report, domain) for report, domain in zip(reports, domains)]
    result: dict = {}
    pooled_predicted, pooled_truth, pooled_exact = [], [], []
    for domain in sorted(set(domains)):
        rows = [i for i, d in enumerate(domains) if d == domain]
        findings = [f for f in judge.config.findings[domain] if f in labeler_findings.get(domain, (f,))]
        if not findings:
            continue
        predicted = labels_to_matrix([image_labels[i] for i in rows], findings)
        truth = labels_to_matrix([report_labels[i] for i in rows], findings)
        scores = _scores(predicted, truth, findings)
        scores["agreement"] = scores.pop("accuracy")
        scores["domain_agreement"] = float(np.mean([seen_domains[i] == domain for i in rows]))
        scores["findings"] = findings
        result[domain] = scores
        pooled_predicted.append(predicted.ravel())
        pooled_truth.append(truth.ravel())
        pooled_exact.extend((predicted == truth).all(axis=1).tolist())
    if pooled_truth:
        predicted, truth = np.concatenate(pooled_predicted), np.concatenate(pooled_truth)
        tp = int(((predicted == 1) & (truth == 1)).sum())
        wrong = int((predicted != truth).sum())
        result["overall"] = {
            "n": len(reports),
            "agreement": float((predicted == truth).mean()),
            "f1_micro": 2 * tp / (2 * tp + wrong) if tp + wrong else 0.0,
            "exact_match": float(np.mean(pooled_exact)),
            "domain_agreement": float(np.mean([s == d for s, d in zip(seen_domains, domains)])),
        }
    return result


# ---------------------------------------------------------------------------------------------------------
# VLM judge
# ---------------------------------------------------------------------------------------------------------

MODALITY = {"chest_xray": "chest X-ray", "pathology": "H&E-stained pathology patch"}
PROMPT = (
    "Here is a {modality} and a report written about it.\nReport: {report}\n"
    "Does the report correctly describe the findings visible in the image? Answer yes or no."
)


def yes_probability(logits: torch.Tensor, yes_ids: Sequence[int], no_ids: Sequence[int]) -> float:
    """P(yes) renormalised over the yes/no answer tokens, from next-token logits [V]."""
    if not yes_ids or not no_ids:
        raise ValueError("need at least one 'yes' and one 'no' token id")
    probabilities = logits.float().softmax(-1)
    yes = float(probabilities[list(yes_ids)].sum())
    no = float(probabilities[list(no_ids)].sum())
    return yes / (yes + no) if yes + no > 0 else 0.5


class VLMJudge:
    """A local Hugging Face vision–language model (``AutoModelForImageTextToText`` + ``AutoProcessor``, e.g.
    Qwen2-VL-7B-Instruct) asked whether a report describes an image. ``score(images, reports, domains)`` ->
    P(yes) per pair in [0, 1]."""

    def __init__(self, model_path: str, device: str | None = None):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model_path = str(model_path)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.processor = AutoProcessor.from_pretrained(self.model_path, local_files_only=True)
        self.model = (
            AutoModelForImageTextToText.from_pretrained(self.model_path, local_files_only=True, dtype=dtype)
            .to(self.device)
            .eval()
        )
        tokenizer = self.processor.tokenizer
        self.yes_ids = sorted({tokenizer.encode(w, add_special_tokens=False)[0] for w in ("yes", "Yes")})
        self.no_ids = sorted({tokenizer.encode(w, add_special_tokens=False)[0] for w in ("no", "No")})

    def describe(self) -> dict:
        return {"name": "vlm-judge", "model": self.model_path, "prompt": PROMPT}

    @torch.no_grad()
    def score(
        self, images: Sequence[Image.Image], reports: Sequence[str], domains: Sequence[str]
    ) -> list[float]:
        if not len(images) == len(reports) == len(domains):
            raise ValueError(f"{len(images)} images, {len(reports)} reports, {len(domains)} domains")
        scores = []
        for image, report, domain in zip(images, reports, domains):
            text = PROMPT.format(modality=MODALITY.get(domain, "medical image"), report=report)
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
            inputs = self.processor(text=[prompt], images=[image.convert("RGB")], return_tensors="pt")
            logits = self.model(**inputs.to(self.device)).logits[0, -1]
            scores.append(yes_probability(logits, self.yes_ids, self.no_ids))
        return scores


def load_vlm_judge(model_path: str | None, device: str | None = None) -> tuple[VLMJudge | None, str | None]:
    """(judge, None) when ``model_path`` loads; (None, reason) when it is not given or cannot be loaded."""
    if not model_path:
        return None, VLM_UNAVAILABLE
    try:
        return VLMJudge(model_path, device), None
    except Exception as error:  # missing files, unsupported architecture, out of memory
        return None, f"VLM judge skipped: could not load {model_path!r} ({type(error).__name__}: {error})"
