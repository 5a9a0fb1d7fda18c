"""MeDiMPipeline: load/save a checkpoint and run report→image, image→report, pair and inpainting generation.

The pipeline owns the sampling loop: it calls the model for logits, the MaskGIT sampler for the next tokens
and the VQ decoder for pictures, and can stream every intermediate state (for the demo's live view).

Checkpoint directory layout (everything JSON or safetensors; nothing is unpickled)::

    medim_config.json      MeDiMConfig (backbone config, vocabulary, adaptations)
    model.safetensors      denoiser weights
    sampler_config.json    default sampling settings
    checkpoint_info.json   what this checkpoint is (e.g. random init vs trained, data, steps)
    text_tokenizer/        a Hugging Face tokenizer
    image_tokenizer/       a VQ image tokenizer (diffusers VQModel)
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import load_model, save_model

from medim.config import DiffusionConfig, MeDiMConfig, SamplerConfig
from medim.diffusion import get_schedule
from medim.heads import restricted_logits
from medim.modeling import MeDiMModel
from medim.reports import UNKNOWN_WORD_READINGS, clean_report_text, report_notices, trained_spelling
from medim.sampling import (
    MaskGITSampler,
    apply_guidance,
    apply_task_mask,
    guidance_scale_at,
    task_positions,
    unconditional_input,
)
from medim.tokenizers.text import decode_pieces
from medim.vocab import IMAGE, TEXT, VocabLayout

# the report ids a checkpoint's training reports held, written beside its weights by the training stage
TRAINED_TEXT_IDS = "trained_text_ids.json"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "default"


# ---------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------


@dataclass
class StepState:
    """One streamed sampling state for a batch of B samples.

    `tokens` [B, L] is the sequence after the step ([MASK] where still masked); `committed_at` [B, L] is the step
    (1-based) at which each position was decoded, 0 for fixed condition tokens, -1 while still masked;
    `confidence` [B, L] is the probability of each token when it was committed (nan for fixed / masked).
    `images` shows the current picture (masked cells filled with the model's current guess; `image_masked`
    [B, h, w] marks them), `report_pieces` is per sample a list of (text, confidence | None) — None for [MASK].
    """

    step: int
    steps: int
    tokens: torch.Tensor
    committed_at: torch.Tensor
    confidence: torch.Tensor
    images: list[Image.Image] | None
    image_masked: torch.Tensor
    reports: list[str]
    report_pieces: list[list[tuple[str, float | None]]]

    @property
    def done(self) -> bool:
        return self.step == self.steps


@dataclass
class GenerationResult:
    images: list[Image.Image]
    reports: list[str]
    tokens: torch.Tensor
    committed_at: torch.Tensor
    confidence: torch.Tensor
    task: str
    seed: int
    settings: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------
# Checkpoint resolution
# ---------------------------------------------------------------------------------------------------------


def resolve_checkpoint(path_or_id: str | os.PathLike | None) -> Path:
    """The checkpoint directory for ``path_or_id``: None/"" → $MEDIM_CHECKPOINT or the bundled default; a local
    directory → itself; ``owner/name`` → the Hugging Face hub (or its cache). What was asked for and cannot be
    found or fetched is a ValueError, never a silent fallback to the default."""
    if path_or_id is None or str(path_or_id) == "":
        path_or_id = os.environ.get("MEDIM_CHECKPOINT") or DEFAULT_CHECKPOINT
    local = Path(path_or_id).expanduser()
    if local.is_dir():
        if not (local / "medim_config.json").is_file():
            raise ValueError(f"{local} is not a MeDiM checkpoint: medim_config.json is missing")
        return local
    text = str(path_or_id)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(text))
        except Exception as error:  # offline, unknown repo, no network
            raise ValueError(
                f"checkpoint {text!r} is not a local directory and could not be fetched from the Hugging Face "
                f"hub ({type(error).__name__}: {error}). Pass a local directory or set MEDIM_CHECKPOINT."
            ) from error
    raise ValueError(f"checkpoint not found: {text!r} is neither a local directory nor a hub id (owner/name)")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _last(states: Iterator[StepState]) -> StepState:
    """Exhaust a stream, keeping only its final state."""
    return collections.deque(states, maxlen=1)[0]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------------


def load_denoiser_weights(
    model: MeDiMModel, weights: str | os.PathLike, *, may_be_missing: tuple[str, ...] = ()
) -> None:
    """Load ``model.safetensors`` into ``model`` exactly: a missing file, a shape mismatch or any missing or
    unexpected tensor is a ValueError naming the file (nothing is unpickled). Tensors whose names start with one
    of ``may_be_missing`` may be absent from the file and keep their initial values (a warm start that adds
    modules, e.g. AdaLN on a pretrained causal LM)."""
    weights = Path(weights)
    if not weights.is_file():
        raise ValueError(f"{weights} is missing")
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except Exception as error:
        raise ValueError(f"{weights} does not match the config in {weights.parent}: {error}") from error
    missing = [name for name in missing if not (may_be_missing and name.startswith(may_be_missing))]
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not match its config: missing {sorted(missing)[:5]}, unexpected "
            f"{sorted(unexpected)[:5]}"
        )


def load_trained_text_ids(root: str | os.PathLike) -> list[int] | None:
    """The report ids of a pipeline directory's trained_text_ids.json, or None when it has none (a clear
    ValueError when the file is broken)."""
    path = Path(root) / TRAINED_TEXT_IDS
    if not path.is_file():
        return None
    try:
        return [int(i) for i in json.loads(path.read_text())["ids"]]
    except (ValueError, TypeError, KeyError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a list of trained text ids: {error}") from error


class MeDiMPipeline:
    """Generation with a MeDiM checkpoint. Build with `from_pretrained(path)`; all methods are thread-compatible
    (each call owns its tensors and its torch.Generator)."""

    def __init__(
        self,
        model: MeDiMModel,
        text_tokenizer,
        image_tokenizer,
        sampler_config: SamplerConfig | None = None,
        info: dict[str, Any] | None = None,
        diffusion_config: DiffusionConfig | None = None,
        trained_text_ids: Iterable[int] | None = None,
    ):
        self.model = model.eval()
        self.config: MeDiMConfig = model.config
        self.layout: VocabLayout = model.layout
        self.text_tokenizer = text_tokenizer
        self.image_tokenizer = image_tokenizer
        self.sampler_config = sampler_config or SamplerConfig()
        self.info = dict(info or {})
        self.checkpoint_hash: str | None = self.info.get("sha256")
        # the forward process the model was trained with: the typed diffusion_config.json, else (checkpoints
        # saved before it was written) the schedule named in checkpoint_info.json
        self.diffusion_config = diffusion_config
        self.noise_schedule_name: str = (
            diffusion_config.schedule if diffusion_config else self.info.get("noise_schedule", "loglinear")
        )
        self.noise_schedule = get_schedule(self.noise_schedule_name)
        # the report ids the denoiser's training reports held (trained_text_ids.json; None when not recorded)
        self.trained_text_ids = (
            None if trained_text_ids is None else frozenset(int(i) for i in trained_text_ids)
        )
        # how the denoiser reads report ids no training report held (see `unknown_word_reading`)
        self.unknown_words = "mask"
        self._read_as_cache: tuple[tuple, torch.Tensor | None] | None = None
        # conditions are read in the case their words had in training (encode_reports(respell=True)); off: as typed
        self.respell_reports = True
        # compute the output head only where the sampler reads it (exact; see medim.heads.restricted_logits)
        self.restrict_head = True
        if len(text_tokenizer) > self.config.text_vocab_size:
            raise ValueError(
                f"text tokenizer has {len(text_tokenizer)} ids but the model's text vocabulary is "
                f"{self.config.text_vocab_size}: wrong tokenizer for this checkpoint"
            )
        if image_tokenizer.codebook_size != self.config.codebook_size:
            raise ValueError(
                f"image tokenizer has {image_tokenizer.codebook_size} codes but the model expects "
                f"{self.config.codebook_size}: wrong image tokenizer for this checkpoint"
            )
        if tuple(image_tokenizer.grid_size) != tuple(self.config.image_grid):
            raise ValueError(
                f"image tokenizer grid {tuple(image_tokenizer.grid_size)} != model grid {self.config.image_grid}"
            )

    @property
    def unknown_words(self) -> str:
        """How report ids that no training report held are read: "mask" (default) or "written" (as typed)."""
        return self._unknown_words

    @unknown_words.setter
    def unknown_words(self, value: str) -> None:
        if value not in UNKNOWN_WORD_READINGS:
            raise ValueError(f"unknown_words must be one of {UNKNOWN_WORD_READINGS}, got {value!r}")
        self._unknown_words = value

    @property
    def unknown_word_reading(self) -> str:
        """What the denoiser reads for a report id its training never held, whose input embedding no gradient
        ever reached: "<unk>" for a checkpoint trained with unknown-word dropout (`unknown_word_rate` > 0), which
        learned that token's meaning; else "[MASK]" (``unknown_words="mask"``, the default), the token it learned
        to read as a word it cannot see, instead of a random embedding row; "as written" with
        ``unknown_words="written"`` or when the checkpoint does not record its trained ids."""
        if self.trained_text_ids is None:
            return "as written"
        if self.diffusion_config and self.diffusion_config.unknown_word_rate > 0:
            return "<unk>"
        return "[MASK]" if self.unknown_words == "mask" else "as written"

    @property
    def reads_unknown_words(self) -> bool:
        """Whether the denoiser reads each report id its training never held as another token (`model_input`)."""
        return self.unknown_word_reading != "as written"

    def _unknown_word_map(self) -> torch.Tensor | None:
        """Id -> the id the denoiser reads for it (`unknown_word_reading`); None when every id is read as written.
        Cached per reading and trained-id set, which callers may change after loading."""
        key = (self.unknown_word_reading, self.trained_text_ids)
        if self._read_as_cache is not None and self._read_as_cache[0] == key:
            return self._read_as_cache[1]
        reading = key[0]
        read_as = None
        if reading != "as written":
            substitute = self.layout.mask_id if reading == "[MASK]" else self.text_tokenizer.unk_token_id
            if substitute is None:
                raise ValueError(
                    "the checkpoint reads unknown words as <unk>, but its text tokenizer has no <unk>"
                )
            read_as = torch.arange(self.layout.vocab_size)
            unseen = torch.ones(self.layout.text_vocab_size, dtype=torch.bool)
            unseen[[i for i in self.trained_text_ids if 0 <= i < self.layout.text_vocab_size]] = False
            read_as[: self.layout.text_vocab_size][unseen] = substitute
        self._read_as_cache = (key, read_as)
        return read_as

    def model_input(self, tokens: torch.Tensor) -> torch.Tensor:
        """The tokens [B, L] as the denoiser reads them: unchanged, except that each report id its training
        never showed it is read as `unknown_word_reading` says. Only the model's input changes; the sequence,
        the sampler's state and every output keep the ids that were written."""
        read_as = self._unknown_word_map()
        if read_as is None:
            return tokens
        return read_as.to(tokens.device)[tokens]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> MeDiMPipeline:
        self.model.to(device)
        self.image_tokenizer.to(device)
        return self

    # ---- load / save -----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike | None = None, device: str | None = None):
        from medim.tokenizers.image import load_image_tokenizer
        from medim.tokenizers.text import load_text_tokenizer

        root = resolve_checkpoint(path_or_id)
        try:
            config = MeDiMConfig.load(root / "medim_config.json")
        except (ValueError, TypeError, KeyError, json.JSONDecodeError) as error:
            raise ValueError(f"{root / 'medim_config.json'} is not a valid MeDiM config: {error}") from error
        weights = root / "model.safetensors"
        model = MeDiMModel(config)
        load_denoiser_weights(model, weights)
        sampler = SamplerConfig()
        if (root / "sampler_config.json").is_file():
            sampler = SamplerConfig.load(root / "sampler_config.json")
        info = {}
        if (root / "checkpoint_info.json").is_file():
            info = json.loads((root / "checkpoint_info.json").read_text())
        info["path"] = str(root)
        info["sha256"] = file_sha256(weights)
        diffusion = None
        if (root / "diffusion_config.json").is_file():
            try:
                diffusion = DiffusionConfig.load(root / "diffusion_config.json")
            except (ValueError, TypeError, json.JSONDecodeError) as error:
                raise ValueError(
                    f"{root / 'diffusion_config.json'} is not a valid diffusion config: {error}"
                ) from error
        pipe = cls(
            model,
            load_text_tokenizer(root / "text_tokenizer"),
            load_image_tokenizer(root / "image_tokenizer"),
            sampler,
            info,
            diffusion_config=diffusion,
            trained_text_ids=load_trained_text_ids(root),
        )
        if device is None:
            device = default_device()
        return pipe.to(device)

    def save_pretrained(self, path: str | os.PathLike, info: dict[str, Any] | None = None) -> Path:
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        self.config.save(root / "medim_config.json")
        save_model(self.model, str(root / "model.safetensors"))
        self.sampler_config.save(root / "sampler_config.json")
        if self.diffusion_config is not None:
            self.diffusion_config.save(root / "diffusion_config.json")
        if self.trained_text_ids is not None:
            ids = {"ids": sorted(self.trained_text_ids)}
            (root / TRAINED_TEXT_IDS).write_text(json.dumps(ids) + "\n")
        merged = {k: v for k, v in {**self.info, **(info or {})}.items() if k not in ("path", "sha256")}
        (root / "checkpoint_info.json").write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
        self.text_tokenizer.save_pretrained(root / "text_tokenizer")
        self.image_tokenizer.save_pretrained(root / "image_tokenizer")
        return root

    # ---- inputs ----------------------------------------------------------------------------------------
    def encode_reports(self, reports: list[str], *, respell: bool = False) -> tuple[torch.Tensor, list[str]]:
        """Reports -> padded text ids [B, T] and warnings (truncation, words the model cannot read).

        ``respell`` (conditions the model reads): with the checkpoint's trained ids known, a word whose written
        capitals make it unreadable is read in the case its training reports wrote
        (`medim.reports.trained_spelling`). Without it the ids are the written text's (what infill scores)."""
        warnings = []
        token_lists = []
        for index, report in enumerate(reports):
            report = clean_report_text(report)  # the validation the app and CLI share (ReportError)
            prefix = f"report {index}: " if len(reports) > 1 else ""
            if respell and self.respell_reports and self.trained_text_ids is not None:
                report, respelt = trained_spelling(report, self.text_tokenizer, self.trained_text_ids)
                if respelt:
                    shown = ", ".join(f"{written!r} as {read!r}" for written, read in respelt[:3])
                    more = f" and {len(respelt) - 3} more" if len(respelt) > 3 else ""
                    warnings.append(
                        f"{prefix}Read {shown}{more}: the case the model's training reports write them in."
                    )
            notices = report_notices(report, self.text_tokenizer, trained_ids=self.trained_text_ids)
            warnings += [prefix + notice for notice in notices]
            token_lists.append(self.text_tokenizer(report, add_special_tokens=False)["input_ids"])
        ids, truncated = self.layout.pad_text(token_lists)
        for index in truncated.nonzero().flatten().tolist():
            warnings.append(
                f"report {index} was truncated to the model's {self.layout.text_tokens} report tokens "
                f"(it had {len(token_lists[index])})"
            )
        return ids, warnings

    def encode_images(self, images: list) -> torch.Tensor:
        """PIL images (any size, grey or RGB) -> VQ codes [B, N]."""
        from medim.data.preprocess import to_model_tensor

        pixels = torch.stack([to_model_tensor(image, self.config.image_size) for image in images])
        with torch.no_grad():
            return self.image_tokenizer.encode(pixels.to(self.device))

    def decode_images(self, codes: torch.Tensor) -> list[Image.Image]:
        """VQ codes [B, N] (no -1) -> PIL RGB images."""
        with torch.no_grad():
            pixels = self.image_tokenizer.decode(codes.to(self.device)).float().cpu()
        arrays = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [Image.fromarray(array) for array in arrays]

    def decode_report(self, ids: list[int]) -> str:
        return self.text_tokenizer.decode(ids, skip_special_tokens=True).strip()

    # ---- sampling loop ---------------------------------------------------------------------------------
    @torch.no_grad()
    def denoise_logits(self, x_t: torch.Tensor, generate: torch.Tensor, guidance: float) -> torch.Tensor:
        """Logits [B, L, V] at the current tokens; with guidance the conditional and unconditional inputs run
        as one batch of 2B. With `restrict_head` only the masked positions get logits, over their modality's
        ids (-inf elsewhere: the sampler reads nothing else)."""
        masked_fraction = (x_t == self.layout.mask_id).sum(-1).float() / generate.sum(-1).clamp_min(1).float()
        # tell the denoiser the noise level at which its training would have produced this masked fraction
        t = self.noise_schedule.t_for_mask_probability(masked_fraction.clamp(0, 1))
        autocast = self.device.type == "cuda"
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=autocast):
            need = x_t == self.layout.mask_id
            if self.restrict_head and need.any():
                inputs = (
                    torch.cat([x_t, unconditional_input(x_t, generate, self.layout)]) if guidance > 0 else x_t
                )
                times = torch.cat([t, t]) if guidance > 0 else t
                hidden = self.model.hidden_states(self.model_input(inputs), times)
                return restricted_logits(self.model, hidden, need, guidance)
            if guidance > 0:
                uncond = unconditional_input(x_t, generate, self.layout)
                logits = self.model(self.model_input(torch.cat([x_t, uncond])), torch.cat([t, t]))
                cond_logits, uncond_logits = logits.float().chunk(2)
                return apply_guidance(cond_logits, uncond_logits, guidance)
            return self.model(self.model_input(x_t), t).float()

    def sampler_settings(
        self,
        sampler_config: SamplerConfig | None = None,
        overrides: dict[str, Any] | None = None,
        task: str | None = None,
    ) -> SamplerConfig:
        """The sampler configuration a call uses: `sampler_config` as given, else the pipeline's own, for a
        `task` with that task's own settings (`SamplerConfig.for_task`; `task_steps` and `task_settings` may be
        overridden too); then the other non-None `overrides` (SamplerConfig fields) applied."""
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        base = sampler_config or self.sampler_config
        if sampler_config is None and task:
            per_task = {k: overrides.pop(k) for k in ("task_steps", "task_settings") if k in overrides}
            base = (dataclasses.replace(base, **per_task) if per_task else base).for_task(task)
        return dataclasses.replace(base, **overrides) if overrides else base

    def stream(
        self,
        x_init: torch.Tensor,
        generate: torch.Tensor,
        *,
        sampler_config: SamplerConfig | None = None,
        seed: int | None = None,
        decode_images: bool = True,
        sampler: MaskGITSampler | None = None,
        denoiser=None,
    ) -> Iterator[StepState]:
        """Run MaskGIT from x_init [B, L] (already masked at `generate` [B, L]), yielding a StepState per step.

        `sampler` (default a MaskGITSampler for `sampler_config`) and `denoiser` (`(x_t, generate, guidance)
        -> logits [B, L, V]`, default `denoise_logits`) let medim.speedups plug in its opt-in speed modes.
        """
        config = sampler_config or self.sampler_config
        denoiser = denoiser or self.denoise_logits
        device = self.device
        x = x_init.to(device)
        generate = generate.to(device).expand_as(x)
        if not generate.any():
            raise ValueError("nothing to generate: no position is masked")
        generator = torch.Generator(device=device)
        generator.manual_seed(int(seed if seed is not None else 0))
        sampler = sampler or MaskGITSampler(
            self.layout, config, code_groups=getattr(self.image_tokenizer, "code_groups", None)
        )
        sampler.set_timesteps(config.steps)
        initial_masked = (x == self.layout.mask_id).sum(-1)
        committed_at = torch.where(x == self.layout.mask_id, -1, 0).to(device)
        confidence = torch.full(x.shape, float("nan"), device=device)
        for step in range(config.steps):
            logits = denoiser(x, generate, guidance_scale_at(step, config.steps, config))
            out = sampler.step(logits, x, step, initial_masked, generator)
            if out.padding is not None:  # padding is not the schedule's to spend: the words follow it
                initial_masked = initial_masked - out.padding
            x = out.tokens
            committed_at = torch.where(out.committed, step + 1, committed_at)
            confidence = torch.where(out.committed, out.confidence, confidence)
            yield self._state(
                step + 1, config.steps, x, out.predicted, committed_at, confidence, decode_images
            )
            if not (x == self.layout.mask_id).any():
                # every position decoded early (tiny grids): the remaining steps have nothing to do
                if step + 1 < config.steps:
                    yield self._state(
                        config.steps, config.steps, x, x, committed_at, confidence, decode_images
                    )
                break

    def _state(self, step, steps, tokens, predicted, committed_at, confidence, decode_images) -> StepState:
        layout = self.layout
        masked_image = (tokens[:, layout.image_slice] == layout.mask_id).cpu()
        images = None
        if decode_images:
            codes = layout.image_codes(predicted)
            codes = torch.where(codes < 0, torch.zeros_like(codes), codes)
            images = self.decode_images(codes)
        reports, pieces = [], []
        for row in range(tokens.shape[0]):
            text_tokens = tokens[row, layout.text_slice].tolist()
            text_conf = confidence[row, layout.text_slice].tolist()
            pieces.append(
                decode_pieces(
                    self.text_tokenizer,
                    text_tokens,
                    text_conf,
                    skip={layout.pad_id},
                    placeholder={layout.mask_id: "[MASK]"},
                )
            )
            reports.append(self.decode_report(layout.text_ids(tokens[row : row + 1])[0]))
        h, w = self.config.image_grid
        return StepState(
            step=step,
            steps=steps,
            tokens=tokens.cpu(),
            committed_at=committed_at.cpu(),
            confidence=confidence.cpu(),
            images=images,
            image_masked=masked_image.view(-1, h, w),
            reports=reports,
            report_pieces=pieces,
        )

    # ---- task helpers ----------------------------------------------------------------------------------
    def prepare(
        self,
        task: str,
        *,
        report: str | list[str] | None = None,
        image=None,
        prompt: str | None = None,
        num_samples: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Build (x_init [B, L], generate [B, L], warnings) for report2image, image2report or pair."""
        if not 1 <= num_samples <= 64:
            raise ValueError(f"num_samples must be in [1, 64], got {num_samples}")
        layout = self.layout
        warnings: list[str] = []
        empty_text = torch.full((1, layout.text_tokens), layout.pad_id, dtype=torch.long)
        empty_image = torch.zeros(1, layout.image_tokens, dtype=torch.long)
        prompt_length = 0
        if task == "report2image":
            reports = [report] if isinstance(report, str) or report is None else list(report)
            text, warnings = self.encode_reports(reports, respell=True)
            seq = layout.pack(text, empty_image.expand(len(reports), -1))
        elif task == "image2report":
            images = image if isinstance(image, list | tuple) else [image]
            if any(item is None for item in images):
                raise ValueError("image2report needs an image")
            seq = layout.pack(empty_text.expand(len(images), -1), self.encode_images(list(images)).cpu())
        elif task == "pair":
            if prompt is not None and prompt.strip():
                text, warnings = self.encode_reports([prompt], respell=True)
                prompt_length = int((text[0] != layout.pad_id).sum())
                seq = layout.pack(text, empty_image)
            else:
                seq = layout.blank(1)
        else:
            raise ValueError(f"unknown task {task!r}; choose report2image, image2report or pair")
        if seq.shape[0] == 1 and num_samples > 1:
            seq = seq.expand(num_samples, -1)
        generate = task_positions(task, layout, prompt_length)[None].expand_as(seq)
        return apply_task_mask(seq, generate, layout), generate, warnings

    def run(
        self,
        task: str,
        *,
        report=None,
        image=None,
        prompt: str | None = None,
        num_samples: int = 1,
        seed: int | None = None,
        sampler_config: SamplerConfig | None = None,
        sampler: MaskGITSampler | None = None,
        denoiser=None,
        **overrides,
    ) -> GenerationResult:
        """One task to the end. `sampler` / `denoiser`: as in `stream` (medim.speedups passes its modes here)."""
        config = self.sampler_settings(sampler_config, overrides, task=task)
        seed = 0 if seed is None else int(seed)
        x_init, generate, warnings = self.prepare(
            task, report=report, image=image, prompt=prompt, num_samples=num_samples
        )
        states = self.stream(
            x_init,
            generate,
            sampler_config=config,
            seed=seed,
            decode_images=False,
            sampler=sampler,
            denoiser=denoiser,
        )
        state = _last(states)
        return self._result(task, state, seed, config, warnings)

    def _result(self, task, state: StepState, seed, config, warnings) -> GenerationResult:
        codes = self.layout.image_codes(state.tokens)
        return GenerationResult(
            images=self.decode_images(codes.clamp_min(0)),
            reports=state.reports,
            tokens=state.tokens,
            committed_at=state.committed_at,
            confidence=state.confidence,
            task=task,
            seed=seed,
            settings=config.to_dict(),
            warnings=warnings,
        )

    def generate_image(self, report: str | list[str], **kwargs) -> GenerationResult:
        """Report(s) -> image(s). kwargs: num_samples, seed, sampler_config, or any SamplerConfig field."""
        return self.run("report2image", report=report, **kwargs)

    def generate_report(self, image, **kwargs) -> GenerationResult:
        """Image (PIL, grey or RGB, any size) or list of images -> report(s)."""
        return self.run("image2report", image=image, **kwargs)

    def generate_pair(self, prompt: str | None = None, **kwargs) -> GenerationResult:
        """Unconditional image–report pair, or one whose report starts with `prompt`."""
        return self.run("pair", prompt=prompt, **kwargs)

    def inpaint(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        *,
        seed: int | None = None,
        sampler_config: SamplerConfig | None = None,
        **overrides,
    ) -> GenerationResult:
        """Resample `positions` ([L] or [B, L] bool over image and/or text) of finished sequences [B, L], keeping
        every other token fixed (inpainting and report infilling)."""
        config = self.sampler_settings(sampler_config, overrides)
        positions = positions.to(torch.bool).expand_as(tokens)
        modality = self.layout.position_modality[None].expand_as(tokens)
        if (positions & ~((modality == IMAGE) | (modality == TEXT))).any():
            raise ValueError("only image and report positions can be re-masked")
        x_init = apply_task_mask(tokens, positions, self.layout)
        seed = 0 if seed is None else int(seed)
        state = _last(self.stream(x_init, positions, sampler_config=config, seed=seed, decode_images=False))
        return self._result("inpaint", state, seed, config, [])
