"""Typed configuration for MeDiM: model, diffusion and sampler settings, validated on construction.

Every checkpoint stores these as JSON, so loading never depends on the code's defaults matching the ones used
at training time.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# tasks a sampler_config.json may give their own step count (medim.sampling.TASKS less inpainting)
SAMPLED_TASKS = ("report2image", "image2report", "pair")
# The SamplerConfig fields a task may set for itself (`SamplerConfig.task_settings`).
PER_TASK_FIELDS = (
    "steps",
    "schedule",
    "temperature",
    "confidence_noise",
    "confidence",
    "top_k",
    "top_p",
    "guidance_scale",
    "guidance_schedule",
)

TIMESTEP_CONDITIONING = ("adaln", "additive", "off")
ADALN_GATES = ("one_plus", "dit")
TIMESTEP_INPUTS = ("scaled_t", "loglinear_sigma")
ADALN_INPUT_ACTIVATIONS = ("silu", "none")
SCHEDULES = ("loglinear", "cosine")
UNMASK_SCHEDULES = ("arccos", "cosine", "linear")
GUIDANCE_SCHEDULES = ("constant", "linear")
# what a step ranks its masked positions by (SamplerConfig.confidence)
CONFIDENCES = ("sampled", "max")
SUPPORTED_BACKBONES = ("llama", "gemma", "qwen2")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {choices}")


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


class _JsonConfig:
    """Mixin: round-trip a dataclass through JSON, ignoring unknown keys from newer checkpoints."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path):
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class MeDiMConfig(_JsonConfig):
    """The diffusion model: backbone, shared vocabulary layout and the paper's adaptations.

    `backbone` is a Hugging Face config dict (it must contain `model_type`); `backbone_path` optionally names
    pretrained weights (local directory or hub id) that the backbone was initialised from.

    The last group of fields reproduces checkpoints trained with other conventions (the official MeDiM release):
    `timestep_input` picks what the sinusoid embeds ("scaled_t": 1000 t; "loglinear_sigma": -log(1 - t), the
    log-linear total noise, t capped at 1 - 1e-3), `adaln_input_activation` whether SiLU precedes the AdaLN
    linear, `logits_offsets` (image, text) reads the logits of position p from hidden state p + offset,
    `text_prefix_ids` / `text_suffix_ids` are fixed tokens around the report, `attend_to_pad=False` removes pad
    positions from the attention keys, and `suppressed_text_ids` are text ids never predicted.
    """

    backbone: dict[str, Any]
    text_vocab_size: int
    codebook_size: int
    image_grid: tuple[int, int] = (8, 8)
    max_text_tokens: int = 72
    backbone_path: str | None = None
    causal_attention: bool = False
    timestep_conditioning: str = "adaln"
    adaln_gate: str = "one_plus"
    timestep_frequency_dim: int = 256
    attn_implementation: str = "sdpa"
    image_size: int = 64
    domains: tuple[str, ...] = ("chest_xray", "pathology")
    timestep_input: str = "scaled_t"
    adaln_input_activation: str = "silu"
    logits_offsets: tuple[int, int] = (0, 0)
    text_prefix_ids: tuple[int, ...] = ()
    text_suffix_ids: tuple[int, ...] = ()
    attend_to_pad: bool = True
    suppressed_text_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.image_grid = tuple(int(v) for v in self.image_grid)  # JSON gives lists
        self.domains = tuple(self.domains)
        self.logits_offsets = tuple(int(v) for v in self.logits_offsets)
        self.text_prefix_ids = tuple(int(v) for v in self.text_prefix_ids)
        self.text_suffix_ids = tuple(int(v) for v in self.text_suffix_ids)
        self.suppressed_text_ids = tuple(int(v) for v in self.suppressed_text_ids)
        _check_choice("timestep_input", self.timestep_input, TIMESTEP_INPUTS)
        _check_choice("adaln_input_activation", self.adaln_input_activation, ADALN_INPUT_ACTIVATIONS)
        if len(self.logits_offsets) != 2 or any(abs(v) > 1 for v in self.logits_offsets):
            raise ValueError(
                f"logits_offsets must be two ints in [-1, 1] (image, text), got {self.logits_offsets!r}"
            )
        model_type = self.backbone.get("model_type")
        _check_choice("backbone.model_type", model_type, SUPPORTED_BACKBONES)
        _check_choice("timestep_conditioning", self.timestep_conditioning, TIMESTEP_CONDITIONING)
        _check_choice("adaln_gate", self.adaln_gate, ADALN_GATES)
        _check_choice("attn_implementation", self.attn_implementation, ("eager", "sdpa", "flash_attention_2"))
        for name in (
            "text_vocab_size",
            "codebook_size",
            "max_text_tokens",
            "timestep_frequency_dim",
            "image_size",
        ):
            _check_positive(name, getattr(self, name))
        if len(self.image_grid) != 2 or min(self.image_grid) <= 0:
            raise ValueError(f"image_grid must be two positive ints, got {self.image_grid!r}")
        if self.timestep_frequency_dim % 2:
            raise ValueError(f"timestep_frequency_dim must be even, got {self.timestep_frequency_dim}")

    @property
    def model_type(self) -> str:
        return self.backbone["model_type"]


@dataclass
class DiffusionConfig(_JsonConfig):
    """Forward process and training objective (eq. 3–6 of the paper).

    `task_weights` gives how often a training sequence is masked jointly (both modalities at the same t),
    image-only (report→image) or text-only (image→report); `condition_dropout` replaces the clean condition with
    [MASK] so that classifier-free guidance has an unconditional model to contrast with; `prompt_keep_prob` keeps
    the first report sentence unmasked in joint steps (the prompted-pair trick); `unknown_word_rate` replaces
    each report token the model reads (kept, not a target) with the text tokenizer's `<unk>` at that rate, so the
    model learns to read around words it cannot read, and a pipeline reads every report id its training never
    showed it as `<unk>` (word dropout).
    """

    schedule: str = "loglinear"
    eps: float = 1e-3
    antithetic: bool = True
    image_loss_weight: float = 1.0
    text_loss_weight: float = 1.0
    task_weights: dict[str, float] = field(
        default_factory=lambda: {"joint": 0.4, "report2image": 0.3, "image2report": 0.3}
    )
    condition_dropout: float = 0.1
    prompt_keep_prob: float = 0.1
    unknown_word_rate: float = 0.0
    # "elbo": eq. 6 as written, w(t) times the masked NLL sum over the task's maskable positions. "masked_mean":
    # the masked NLL averaged over the positions actually masked. Both estimate the same per-token quantity
    # (E[#masked] = (1 - alpha_t) * positions), but the second divides by the realised count, which removes
    # the 1/t spikes of sequences with one or two masked tokens (lower gradient variance for short runs).
    loss_normalisation: str = "elbo"

    def __post_init__(self) -> None:
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("loss_normalisation", self.loss_normalisation, ("elbo", "masked_mean"))
        if not 0 < self.eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {self.eps}")
        for name in ("image_loss_weight", "text_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        unknown = set(self.task_weights) - {"joint", "report2image", "image2report"}
        if unknown:
            raise ValueError(f"unknown task_weights keys {sorted(unknown)}")
        if any(v < 0 for v in self.task_weights.values()) or sum(self.task_weights.values()) <= 0:
            raise ValueError(f"task_weights must be >= 0 with a positive sum, got {self.task_weights}")
        for name in ("condition_dropout", "prompt_keep_prob", "unknown_word_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass
class SamplerConfig(_JsonConfig):
    """MaskGIT sampling settings (Chang et al. 2022) with classifier-free guidance."""

    steps: int = 12
    schedule: str = "arccos"
    temperature: float = 1.0
    confidence_noise: float = 1.0
    # What ranks a masked position for commit: "sampled", the probability of the token drawn there (MaskGIT), or
    # "max", the probability of its most likely token, which does not depend on the draw. Ranking by the draw
    # commits a position sooner when it drew a low-entropy mode: with nothing given, "FINDINGS" (p 0.45) is
    # committed ahead of the many ways a pathology report begins, so unconditional pairs lean to chest films.
    confidence: str = "sampled"
    top_k: int | None = None
    top_p: float | None = None
    guidance_scale: float = 0.0
    guidance_schedule: str = "constant"
    # A report ends at its first <pad>: padding is only ever committed after the last committed word, and once
    # a <pad> is committed every masked report position after it becomes <pad> in the same step. Every view of a
    # sample (stream, commit view, text box, bundle, CLI) then shows the same text.
    pad_suffix: bool = True
    # With an image tokenizer whose codes fall into groups (a routed tokenizer: grey codes, colour codes), draw
    # each image from one group: the group holding most of its committed codes, or at the first step the group
    # with the most probability mass over its masked positions. Without it a chest film can hold a few colour codes.
    one_code_group: bool = False
    # Steps for one task instead of `steps` ({"image2report": 24}): the directions differ in how much each step
    # buys. A call's explicit `steps` still wins.
    task_steps: dict[str, int] = field(default_factory=dict)
    # Other settings for one task ({"image2report": {"confidence_noise": 0.0, "temperature": 0.7}}): a report
    # of ~40 words reads as one only when few words are committed per step, most confident first, while the
    # image side draws its findings best with the shared settings. A call's explicit values still win.
    task_settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 1024:
            raise ValueError(f"steps must be in [1, 1024], got {self.steps}")
        for task, steps in self.task_steps.items():
            if task not in SAMPLED_TASKS:
                raise ValueError(f"task_steps has an unknown task {task!r}; tasks: {SAMPLED_TASKS}")
            if not isinstance(steps, int) or not 1 <= steps <= 1024:
                raise ValueError(f"task_steps[{task!r}] must be an integer in [1, 1024], got {steps!r}")
        for task, settings in self.task_settings.items():
            if task not in SAMPLED_TASKS:
                raise ValueError(f"task_settings has an unknown task {task!r}; tasks: {SAMPLED_TASKS}")
            unknown = set(settings) - set(PER_TASK_FIELDS)
            if unknown:
                raise ValueError(
                    f"task_settings[{task!r}] has {sorted(unknown)}; a task may set {PER_TASK_FIELDS}"
                )
            if "steps" in settings and task in self.task_steps:
                raise ValueError(f"task {task!r} sets its steps twice (task_steps and task_settings)")
            try:  # the values must make a valid configuration on their own
                dataclasses.replace(self, task_steps={}, task_settings={}, **settings)
            except (TypeError, ValueError) as error:
                raise ValueError(f"task_settings[{task!r}]: {error}") from error
        _check_choice("schedule", self.schedule, UNMASK_SCHEDULES)
        _check_choice("guidance_schedule", self.guidance_schedule, GUIDANCE_SCHEDULES)
        _check_choice("confidence", self.confidence, CONFIDENCES)
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.confidence_noise < 0:
            raise ValueError(f"confidence_noise must be >= 0, got {self.confidence_noise}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] or None, got {self.top_p}")
        if self.guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")

    def for_task(self, task: str) -> SamplerConfig:
        """These settings with the task's own step count (``task_steps``) and other settings (``task_settings``),
        where it has them; validated like any SamplerConfig."""
        own = dict(self.task_settings.get(task, {}))
        if task in self.task_steps:
            own["steps"] = self.task_steps[task]
        own = {name: value for name, value in own.items() if getattr(self, name) != value}
        return dataclasses.replace(self, **own) if own else self
