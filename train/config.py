"""Typed training configuration loaded from YAML with dotted command-line overrides (`optim.lr=3e-4`)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medim.config import DiffusionConfig, SamplerConfig

DATA_SOURCES = ("synthetic", "manifest", "paired-folder", "mimic-cxr", "pathgen", "iu-xray")
LR_SCHEDULES = ("constant_with_warmup", "cosine", "cosine_with_restarts", "linear")


@dataclass
class DataConfig:
    """Where the image–report pairs come from and how they are sampled."""

    source: str = "synthetic"
    root: str | None = None  # synthetic: generated into <output_dir>/corpus when missing
    synthetic_n: int = 2000
    synthetic_seed: int = 0
    # train / val / test: pair i of a split depends only on (seed, split, i), so a larger n with smaller val and
    # test fractions adds training pairs and keeps the first val / test pairs identical
    synthetic_split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    image_size: int = 64
    max_text_tokens: int = 72
    domain_weights: dict[str, float] = field(default_factory=lambda: {"chest_xray": 0.5, "pathology": 0.5})
    train_split: str = "train"
    val_split: str = "val"
    num_workers: int = 0
    # paired-folder layout: the domain of every pair (`domain`), or for a mixed corpus one sub-folder per domain,
    # root/<folder>/<split>/... (`folder_domains`: {folder: domain})
    domain: str | None = None
    folder_domains: dict[str, str] = field(default_factory=dict)
    # Where the medim stage's batch and mask stream starts (step s draws stream position s + offset). None: after
    # the steps the warm-start source's chain has already trained (0 from scratch), so a warm run sees new
    # batches and masks instead of replaying its source's.
    stream_offset: int | None = None

    def __post_init__(self) -> None:
        if self.source not in DATA_SOURCES:
            raise ValueError(f"data.source={self.source!r} is not one of {DATA_SOURCES}")
        if self.source != "synthetic" and not self.root:
            raise ValueError(f"data.root is required for data.source={self.source!r}")
        if self.image_size < 8 or self.max_text_tokens < 1 or self.synthetic_n < 1:
            raise ValueError(
                f"bad data sizes: image_size={self.image_size}, max_text_tokens={self.max_text_tokens}, "
                f"synthetic_n={self.synthetic_n}"
            )
        if self.stream_offset is not None and self.stream_offset < 0:
            raise ValueError(f"data.stream_offset must be >= 0, got {self.stream_offset}")
        if self.source == "synthetic":
            from medim.data.synthetic import split_sizes

            split_sizes(self.synthetic_n, self.synthetic_split_fractions)  # raises on bad fractions
        if self.source == "paired-folder" and bool(self.domain) == bool(self.folder_domains):
            raise ValueError(
                "data.source=paired-folder needs the pairs' domain: data.domain=chest_xray|pathology for one "
                "folder of pairs, or data.folder_domains={folder: domain} for one sub-folder per domain"
            )
        if not self.domain_weights or any(w < 0 for w in self.domain_weights.values()):
            raise ValueError(f"data.domain_weights must be non-negative, got {self.domain_weights}")


@dataclass
class TokenizerStageConfig:
    path: str | None = None  # use an existing tokenizer (local dir or hub id) instead of training one
    vocab_size: int = 1024
    min_frequency: int = 2


@dataclass
class VQStageConfig:
    path: str | None = None  # use an existing VQ tokenizer instead of training one
    # vq: a trained diffusers VQModel (architecture, steps, options below); patch_kmeans: k-means on
    # kmeans_patch x kmeans_patch RGB patches of the first kmeans_images training images (kmeans_codes centres,
    # kmeans_samples patches, kmeans_iterations Lloyd steps), nothing else learnt (medim/tokenizers/patch_kmeans.py);
    # routed: grey images keep the tokenizer of vq.path (or model.init_from's), colour images get such a patch k-means,
    # fitted on the colour images among the first kmeans_images (medim/tokenizers/routed.py)
    kind: str = "vq"
    kmeans_patch: int = 4
    kmeans_codes: int = 1024
    kmeans_images: int = 3200
    kmeans_samples: int = 150_000
    kmeans_iterations: int = 15
    # assign on the patch plus its sorted luminance times this weight (0: the pixels only), and draw each code as
    # its centre or as the training patch nearest it ("exemplar"), which keeps specks a centre averages away
    kmeans_quantile_weight: float = 0.0
    kmeans_draw: str = "centre"
    architecture: dict[str, Any] = field(default_factory=dict)  # VQConfig fields (image_size comes from data)
    steps: int = 600
    batch_size: int = 32
    lr: float = 2e-3
    options: dict[str, Any] = field(default_factory=dict)  # VQTrainingOptions fields
    # The finding classifier behind options.perceptual_weight: a saved judge directory, or None to train one on
    # the training split first (feature_epochs epochs, seed + 1) into <output_dir>/image_tokenizer_features.
    feature_network: str | None = None
    feature_epochs: int = 6
    # With a tokenizer to start from (path, or model.init_from's), train only its decoder this many more steps:
    # the codes stay the same, so the denoiser trained on them keeps working and draws with the better decoder.
    decoder_steps: int = 0
    decoder_lr: float = 5e-4

    def __post_init__(self) -> None:
        if self.kind not in ("vq", "patch_kmeans", "routed"):
            raise ValueError(f"vq.kind must be vq, patch_kmeans or routed, got {self.kind!r}")
        if self.kind != "vq" and self.decoder_steps:
            raise ValueError(f"vq.decoder_steps trains a VQ decoder; vq.kind={self.kind} trains none")
        if self.kmeans_draw not in ("centre", "exemplar"):
            raise ValueError(f"vq.kmeans_draw must be centre or exemplar, got {self.kmeans_draw!r}")
        if float(self.kmeans_quantile_weight) < 0:
            raise ValueError(f"vq.kmeans_quantile_weight must be >= 0, got {self.kmeans_quantile_weight!r}")
        for name in ("kmeans_patch", "kmeans_codes", "kmeans_images", "kmeans_samples", "kmeans_iterations"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"vq.{name} must be a positive integer, got {getattr(self, name)!r}")


IMAGE_CODE_INITS = ("random", "codebook")


@dataclass
class ModelStageConfig:
    """The denoiser: an HF backbone config (or a pretrained path) plus MeDiM's adaptations."""

    backbone: dict[str, Any] = field(
        default_factory=lambda: {
            "model_type": "llama",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
        }
    )
    backbone_path: str | None = None
    causal_attention: bool = False
    timestep_conditioning: str = "adaln"
    adaln_gate: str = "one_plus"
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False
    # Warm start: a pipeline directory (e.g. assets/default) whose denoiser weights initialise this run. Its
    # text and image tokenizers are used too (the ids must mean the same), and its training chain is carried
    # into the exported checkpoint_info.json, so a checkpoint can accumulate compute across sessions.
    init_from: str | None = None
    # With init_from and an image tokenizer of this run's own (e.g. a finer grid from the vq stage): load every
    # weight except the image-code rows of the embedding and output tables, which start fresh, since the source's
    # code ids mean nothing under the new tokenizer. The grid and codebook size may then differ from the source's.
    new_image_codes: bool = False
    # How those fresh image-code rows start: "random" (i.i.d. at the source rows' scale) or "codebook" (half a
    # fixed random projection of each code's vector in the new tokenizer's codebook, half i.i.d.), so codes that
    # look alike start with alike rows instead of 1,024 unrelated ones the body must learn one by one.
    image_code_init: str = "random"
    # With init_from and a deeper backbone than the source's (same width): each source layer is followed by copies
    # of itself whose output projections (attention o_proj, MLP down_proj) are zero, so the copies add nothing and
    # the grown model computes exactly the source's function at step 0; training then uses the new depth. A chain
    # whose body has seen far more tokens than it has parameters can keep accumulating in a larger body.
    grow_depth: bool = False

    def __post_init__(self) -> None:
        if self.image_code_init not in IMAGE_CODE_INITS:
            raise ValueError(
                f"model.image_code_init={self.image_code_init!r} is not one of {IMAGE_CODE_INITS}"
            )
        if self.image_code_init != "random" and not self.new_image_codes:
            raise ValueError(
                "model.image_code_init only applies to fresh image rows: set model.new_image_codes=true"
            )


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    lr_schedule: str = "cosine"
    warmup_steps: int = 50
    restarts: int = 1  # cosine_with_restarts cycles
    batch_size: int = 16  # per process
    grad_accum: int = 1
    max_steps: int = 100
    max_minutes: float | None = None  # stop early (and save) when the wall-clock budget is spent
    # With a wall-clock budget, let the warm-up/decay schedule follow max(step / max_steps, minutes /
    # max_minutes): a run stopped by the clock then ends annealed, whatever speed the machine has.
    schedule_by_clock: bool = False
    clip_grad: float = 1.0
    ema_decay: float = 0.999
    mixed_precision: str = "no"  # no | bf16 | fp16 (accelerate)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"optim.lr_schedule={self.lr_schedule!r} is not one of {LR_SCHEDULES}")
        if self.lr <= 0 or self.batch_size < 1 or self.grad_accum < 1 or self.max_steps < 1:
            raise ValueError(
                f"bad optimisation settings: lr={self.lr}, batch_size={self.batch_size}, "
                f"grad_accum={self.grad_accum}, max_steps={self.max_steps}"
            )
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"optim.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"optim.mixed_precision={self.mixed_precision!r} is not no|bf16|fp16")


@dataclass
class PretrainConfig:
    """Stage `pretrain`: the backbone learns the `<boi> image <eoi> report` sequences as a causal LM first (every
    token scored each step), and the `medim` stage then adapts it: causal mask removed, AdaLN-Zero added in the
    `(1 + gate)` form, so the adapted model starts as the pretrained blocks. Off when both budgets are 0/None;
    `python -m train all` runs it before `medim` when it is on. Shares optim.* except the budget."""

    max_steps: int = 0
    max_minutes: float | None = None

    @property
    def enabled(self) -> bool:
        return self.max_steps > 0 or bool(self.max_minutes)


@dataclass
class EvalConfig:
    val_every: int = 50
    val_batches: int = 4
    sample_every: int = 0  # 0: only at the end
    sample_count: int = 4
    save_every: int = 100
    keep_checkpoints: int = 2


@dataclass
class LoggingConfig:
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "medim"
    log_every: int = 10


@dataclass
class TrainConfig:
    output_dir: str = "runs/medim"
    seed: int = 0
    threads: int | None = None  # CPU intra-op threads; default: all cores available to the process
    preset: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerStageConfig = field(default_factory=TokenizerStageConfig)
    vq: VQStageConfig = field(default_factory=VQStageConfig)
    model: ModelStageConfig = field(default_factory=ModelStageConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    @property
    def out(self) -> Path:
        return Path(self.output_dir)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _build(cls, values: dict[str, Any], where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where or 'config'} must be a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where or 'config'}; known: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        default = (
            known[name].default_factory() if known[name].default_factory is not dataclasses.MISSING else None
        )
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            kwargs[name] = _build(type(default), value, f"{where}.{name}".strip("."))
        else:
            kwargs[name] = value
    return cls(**kwargs)


class _ConfigLoader(yaml.SafeLoader):
    """YAML with YAML 1.2's booleans: only true/false are booleans, so a value such as
    ``model.timestep_conditioning=off`` stays the string "off" instead of becoming False (YAML 1.1)."""


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_ConfigLoader)  # safe: _ConfigLoader is a SafeLoader


def _set_dotted(tree: dict[str, Any], dotted: str, raw: str) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {dotted!r}: {key!r} is not a section")
    value = _yaml_load(raw)
    if isinstance(value, str):
        try:  # YAML 1.1 reads "3e-4" as a string
            value = float(value)
        except ValueError:
            pass
    node[keys[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """YAML file (optional) + `key.sub=value` overrides (values parsed as YAML) -> validated TrainConfig."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = resolve_preset(path)
        tree = _yaml_load(Path(path).read_text()) or {}
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), raw)
    return _build(TrainConfig, tree, "")


PRESETS = Path(__file__).resolve().parent / "configs"


def resolve_preset(name_or_path: str | Path) -> Path:
    """A YAML path, or the name of a preset in train/configs/ (e.g. `demo-cpu`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    preset = PRESETS / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    available = sorted(p.stem for p in PRESETS.glob("*.yaml"))
    raise ValueError(f"config {str(name_or_path)!r} is neither a file nor a preset; presets: {available}")
