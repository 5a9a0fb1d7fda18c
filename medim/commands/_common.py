"""Shared command-line helpers: threads, device and sampler options."""

from __future__ import annotations

import argparse
import os

import torch

from medim.config import CONFIDENCES, SamplerConfig
from medim.reports import UNKNOWN_WORD_READINGS


def set_threads(threads: int | None) -> None:
    """Explicit intra-op threads: defaults to the cores this process may use (2 on the reference CPU host)."""
    count = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, count))


def add_sampler_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling (defaults come from the checkpoint's sampler_config.json)")
    group.add_argument("--steps", type=int, help="MaskGIT steps K")
    group.add_argument("--temperature", type=float)
    group.add_argument("--guidance-scale", type=float, help="classifier-free guidance scale (0 = off)")
    group.add_argument("--schedule", choices=["arccos", "cosine", "linear"], help="unmasking schedule")
    group.add_argument("--top-k", type=int)
    group.add_argument("--top-p", type=float)
    group.add_argument(
        "--confidence",
        choices=CONFIDENCES,
        help="rank positions by the drawn token or the most likely one",
    )
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--num-samples", type=int, default=1)


def add_unknown_words_argument(parser: argparse.ArgumentParser) -> None:
    """How the pipeline reads report ids no training report held (`MeDiMPipeline.unknown_words`)."""
    parser.add_argument(
        "--unknown-words",
        choices=UNKNOWN_WORD_READINGS,
        default="mask",
        help="read report ids no training report held as [MASK] (default) or as written",
    )


def sampler_overrides(args: argparse.Namespace) -> dict:
    return {
        "steps": args.steps,
        "temperature": args.temperature,
        "guidance_scale": args.guidance_scale,
        "schedule": args.schedule,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "confidence": args.confidence,
    }


def describe_sampler(config: SamplerConfig) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.to_dict().items())
