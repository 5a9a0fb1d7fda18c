"""Stage `medim`: train the diffusion model with accelerate (one CPU to many GPUs) and export a pipeline.

Per optimiser step: `grad_accum` micro-batches drawn by the deterministic mixed-domain sampler, masked by the
forward process (train/data + medim.diffusion), scored with the eq. 6 loss, clipped, stepped, then the EMA
weights are updated. Checkpoints (`accelerator.save_state`) hold model, optimiser, scheduler, EMA, RNG states and
the step counter (which is also the data position), so `--resume latest` continues exactly.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from medim.config import MeDiMConfig
from medim.diffusion import causal_lm_loss, diffusion_loss, make_training_batch
from medim.modeling import MeDiMModel, build_backbone
from train.config import TrainConfig
from train.data import BatchSampler, build_cache, ensure_corpus, open_cache
from train.logs import CsvLog, plot_loss_curves


class TrainingProgress:
    """The step counter as a checkpointable object (it is also the data position), with the tokens seen and the
    training seconds spent before the current process started (the clock schedule's and budget's origin)."""

    def __init__(self):
        self.step = 0
        self.tokens = 0
        self.seconds = 0.0

    def state_dict(self):
        return {"step": self.step, "tokens": self.tokens, "seconds": self.seconds}

    def load_state_dict(self, state):
        self.step = int(state["step"])
        self.tokens = int(state["tokens"])
        self.seconds = float(state.get("seconds", 0.0))


def build_model_config(config: TrainConfig, text_tokenizer, image_tokenizer) -> MeDiMConfig:
    return MeDiMConfig(
        backbone=dict(config.model.backbone),
        text_vocab_size=len(text_tokenizer),
        codebook_size=image_tokenizer.codebook_size,
        image_grid=tuple(image_tokenizer.grid_size),
        max_text_tokens=config.data.max_text_tokens,
        backbone_path=config.model.backbone_path,
        causal_attention=config.model.causal_attention,
        timestep_conditioning=config.model.timestep_conditioning,
        adaln_gate=config.model.adaln_gate,
        attn_implementation=config.model.attn_implementation,
        image_size=config.data.image_size,
        domains=tuple(config.data.domain_weights),
        # a model that reads <unk> for words it cannot read must never write it
        suppressed_text_ids=(text_tokenizer.unk_token_id,) if config.diffusion.unknown_word_rate > 0 else (),
    )


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        # norms, biases and embeddings are not decayed (the usual transformer recipe)
        (no_decay if param.ndim < 2 or "embed" in name or "norm" in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.optim.lr, betas=config.optim.betas)


def _scheduler(optimizer, config: TrainConfig, clock=None):
    """The learning-rate schedule. ``clock()`` (the fraction of the wall budget spent) is used when
    ``optim.schedule_by_clock`` is on: progress is then the further along of steps and time."""
    from transformers import get_scheduler

    if config.optim.schedule_by_clock and config.optim.max_minutes and clock is not None:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, clock_lr_factor(config, clock))
    kwargs = {}
    if config.optim.lr_schedule == "cosine_with_restarts":
        kwargs["num_cycles"] = config.optim.restarts
    return get_scheduler(
        config.optim.lr_schedule,
        optimizer,
        num_warmup_steps=config.optim.warmup_steps,
        num_training_steps=config.optim.max_steps,
        scheduler_specific_kwargs=kwargs,
    )


def clock_lr_factor(config: TrainConfig, clock):
    """Multiplier of the peak lr at a step: linear warm-up over warmup_steps, then the configured decay over
    max(step progress, clock()) (cosine restarts are one cosine here: a budgeted run is one cycle)."""
    warmup, total, kind = config.optim.warmup_steps, config.optim.max_steps, config.optim.lr_schedule

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, max((step - warmup) / max(1, total - warmup), clock()))
        if kind == "constant_with_warmup":
            return 1.0
        if kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def source_checkpoint_info(source: Path) -> dict:
    """The warm-start source's checkpoint_info.json (its training chain), or {} when it has none."""
    info_path = source / "checkpoint_info.json"
    return json.loads(info_path.read_text()) if info_path.is_file() else {}


def data_stream_offset(config: TrainConfig, source_info: dict) -> int:
    """The stream position of step 0: ``data.stream_offset``, else the steps of every run in the source's chain.

    Batches and masks depend only on (seed, stream position), so a warm start that began at position 0 would
    replay exactly the batches and masks its source trained on first.
    """
    if config.data.stream_offset is not None:
        return config.data.stream_offset
    return sum(int(run.get("steps", 0)) for run in source_info.get("runs", []))


ADAPTATION_MODULES = ("timestep_embedder.", "adaln.")


def warm_start(
    model: MeDiMModel,
    source: Path,
    *,
    new_image_codes: bool = False,
    code_vectors: torch.Tensor | None = None,
    kept_codes: int = 0,
    grow_depth: bool = False,
) -> None:
    """Load the denoiser weights of the pipeline directory ``source`` into ``model`` (same architecture and
    vocabulary layout, else a ValueError naming what differs).

    A causal source without timestep conditioning (the `pretrain` stage's export) may initialise a bidirectional,
    timestep-conditioned model: that is MeDiM's adaptation of a pretrained LM. The backbone is loaded exactly;
    the timestep embedder and AdaLN modulations keep their zero-initialised state, so with the `(1 + gate)`
    form the adapted model starts as the pretrained blocks.

    ``new_image_codes``: the run has an image tokenizer of its own (another grid or codebook, or retrained codes),
    so the source's image-code rows of the embedding and output tables mean nothing here. Every other weight is
    loaded (body, AdaLN, timestep embedder, text and special rows, the specials matched by role); the image rows
    are drawn fresh at the scale the source's image rows had. With ``code_vectors`` (the new tokenizer's codebook,
    one vector per code) half of each fresh row's variance is a fixed random projection of its code's vector, so
    codes that draw alike start alike (``model.image_code_init=codebook``). ``kept_codes``: the first codes of the
    new codebook are the source's first codes with the same meaning (a routed tokenizer whose grey part is the
    source's tokenizer), so their rows are loaded, not drawn; ``code_vectors`` then holds the other codes' vectors.

    ``grow_depth``: the model may have more layers than the source (the rest of the backbone the same). Source
    layer ``i`` lands at the first of the positions ``j`` with ``j * source_layers // layers == i``; the other
    positions hold copies of it (attention, MLP, norms and AdaLN modulation) with zero output projections, so
    every copy is an identity map and the grown model starts as the source (``model.grow_depth``)."""
    from medim.pipeline import load_denoiser_weights

    source_config = MeDiMConfig.load(source / "medim_config.json")
    adapting = (
        source_config.timestep_conditioning == "off"
        and source_config.causal_attention
        and (model.config.timestep_conditioning != "off" or not model.config.causal_attention)
    )
    source_layers = source_config.backbone.get("num_hidden_layers")
    layers = model.config.backbone.get("num_hidden_layers")
    growing = grow_depth and source_layers != layers
    if growing and (
        {**source_config.backbone, "num_hidden_layers": layers} != model.config.backbone
        or not 0 < source_layers < layers
    ):
        raise ValueError(
            f"cannot grow {source}: model.grow_depth adds layers to the same backbone, but the source has "
            f"{source_config.backbone} and this model {model.config.backbone}"
        )
    mismatched = [
        name
        for name in (
            "backbone",
            "text_vocab_size",
            "codebook_size",
            "image_grid",
            "max_text_tokens",
            "causal_attention",
            "timestep_conditioning",
            "adaln_gate",
            "text_prefix_ids",
            "text_suffix_ids",
        )
        if getattr(source_config, name) != getattr(model.config, name)
        and not (adapting and name in ("causal_attention", "timestep_conditioning", "adaln_gate"))
        and not (new_image_codes and name in ("codebook_size", "image_grid"))
        and not (growing and name == "backbone")
    ]
    if mismatched:
        details = "; ".join(
            f"{name}: {getattr(source_config, name)!r} there, {getattr(model.config, name)!r} here"
            for name in mismatched
        )
        hint = (
            "; with a new image tokenizer in this run, set model.new_image_codes=true"
            if {"codebook_size", "image_grid"} & set(mismatched) and not new_image_codes
            else ""
        )
        if "backbone" in mismatched and not grow_depth and source_layers != layers:
            hint += "; to start a deeper model from it, set model.grow_depth=true"
        raise ValueError(f"cannot warm-start from {source}: the model differs ({details}){hint}")
    if new_image_codes or growing:
        from safetensors.torch import load_file

        weights = source / "model.safetensors"
        state = load_file(str(weights))
        if growing:
            state = _grown_layers(state, source_layers, layers)
        if new_image_codes:
            state = _with_new_image_codes(model, state, source_config, code_vectors, kept_codes)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{weights} does not match this model: {error}") from error
        return
    # adapting: the backbone exactly, the zero-initialised timestep and AdaLN modules stay as they are
    load_denoiser_weights(
        model, source / "model.safetensors", may_be_missing=ADAPTATION_MODULES if adapting else ()
    )


VOCAB_TABLES = ("backbone.model.embed_tokens.weight", "backbone.lm_head.weight")


LAYER_PREFIXES = ("backbone.model.layers.", "adaln.")
ZEROED_IN_COPIES = ("self_attn.o_proj.", "mlp.down_proj.")


def _grown_layers(state: dict[str, torch.Tensor], source_layers: int, layers: int) -> dict[str, torch.Tensor]:
    """``warm_start(grow_depth=True)``'s state dict: see its docstring."""
    grown = {}
    for name, tensor in state.items():
        prefix = next((p for p in LAYER_PREFIXES if name.startswith(p)), None)
        if prefix is None:
            grown[name] = tensor
            continue
        index, rest = name[len(prefix) :].split(".", 1)
        targets = [j for j in range(layers) if j * source_layers // layers == int(index)]
        for position, j in enumerate(targets):
            copy = position > 0 and rest.startswith(ZEROED_IN_COPIES)
            grown[f"{prefix}{j}.{rest}"] = torch.zeros_like(tensor) if copy else tensor
    return grown


def _with_new_image_codes(
    model: MeDiMModel,
    state: dict[str, torch.Tensor],
    source_config: MeDiMConfig,
    code_vectors: torch.Tensor | None = None,
    kept_codes: int = 0,
) -> dict[str, torch.Tensor]:
    """``warm_start(new_image_codes=True)``'s state dict: see its docstring."""
    from medim.vocab import VocabLayout

    source, target = VocabLayout.from_config(source_config), model.layout
    own = model.state_dict()
    generator = torch.Generator().manual_seed(0)
    if not 0 <= kept_codes <= min(source.codebook_size, target.codebook_size):
        raise ValueError(
            f"kept_codes={kept_codes} must lie in [0, {min(source.codebook_size, target.codebook_size)}]"
        )
    fresh_codes = target.codebook_size - kept_codes
    if code_vectors is not None and code_vectors.shape[0] != fresh_codes:
        raise ValueError(f"code_vectors has {code_vectors.shape[0]} rows for {fresh_codes} new codes")
    state = dict(state)
    for name in VOCAB_TABLES:
        if name not in state:
            continue
        old, new = state[name], own[name].clone()
        text = source.text_vocab_size
        new[:text] = old[:text]
        for role in ("boi_id", "eoi_id", "pad_id", "mask_id"):
            new[getattr(target, role)] = old[getattr(source, role)]
        image_rows = old[source.image_offset : source.image_offset + source.codebook_size]
        fresh = torch.randn(fresh_codes, old.shape[1], generator=generator, dtype=old.dtype)
        if code_vectors is not None:
            fresh = (
                fresh + _unit_projection(code_vectors, old.shape[1], generator).to(old.dtype)
            ) / math.sqrt(2)
        start = target.image_offset
        new[start : start + kept_codes] = image_rows[:kept_codes]
        new[start + kept_codes : start + target.codebook_size] = fresh * image_rows.std() + image_rows.mean()
        state[name] = new
    return state


def shared_code_prefix(image_tokenizer, source_tokenizer_dir: Path) -> int:
    """How many leading codes ``image_tokenizer`` shares with the tokenizer saved at ``source_tokenizer_dir``: the
    grey part's codebook size when it is a routed tokenizer whose grey part is that tokenizer (same class, same
    weights), else 0."""
    from medim.tokenizers.image import load_image_tokenizer
    from medim.tokenizers.routed import RoutedImageTokenizer

    if not isinstance(image_tokenizer, RoutedImageTokenizer) or not source_tokenizer_dir.is_dir():
        return 0
    source = load_image_tokenizer(source_tokenizer_dir)
    grey = image_tokenizer.grey
    if type(source) is not type(grey):
        return 0
    mine, theirs = grey.state_dict(), source.state_dict()
    same = mine.keys() == theirs.keys() and all(torch.equal(mine[k].cpu(), theirs[k].cpu()) for k in mine)
    return grey.codebook_size if same else 0


def _new_code_vectors(image_tokenizer, kept_codes: int) -> torch.Tensor:
    """One vector per code the warm start draws fresh (``model.image_code_init=codebook``)."""
    if kept_codes:
        return image_tokenizer.colour.codebook
    return image_tokenizer.codebook


def _unit_projection(vectors: torch.Tensor, width: int, generator: torch.Generator) -> torch.Tensor:
    """``vectors`` (one per code) centred, through a fixed Gaussian map to ``width`` columns, scaled to unit
    variance: a row per code whose similarities follow the codes' (a constant codebook gives zeros)."""
    centred = vectors.detach().float().cpu()
    centred = centred - centred.mean(0)
    projection = torch.randn(centred.shape[1], width, generator=generator)
    rows = centred @ projection
    return rows / rows.std().clamp_min(1e-12)


def _step_generator(seed: int, step: int, rank: int, micro: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 7_919 + step) * 64 + micro) * 257 + rank)


def latest_checkpoint(out: Path) -> Path | None:
    steps = sorted((out / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    return steps[-1] if steps else None


OBJECTIVES = ("diffusion", "causal_lm")


def run(
    config: TrainConfig,
    resume: str | None = None,
    *,
    objective: str = "diffusion",
    cache_dir: Path | None = None,
    export_dir: Path | None = None,
) -> Path:
    """Train and export. ``objective="causal_lm"`` is the pretraining stage (train/stages/pretrain.py): the same
    loop with the causal next-token loss on clean sequences; ``cache_dir`` / ``export_dir`` default to
    ``<output_dir>/cache`` and ``<output_dir>/medim``."""
    from diffusers.training_utils import EMAModel

    from medim.tokenizers.image import load_image_tokenizer
    from medim.tokenizers.text import load_text_tokenizer

    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    causal_lm = objective == "causal_lm"
    out = config.out
    cache_dir = Path(cache_dir) if cache_dir is not None else out / "cache"
    export_dir = Path(export_dir) if export_dir is not None else out / "medim"
    trackers = []
    if config.logging.tensorboard:
        trackers.append("tensorboard")
    if config.logging.wandb:
        try:
            import wandb  # noqa: F401

            trackers.append("wandb")
        except ImportError:
            print("logging.wandb=true but wandb is not installed: skipping W&B", file=sys.stderr)
    accelerator = Accelerator(
        # on a CPU-only host, processes started by `accelerate launch` join a gloo (MULTI_CPU) group
        cpu=not torch.cuda.is_available(),
        mixed_precision=config.optim.mixed_precision,
        log_with=trackers or None,
        project_dir=str(out / "logs"),
    )
    is_main = accelerator.is_main_process
    threads = config.threads or max(1, torch.get_num_threads() // accelerator.num_processes)
    torch.set_num_threads(threads)
    set_seed(config.seed)

    parts = {}
    for needed in ("text_tokenizer", "image_tokenizer"):
        parts[needed] = out / needed
        if not parts[needed].is_dir() and causal_lm:
            parts[needed] = out.parent / needed  # the pretraining run lives inside the main output_dir
        own_codes = needed == "image_tokenizer" and config.model.new_image_codes
        if own_codes and not parts[needed].is_dir():
            raise ValueError(
                f"model.new_image_codes=true needs this run's own image tokenizer at {parts[needed]}: run the vq "
                "stage first (with vq.architecture for the new grid)"
            )
        if not parts[needed].is_dir() and config.model.init_from:
            parts[needed] = (
                Path(config.model.init_from) / needed
            )  # a warm start keeps the source's tokenizers
        if not parts[needed].is_dir():
            raise ValueError(f"{out / needed} is missing: run the tokenizer and vq stages first (or `all`)")
    text_tokenizer = load_text_tokenizer(parts["text_tokenizer"])
    unknown_id = text_tokenizer.unk_token_id  # what unknown-word dropout writes (diffusion.unknown_word_rate)
    image_tokenizer = load_image_tokenizer(parts["image_tokenizer"]).eval()

    model_config = build_model_config(config, text_tokenizer, image_tokenizer)
    model = MeDiMModel(
        model_config, backbone=build_backbone(model_config, pretrained=bool(config.model.backbone_path))
    )
    model.gradient_checkpointing = config.model.gradient_checkpointing
    layout = model.layout
    source_info = {}
    if config.model.init_from:
        # a resumed run gets its weights from the checkpoint, but its chain still starts at the source
        source_info = source_checkpoint_info(Path(config.model.init_from))
        if not resume:
            kept_codes = (
                shared_code_prefix(image_tokenizer, Path(config.model.init_from) / "image_tokenizer")
                if config.model.new_image_codes
                else 0
            )
            if kept_codes:
                accelerator.print(f"image codes 0-{kept_codes - 1} are the source's: their rows are kept")
            warm_start(
                model,
                Path(config.model.init_from),
                new_image_codes=config.model.new_image_codes,
                code_vectors=(
                    _new_code_vectors(image_tokenizer, kept_codes)
                    if config.model.image_code_init == "codebook"
                    else None
                ),
                kept_codes=kept_codes,
                grow_depth=config.model.grow_depth,
            )
            accelerator.print(f"warm start from {config.model.init_from}")

    with accelerator.main_process_first():
        ensure_corpus(config, is_main)
        train_cache = open_cache(
            build_cache(
                config,
                config.data.train_split,
                text_tokenizer,
                image_tokenizer,
                layout,
                cache_dir / "train",
            )
        )
        val_cache = open_cache(
            build_cache(
                config, config.data.val_split, text_tokenizer, image_tokenizer, layout, cache_dir / "val"
            )
        )

    optimizer = _optimizer(model, config)
    progress = TrainingProgress()
    budget = config.optim.max_minutes * 60 if config.optim.max_minutes else math.inf
    started = time.time()

    def spent() -> float:
        """Training seconds so far, across resumes."""
        return progress.seconds + time.time() - started

    scheduler = _scheduler(optimizer, config, clock=lambda: spent() / budget)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    unwrapped = accelerator.unwrap_model(model)
    ema = EMAModel(unwrapped.parameters(), decay=config.optim.ema_decay)
    accelerator.register_for_checkpointing(ema, progress)

    if resume:
        path = latest_checkpoint(out) if resume == "latest" else Path(resume)
        if path is None:
            accelerator.print("no checkpoint to resume from: starting from scratch")
        else:
            accelerator.load_state(str(path))
            accelerator.print(f"resumed from {path} at step {progress.step}")
    started = time.time()  # spent() counts from here on top of progress.seconds

    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "train_config.yaml")
        model_config.save(out / "medim_config.json")
    if trackers:
        accelerator.init_trackers("medim", config={"preset": config.preset, "lr": config.optim.lr})

    stream_offset = data_stream_offset(config, source_info)
    if stream_offset:
        accelerator.print(
            f"batches and masks start at stream position {stream_offset} (after the source's chain)"
        )
    sampler = BatchSampler(
        train_cache,
        config.data.domain_weights,
        config.optim.batch_size,
        config.seed,
        accelerator.process_index,
    )
    train_log = CsvLog(
        out / "logs" / "train.csv",
        ["step", "loss", "nll_image", "nll_text", "lr", "tokens_per_s", "minutes"],
        enabled=is_main,
        append=bool(resume),
    )
    val_log = CsvLog(
        out / "logs" / "val.csv",
        ["step", "val_loss", "val_nll_image", "val_nll_text"],
        enabled=is_main,
        append=bool(resume),
    )
    tokens_per_step = (
        config.optim.batch_size * config.optim.grad_accum * layout.seq_len * accelerator.num_processes
    )
    bar = tqdm(
        total=config.optim.max_steps,
        initial=progress.step,
        disable=not is_main,
        desc="pretrain" if causal_lm else "medim",
        unit="step",
    )
    window_start, window_steps = time.time(), 0
    model.train()
    # The budget is read once per step (`last` below) and, for a resumed run, from the checkpoint: a run resumed
    # after its clock budget was spent (stopped between saving and exporting) goes straight to export, and one
    # resumed from a checkpoint saved before the budget ran out trains on. Reading the clock again in the loop
    # condition would let a run stop right after a periodic save, unsaved as spent, and train more on resume.
    finished = progress.step >= config.optim.max_steps or progress.seconds > budget
    while not finished:
        step = progress.step
        for micro in range(config.optim.grad_accum):
            position = step + stream_offset
            x0, prompts = sampler.batch(position * config.optim.grad_accum + micro, layout)
            generator = _step_generator(config.seed, position, accelerator.process_index, micro)
            loss, stats = stage_loss(
                model, x0, prompts, layout, config, objective, generator, accelerator.device, unknown_id
            )
            accelerator.backward(loss / config.optim.grad_accum)
        if config.optim.clip_grad:
            accelerator.clip_grad_norm_(model.parameters(), config.optim.clip_grad)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(unwrapped.parameters())
        progress.step += 1
        progress.tokens += tokens_per_step
        window_steps += 1
        bar.update(1)

        if progress.step % config.logging.log_every == 0 or progress.step == config.optim.max_steps:
            elapsed = time.time() - window_start
            rate = window_steps * tokens_per_step / max(elapsed, 1e-9)
            window_start, window_steps = time.time(), 0
            row = {
                "step": progress.step,
                "loss": accelerator.gather(loss.detach()[None]).mean().item(),
                "nll_image": float(stats["nll_image"]),
                "nll_text": float(stats["nll_text"]),
                "lr": scheduler.get_last_lr()[0],
                "tokens_per_s": rate,
                "minutes": spent() / 60,
            }
            train_log.write(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{rate:,.0f}")
            if trackers:
                accelerator.log({k: v for k, v in row.items() if k != "step"}, step=progress.step)

        last = progress.step == config.optim.max_steps or spent() > budget
        if config.eval.val_every and (progress.step % config.eval.val_every == 0 or last):
            with ema_weights(ema, unwrapped):
                val = validation_loss(
                    unwrapped, val_cache, layout, config, accelerator.device, objective=objective
                )
            val_log.write({"step": progress.step, **val})
            if trackers:
                accelerator.log(val, step=progress.step)
            model.train()
        sampling_due = config.eval.sample_every and progress.step % config.eval.sample_every == 0
        if sampling_due and is_main and not causal_lm:
            with ema_weights(ema, unwrapped):
                write_samples(unwrapped, text_tokenizer, image_tokenizer, val_cache, config, progress.step)
            model.train()
        if (config.eval.save_every and progress.step % config.eval.save_every == 0) or last:
            progress.seconds, started = spent(), time.time()
            save_checkpoint(accelerator, out, progress.step, config.eval.keep_checkpoints)
        if last:
            break
    bar.close()
    accelerator.wait_for_everyone()
    check_processes_agree(accelerator, unwrapped)
    wall_minutes = spent() / 60
    if is_main:
        with ema_weights(ema, unwrapped):
            if not causal_lm:  # MaskGIT samples of a causal LM say nothing
                write_samples(unwrapped, text_tokenizer, image_tokenizer, val_cache, config, progress.step)
            export(
                unwrapped,
                text_tokenizer,
                image_tokenizer,
                config,
                progress,
                wall_minutes,
                export_dir,
                source_info,
                objective=objective,
                trained_text_ids=trained_text_ids(train_cache, layout, config.model.init_from),
            )
        plot_loss_curves(out / "logs")
    # the other processes wait here while the main one exports: the process group is torn down together, so
    # no rank exits (and closes its side) while another still holds the group
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return export_dir


def check_processes_agree(accelerator, model) -> None:
    """Data-parallel replicas must hold identical weights; a mismatch means a broken distributed setup."""
    if accelerator.num_processes == 1:
        return
    checksum = (
        torch.stack([p.detach().double().sum() for p in model.parameters()])
        .sum()[None]
        .to(accelerator.device)
    )
    gathered = accelerator.gather(checksum).cpu()
    if not torch.allclose(gathered, gathered[0].expand_as(gathered), rtol=1e-9, atol=0):
        raise RuntimeError(f"processes disagree on the weights: checksums {gathered.tolist()}")
    accelerator.print(
        f"{accelerator.num_processes} processes agree on the final weights (checksum {gathered[0]:.6f})"
    )


class ema_weights:
    """Context manager: temporarily load the EMA weights into the model."""

    def __init__(self, ema, model):
        self.ema, self.model = ema, model

    def __enter__(self):
        self.ema.store(self.model.parameters())
        self.ema.copy_to(self.model.parameters())
        self.model.eval()

    def __exit__(self, *exc):
        self.ema.restore(self.model.parameters())


def stage_loss(
    model, x0, prompts, layout, config: TrainConfig, objective: str, generator, device, unknown_id=None
):
    """(loss, stats) of one batch of clean sequences x0 [B, L] for the stage's objective: the next-token loss
    (pretraining) or eq. 6 on a copy masked by the forward process with ``generator`` (diffusion; visible report
    tokens become ``unknown_id`` at the config's ``unknown_word_rate``)."""
    if objective == "causal_lm":
        x0 = x0.to(device)
        return causal_lm_loss(model(x0, torch.zeros(x0.shape[0], device=device)), x0, layout)
    batch = make_training_batch(
        x0, layout, config.diffusion, prompt_lengths=prompts, unknown_id=unknown_id, generator=generator
    )
    batch = type(batch)(
        x0=batch.x0.to(device),
        xt=batch.xt.to(device),
        t=batch.t.to(device),
        target_mask=batch.target_mask.to(device),
        task=batch.task,
    )
    return diffusion_loss(model(batch.xt, batch.t), batch, layout, config.diffusion)


@torch.no_grad()
def validation_loss(
    model, cache, layout, config: TrainConfig, device, objective: str = "diffusion"
) -> dict[str, float]:
    """Eq. 6 loss (or, for the pretraining stage, the next-token loss) on fixed validation batches with fixed
    masks, so values are comparable across steps, and across runs: the reports are read as written (no
    unknown-word dropout)."""
    config = replace(config, diffusion=replace(config.diffusion, unknown_word_rate=0.0))
    sampler = BatchSampler(cache, config.data.domain_weights, config.optim.batch_size, seed=12345)
    totals = {"val_loss": 0.0, "val_nll_image": 0.0, "val_nll_text": 0.0}
    for index in range(config.eval.val_batches):
        x0, prompts = sampler.batch(index, layout)
        generator = torch.Generator().manual_seed(index)
        loss, stats = stage_loss(model, x0, prompts, layout, config, objective, generator, device)
        totals["val_loss"] += loss.item()
        totals["val_nll_image"] += float(stats["nll_image"])
        totals["val_nll_text"] += float(stats["nll_text"])
    return {k: v / max(1, config.eval.val_batches) for k, v in totals.items()}


def _pipeline(model, text_tokenizer, image_tokenizer, config: TrainConfig, info=None, trained_text_ids=None):
    from medim.pipeline import MeDiMPipeline

    info = {"noise_schedule": config.diffusion.schedule, **(info or {})}
    return MeDiMPipeline(
        model,
        text_tokenizer,
        image_tokenizer,
        config.sampler,
        info=info,
        diffusion_config=config.diffusion,
        trained_text_ids=trained_text_ids,
    )


def trained_text_ids(cache, layout, init_from=None) -> list[int]:
    """The report ids this run's training reports hold, with those of the chain it continues (the source's
    trained_text_ids.json): the words the exported model can read."""
    import numpy as np

    from medim.pipeline import load_trained_text_ids

    ids = {int(i) for i in np.unique(np.asarray(cache.text_ids)) if 0 <= i < layout.text_vocab_size}
    source_ids = load_trained_text_ids(init_from) if init_from else None
    ids |= set(source_ids or ())
    return sorted(ids)


def write_samples(model, text_tokenizer, image_tokenizer, cache, config: TrainConfig, step: int) -> None:
    """A few report→image and image→report samples from validation pairs, for a look during training."""
    from medim.data.preprocess import from_model_tensor  # noqa: F401  (keeps import errors visible early)

    pipe = _pipeline(model, text_tokenizer, image_tokenizer, config)
    layout = pipe.layout
    count = min(config.eval.sample_count, len(cache))
    rows = list(range(count))
    text = torch.from_numpy(cache.text_ids[rows].astype("int64"))
    codes = torch.from_numpy(cache.image_codes[rows].astype("int64"))
    references = [pipe.decode_report(ids) for ids in layout.text_ids(layout.pack(text, codes))]
    out = config.out / "logs" / "samples" / f"step_{step:06d}"
    out.mkdir(parents=True, exist_ok=True)
    image_result = pipe.generate_image(references, seed=0)
    reference_images = pipe.decode_images(codes)
    report_result = pipe.generate_report(reference_images, seed=0)
    for index in range(count):
        reference_images[index].save(out / f"{index}_reference.png")
        image_result.images[index].save(out / f"{index}_generated.png")
    records = [
        {"reference_report": ref, "generated_report": gen}
        for ref, gen in zip(references, report_result.reports)
    ]
    (out / "reports.json").write_text(json.dumps(records, indent=2) + "\n")
    model.train()


def export(
    model,
    text_tokenizer,
    image_tokenizer,
    config: TrainConfig,
    progress,
    wall_minutes,
    export_dir,
    source_info=None,
    objective: str = "diffusion",
    trained_text_ids=None,
) -> None:
    train_csv = config.out / "logs" / "train.csv"
    val_csv = config.out / "logs" / "val.csv"
    info = {
        "kind": "trained" if objective == "diffusion" else "pretrained",
        "objective": objective,
        "description": f"MeDiM trained with the {config.preset} preset"
        if objective == "diffusion"
        else f"causal-LM pretraining of the MeDiM backbone ({config.preset} preset), to be adapted by `medim`",
        "preset": config.preset,
        "steps": progress.step,
        "tokens_seen": progress.tokens,
        "wall_minutes": round(wall_minutes, 1),
        "final_train": CsvLog.last_row(train_csv),
        "final_val": CsvLog.last_row(val_csv),
        "data": {
            "source": config.data.source,
            "synthetic_n": config.data.synthetic_n,
            "synthetic_split_fractions": list(config.data.synthetic_split_fractions),
            "image_size": config.data.image_size,
        },
        "ema_decay": config.optim.ema_decay,
        "command": " ".join(["python", "-m", "train", *sys.argv[1:]]),
    }
    info["runs"] = training_chain(source_info or {}, config, info)
    pipe = _pipeline(model, text_tokenizer, image_tokenizer, config, info, trained_text_ids)
    pipe.save_pretrained(export_dir)
    shutil.copy(config.out / "train_config.yaml", export_dir / "train_config.yaml")
    print(f"exported pipeline -> {export_dir}")


def training_chain(source_info: dict, config: TrainConfig, info: dict) -> list[dict]:
    """The runs that made this checkpoint, oldest first: the warm-start source's chain (or, for a source saved
    before chains were recorded, its own summary) followed by this run."""
    import platform

    chain = list(source_info.get("runs") or [])
    if source_info and not chain and source_info.get("kind") == "trained":
        chain = [{k: source_info.get(k) for k in ("command", "steps", "tokens_seen", "wall_minutes")}]
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    chain.append(
        {
            "command": info["command"],
            "objective": info.get("objective", "diffusion"),
            "init_from": config.model.init_from,
            "seed": config.seed,
            "stream_offset": data_stream_offset(config, source_info),
            "steps": info["steps"],
            "tokens_seen": info["tokens_seen"],
            "wall_minutes": info["wall_minutes"],
            "device": device,
            "final_val": info["final_val"],
        }
    )
    return chain


def save_checkpoint(accelerator, out: Path, step: int, keep: int) -> None:
    path = out / "checkpoints" / f"step_{step:07d}"
    accelerator.save_state(str(path), safe_serialization=True)
    if accelerator.is_main_process and keep:
        old = sorted((out / "checkpoints").glob("step_*"))[:-keep]
        for directory in old:
            shutil.rmtree(directory, ignore_errors=True)
