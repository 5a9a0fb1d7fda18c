"""Training and evaluation of the VQ image tokenizer: reconstruction + VQ losses, k-means init, dead-code restart."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from .image import VQConfig, VQImageTokenizer

# ---------------------------------------------------------------------------------------------------- configs


@dataclass
class VQTrainingOptions:
    """Loss weights and codebook-maintenance settings for ``train_vq``.

    The losses follow van den Oord et al. (2017): ``codebook_weight * ||sg[z] - e||²`` moves the codes towards
    the encoder outputs and ``commitment_beta * ||z - sg[e]||²`` keeps the encoder near its codes. They are
    computed here rather than taken from ``diffusers``' ``VectorQuantizer``, whose default ``legacy=True`` puts
    ``beta`` on the codebook term instead of the commitment term.
    """

    l1_weight: float = 1.0
    l2_weight: float = 1.0
    codebook_weight: float = 1.0
    commitment_beta: float = 0.25
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    # k-means init of the codebook from the encoder outputs of the first batches (0 disables it).
    kmeans_batches: int = 4
    kmeans_iters: int = 20
    # Every ``restart_every`` steps, codes chosen fewer than ``restart_min_count`` times since the last restart are
    # re-seeded from recent encoder outputs; small codebooks trained briefly otherwise leave most codes unused.
    restart_every: int = 25
    restart_min_count: int = 1
    restart_until_fraction: float = 0.9
    latent_buffer_size: int = 8192
    # Weight of the finding-feature (perceptual) distance between reconstruction and input; needs the
    # ``feature_loss`` argument of ``train_vq``. Pixel losses alone spend the few bits of an 8x8 code grid on
    # where each texture edge falls; the feature distance asks for what a reader of findings sees instead.
    perceptual_weight: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "l1_weight",
            "l2_weight",
            "codebook_weight",
            "commitment_beta",
            "weight_decay",
            "grad_clip",
            "perceptual_weight",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.l1_weight == 0 and self.l2_weight == 0:
            raise ValueError("l1_weight and l2_weight are both 0: there would be no reconstruction loss")
        for name in ("warmup_steps", "kmeans_batches", "restart_every", "restart_min_count"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.kmeans_batches and self.kmeans_iters < 1:
            raise ValueError(f"kmeans_iters must be >= 1 when k-means init is on, got {self.kmeans_iters!r}")
        if not 0.0 < self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in (0, 1], got {self.min_lr_ratio!r}")
        if not 0.0 <= self.restart_until_fraction <= 1.0:
            raise ValueError(f"restart_until_fraction must be in [0, 1], got {self.restart_until_fraction!r}")
        if self.latent_buffer_size < 1:
            raise ValueError(f"latent_buffer_size must be >= 1, got {self.latent_buffer_size!r}")


@dataclass
class VQTrainingRecipe:
    """A complete training recipe: how many steps, batch size, learning rate and the loss/codebook options."""

    steps: int
    batch_size: int
    lr: float
    options: VQTrainingOptions = field(default_factory=VQTrainingOptions)

    def to_dict(self) -> dict:
        return asdict(self)


def default_demo_vq_config() -> VQConfig:
    """Architecture of the embedded default tokenizer: 64x64 RGB → 8x8 grid of 512 codes (1.06M params, 4.2 MB).

    Full-resolution layers stay narrow (16/32 channels) because they dominate CPU time; at 8x8 tokens per image
    the codebook, not the decoder width, limits what a reconstruction can carry.
    """
    return VQConfig(
        image_size=64,
        block_out_channels=(16, 32, 64, 64),
        layers_per_block=1,
        latent_channels=64,
        vq_embed_dim=16,
        num_vq_embeddings=512,
        norm_num_groups=16,
        mid_block_add_attention=True,
    )


def default_demo_vq_recipe() -> VQTrainingRecipe:
    """Training recipe for ``default_demo_vq_config``: about 10 minutes on an otherwise idle 2-core CPU.

    Small batches with a high learning rate: with so few images seen, more updates beat larger batches.
    """
    return VQTrainingRecipe(steps=1000, batch_size=16, lr=3e-3, options=VQTrainingOptions(warmup_steps=20))


# ---------------------------------------------------------------------------------------------------- helpers


def _batches(images: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Endless stream of batches; re-iterates ``images`` (e.g. a DataLoader) each time it runs out."""
    while True:
        iterator = iter(images)
        reiterable = iterator is not images
        empty = True
        for batch in iterator:
            empty = False
            yield batch
        if empty:
            raise ValueError("the image iterable yielded no batches")
        if not reiterable:
            raise ValueError(
                "the image iterator ran out before training finished; pass a re-iterable (list, DataLoader) "
                "or enough batches for all steps"
            )


def _check_batch(batch: object, tokenizer: VQImageTokenizer) -> torch.Tensor:
    if not isinstance(batch, torch.Tensor) or not batch.is_floating_point():
        raise ValueError(f"image batches must be float tensors [B, 3, H, W], got {type(batch).__name__}")
    size = tokenizer.image_size
    if batch.ndim != 4 or tuple(batch.shape[1:]) != (3, size, size):
        raise ValueError(f"image batches must have shape [B, 3, {size}, {size}], got {list(batch.shape)}")
    return batch.to(device=tokenizer.device, dtype=tokenizer.dtype)


def psnr_per_image(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in ``[-1, 1]`` (equivalently ``[0, 1]`` with peak 1): ``[B, C, H, W]`` x2 → ``[B]``."""
    mse = (reconstruction.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    # Peak-to-peak range is 2 in [-1, 1] space, so PSNR = 10 log10(2² / mse).
    return 10.0 * torch.log10(4.0 / mse.clamp_min(1e-10))


def code_statistics(counts: torch.Tensor) -> tuple[float, float]:
    """(fraction of codes used, perplexity = exp(entropy) of the code histogram) from counts ``[codebook_size]``."""
    total = counts.sum()
    if total <= 0:
        return 0.0, 0.0
    probs = counts.double() / total
    nonzero = probs[probs > 0]
    entropy = -(nonzero * nonzero.log()).sum().item()
    return (counts > 0).double().mean().item(), math.exp(entropy)


def kmeans(vectors: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding: ``vectors [N, D]`` → centroids ``[k, D]``.

    With fewer distinct vectors than ``k`` the surplus centroids are copies plus tiny noise; dead-code restarts
    later move them to where the data is.
    """
    n = vectors.shape[0]
    first = torch.randint(n, (1,), generator=generator, device=vectors.device)
    centroids = [vectors[first]]
    nearest_sq = torch.cdist(vectors, centroids[0]).squeeze(1).pow(2)
    for _ in range(1, k):
        weights = nearest_sq.clamp_min(0)
        if weights.sum() <= 0:
            weights = torch.ones_like(weights)
        pick = torch.multinomial(weights, 1, generator=generator)
        centroids.append(vectors[pick])
        nearest_sq = torch.minimum(nearest_sq, torch.cdist(vectors, vectors[pick]).squeeze(1).pow(2))
    centres = torch.cat(centroids)
    for _ in range(iters):
        assignment = torch.cdist(vectors, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assignment, vectors)
        counts = torch.bincount(assignment, minlength=k).to(vectors.dtype)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    jitter = 1e-4 * vectors.std().clamp_min(1e-6)
    return centres + jitter * torch.randn(centres.shape, generator=generator, device=vectors.device)


def _flatten_latents(latents: torch.Tensor) -> torch.Tensor:
    """``[B, D, h, w]`` → ``[B*h*w, D]`` (detached)."""
    return latents.detach().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])


class _LatentBuffer:
    """Ring buffer of recent encoder outputs, the pool that k-means init and dead-code restarts draw from."""

    def __init__(self, capacity: int, dim: int, device: torch.device, dtype: torch.dtype) -> None:
        self.data = torch.empty(capacity, dim, device=device, dtype=dtype)
        self.size = 0
        self.cursor = 0

    def add(self, vectors: torch.Tensor) -> None:
        capacity = self.data.shape[0]
        vectors = vectors[-capacity:]
        end = self.cursor + vectors.shape[0]
        if end <= capacity:
            self.data[self.cursor : end] = vectors
        else:
            split = capacity - self.cursor
            self.data[self.cursor :] = vectors[:split]
            self.data[: end - capacity] = vectors[split:]
        self.cursor = end % capacity
        self.size = min(capacity, self.size + vectors.shape[0])

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(self.size, (n,), generator=generator, device=self.data.device)
        return self.data[index]


def _reset_optimizer_rows(optimizer: torch.optim.Optimizer, param: torch.Tensor, rows: torch.Tensor) -> None:
    """Zero Adam's moment estimates for re-seeded codebook rows so stale momentum does not drag them away."""
    state = optimizer.state.get(param, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][rows] = 0


def restart_dead_codes(
    tokenizer: VQImageTokenizer,
    counts: torch.Tensor,
    pool: torch.Tensor,
    min_count: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Re-seed codes used fewer than ``min_count`` times with vectors drawn from ``pool``.

    Args:
        tokenizer: the tokenizer whose codebook is edited in place.
        counts: ``[codebook_size]`` usage counts since the last restart.
        pool: ``[N, vq_embed_dim]`` recent encoder outputs to draw replacements from.
        min_count: codes with ``counts < min_count`` count as dead.
        generator: RNG for the draw.

    Returns:
        LongTensor of the re-seeded code indices.
    """
    dead = torch.nonzero(counts < min_count).squeeze(1)
    if dead.numel() == 0 or pool.shape[0] == 0:
        return dead[:0]
    index = torch.randint(pool.shape[0], (dead.numel(),), generator=generator, device=pool.device)
    # A little noise keeps codes re-seeded from the same vector apart; its scale follows the pool's spread.
    spread = pool.std(dim=0, keepdim=True) if pool.shape[0] > 1 else torch.zeros_like(pool[:1])
    noise = 0.01 * spread * torch.randn(dead.numel(), pool.shape[1], generator=generator, device=pool.device)
    with torch.no_grad():
        tokenizer.codebook[dead] = pool[index] + noise
    return dead


# ---------------------------------------------------------------------------------------------------- perceptual


class FindingFeatureLoss(torch.nn.Module):
    """LPIPS-style distance in the feature maps of a finding classifier (a ``FindingJudgeNet``).

    Each stage's activations are unit-normalised over channels; the loss is the squared distance summed over
    channels, averaged over positions, then over stages (Zhang et al. 2018, without the learned channel weights).
    The network is frozen and kept in eval mode (its BatchNorm statistics are those of real images). Train it on
    the tokenizer's training split only: the evaluation judge must stay independent of the tokenizer.
    """

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        body = getattr(network, "body", None)
        if not isinstance(body, torch.nn.Sequential) or len(body) == 0:
            raise ValueError(
                "the feature network must expose a non-empty nn.Sequential `body` (FindingJudgeNet)"
            )
        self.body = body.eval()
        for param in self.body.parameters():
            param.requires_grad_(False)

    def train(self, mode: bool = True):
        # the classifier stays in eval mode whatever the caller does
        return super().train(False)

    def _features(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        features, x = [], pixels
        for stage in self.body:
            x = stage(x)
            features.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-8))
        return features

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wanted = self._features(target)
        got = self._features(reconstruction)
        return torch.stack([(g - w).pow(2).sum(dim=1).mean() for g, w in zip(got, wanted)]).mean()


# ---------------------------------------------------------------------------------------------------- training


def _lr_factor(step: int, steps: int, options: VQTrainingOptions) -> float:
    """Linear warmup then cosine decay to ``min_lr_ratio``."""
    if step < options.warmup_steps:
        return (step + 1) / options.warmup_steps
    progress = (step - options.warmup_steps) / max(1, steps - options.warmup_steps)
    return options.min_lr_ratio + (1 - options.min_lr_ratio) * 0.5 * (
        1 + math.cos(math.pi * min(progress, 1.0))
    )


def _checked_training_arguments(
    options, feature_loss, steps: int, lr: float, log_every: int
) -> VQTrainingOptions:
    """``options`` (default ``VQTrainingOptions()``) after the argument checks ``train_vq`` and
    ``finetune_decoder`` share."""
    options = options or VQTrainingOptions()
    if options.perceptual_weight > 0 and feature_loss is None:
        raise ValueError("options.perceptual_weight > 0 needs a feature_loss (e.g. FindingFeatureLoss)")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every!r}")
    return options


def _reconstruction_losses(
    reconstruction: torch.Tensor, batch: torch.Tensor, options: VQTrainingOptions, feature_loss
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weighted L1 + L2 pixel loss, finding-feature distance or 0 when its weight is 0), unweighted by
    ``perceptual_weight``."""
    error = reconstruction - batch
    rec_loss = options.l1_weight * error.abs().mean() + options.l2_weight * error.pow(2).mean()
    if options.perceptual_weight > 0:
        return rec_loss, feature_loss(reconstruction, batch)
    return rec_loss, torch.zeros((), device=batch.device)


def train_vq(
    tokenizer: VQImageTokenizer,
    images: Iterable[torch.Tensor],
    steps: int,
    lr: float,
    *,
    log_every: int = 50,
    callback: Callable[[dict], None] | None = None,
    options: VQTrainingOptions | None = None,
    feature_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> list[dict]:
    """Train ``tokenizer`` in place on batches of images.

    Args:
        tokenizer: the VQ tokenizer to train (its device and dtype are used).
        images: iterable of float tensors ``[B, 3, H, W]`` in ``[-1, 1]`` (``H == W == tokenizer.image_size``);
            re-iterated when exhausted, so a DataLoader or a list of batches works.
        steps: optimisation steps.
        lr: peak AdamW learning rate (linear warmup, cosine decay).
        log_every: a history record is made every ``log_every`` steps and at the last step.
        callback: called with each history record as it is made.
        options: loss weights and codebook maintenance, ``VQTrainingOptions()`` by default.
        feature_loss: ``(reconstruction, images) -> scalar`` weighted by ``options.perceptual_weight`` (e.g.
            ``FindingFeatureLoss``); required when that weight is positive.

    Returns:
        History: a list of dicts with ``step``, ``loss``, ``rec_loss``, ``codebook_loss``, ``commit_loss``,
        ``psnr`` (training batches since the last record), ``codebook_usage`` and ``perplexity`` (codes chosen
        since the last record), ``restarted`` (codes re-seeded since the last record), ``lr`` and ``seconds``.
    """
    options = _checked_training_arguments(options, feature_loss, steps, lr, log_every)

    device = tokenizer.device
    generator = torch.Generator(device=device).manual_seed(options.seed)
    codebook = tokenizer.codebook
    buffer = _LatentBuffer(options.latent_buffer_size, codebook.shape[1], device, codebook.dtype)
    stream = _batches(images)
    pending: list[torch.Tensor] = []

    tokenizer.train()
    if options.kmeans_batches:
        # Initialise the codebook from what the (untrained) encoder actually outputs, so every code starts in use.
        with torch.no_grad():
            for _ in range(options.kmeans_batches):
                batch = _check_batch(next(stream), tokenizer)
                pending.append(batch)
                buffer.add(_flatten_latents(tokenizer.encode_latents(batch)))
            pool = buffer.data[: buffer.size]
            codebook.copy_(kmeans(pool, tokenizer.codebook_size, options.kmeans_iters, generator))

    optimizer = torch.optim.AdamW(tokenizer.parameters(), lr=lr, weight_decay=options.weight_decay)
    counts_since_restart = torch.zeros(tokenizer.codebook_size, device=device)
    counts_since_log = torch.zeros(tokenizer.codebook_size, device=device)
    sums = {
        "loss": 0.0,
        "rec_loss": 0.0,
        "codebook_loss": 0.0,
        "commit_loss": 0.0,
        "perceptual": 0.0,
        "psnr": 0.0,
    }
    images_since_log = steps_since_log = restarted_since_log = 0
    history: list[dict] = []
    start = time.perf_counter()
    restart_until = int(options.restart_until_fraction * steps)

    for step in range(steps):
        batch = pending.pop(0) if pending else _check_batch(next(stream), tokenizer)
        for group in optimizer.param_groups:
            group["lr"] = lr * _lr_factor(step, steps, options)

        latents = tokenizer.encode_latents(batch)
        ids = tokenizer.nearest_codes(latents.detach())
        codes = tokenizer.lookup_codes(ids)
        codebook_loss = F.mse_loss(codes, latents.detach())
        commit_loss = F.mse_loss(latents, codes.detach())
        # Straight-through estimator: the decoder sees the codes, the encoder receives the decoder's gradient.
        quantized = latents + (codes - latents).detach()
        reconstruction = tokenizer.decode_codes(quantized)
        rec_loss, perceptual = _reconstruction_losses(reconstruction, batch, options, feature_loss)
        loss = (
            rec_loss
            + options.codebook_weight * codebook_loss
            + options.commitment_beta * commit_loss
            + options.perceptual_weight * perceptual
        )

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if options.grad_clip:
            torch.nn.utils.clip_grad_norm_(tokenizer.parameters(), options.grad_clip)
        optimizer.step()

        with torch.no_grad():
            flat_ids = ids.flatten()
            step_counts = torch.bincount(flat_ids, minlength=tokenizer.codebook_size).to(
                counts_since_log.dtype
            )
            counts_since_restart += step_counts
            counts_since_log += step_counts
            buffer.add(_flatten_latents(latents))
            sums["loss"] += loss.item()
            sums["rec_loss"] += rec_loss.item()
            sums["codebook_loss"] += codebook_loss.item()
            sums["commit_loss"] += commit_loss.item()
            sums["perceptual"] += perceptual.item()
            sums["psnr"] += psnr_per_image(reconstruction.clamp(-1, 1), batch).sum().item()
            images_since_log += batch.shape[0]
            steps_since_log += 1

            if options.restart_every and (step + 1) % options.restart_every == 0 and step + 1 < restart_until:
                dead = restart_dead_codes(
                    tokenizer,
                    counts_since_restart,
                    buffer.data[: buffer.size],
                    options.restart_min_count,
                    generator,
                )
                _reset_optimizer_rows(optimizer, codebook, dead)
                restarted_since_log += dead.numel()
                counts_since_restart.zero_()

        if (step + 1) % log_every == 0 or step + 1 == steps:
            usage, perplexity = code_statistics(counts_since_log)
            record = {
                "step": step + 1,
                "loss": sums["loss"] / steps_since_log,
                "rec_loss": sums["rec_loss"] / steps_since_log,
                "codebook_loss": sums["codebook_loss"] / steps_since_log,
                "commit_loss": sums["commit_loss"] / steps_since_log,
                "perceptual_loss": sums["perceptual"] / steps_since_log,
                "psnr": sums["psnr"] / images_since_log,
                "codebook_usage": usage,
                "perplexity": perplexity,
                "restarted": restarted_since_log,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - start,
            }
            history.append(record)
            if callback is not None:
                callback(record)
            sums = dict.fromkeys(sums, 0.0)
            counts_since_log.zero_()
            images_since_log = steps_since_log = restarted_since_log = 0

    tokenizer.eval()
    return history


def finetune_decoder(
    tokenizer: VQImageTokenizer,
    images: Iterable[torch.Tensor],
    steps: int,
    lr: float,
    *,
    log_every: int = 50,
    callback: Callable[[dict], None] | None = None,
    options: VQTrainingOptions | None = None,
    feature_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> list[dict]:
    """Train only the decoder side (``post_quant_conv`` + decoder) on the frozen codes of ``images``.

    The encoder, ``quant_conv`` and codebook are not touched, so every image keeps exactly its token ids: a
    denoiser trained on this tokenizer's codes stays valid, and what it draws is rendered by a decoder that has
    seen more images. The losses are ``train_vq``'s reconstruction and finding-feature terms (the codebook and
    commitment terms have nothing to train here).

    Args and returns as ``train_vq``; history records carry ``step``, ``loss``, ``rec_loss``,
    ``perceptual_loss``, ``psnr``, ``lr`` and ``seconds``.
    """
    options = _checked_training_arguments(options, feature_loss, steps, lr, log_every)

    vq_model = tokenizer.vq_model
    trained = [*vq_model.post_quant_conv.parameters(), *vq_model.decoder.parameters()]
    trained_ids = {id(p) for p in trained}
    frozen = [p for p in tokenizer.parameters() if id(p) not in trained_ids]
    for param in frozen:
        param.requires_grad_(False)
    optimizer = torch.optim.AdamW(trained, lr=lr, weight_decay=options.weight_decay)
    stream = _batches(images)
    sums = {"loss": 0.0, "rec_loss": 0.0, "perceptual": 0.0, "psnr": 0.0}
    images_since_log = steps_since_log = 0
    history: list[dict] = []
    start = time.perf_counter()
    tokenizer.train()
    try:
        for step in range(steps):
            batch = _check_batch(next(stream), tokenizer)
            for group in optimizer.param_groups:
                group["lr"] = lr * _lr_factor(step, steps, options)
            with torch.no_grad():
                codes = tokenizer.lookup_codes(tokenizer.nearest_codes(tokenizer.encode_latents(batch)))
            reconstruction = tokenizer.decode_codes(codes)
            rec_loss, perceptual = _reconstruction_losses(reconstruction, batch, options, feature_loss)
            loss = rec_loss + options.perceptual_weight * perceptual
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if options.grad_clip:
                torch.nn.utils.clip_grad_norm_(trained, options.grad_clip)
            optimizer.step()

            sums["loss"] += loss.item()
            sums["rec_loss"] += rec_loss.item()
            sums["perceptual"] += perceptual.item()
            with torch.no_grad():
                sums["psnr"] += psnr_per_image(reconstruction.clamp(-1, 1), batch).sum().item()
            images_since_log += batch.shape[0]
            steps_since_log += 1
            if (step + 1) % log_every == 0 or step + 1 == steps:
                record = {
                    "step": step + 1,
                    "loss": sums["loss"] / steps_since_log,
                    "rec_loss": sums["rec_loss"] / steps_since_log,
                    "perceptual_loss": sums["perceptual"] / steps_since_log,
                    "psnr": sums["psnr"] / images_since_log,
                    "lr": optimizer.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - start,
                }
                history.append(record)
                if callback is not None:
                    callback(record)
                sums = dict.fromkeys(sums, 0.0)
                images_since_log = steps_since_log = 0
    finally:
        for param in frozen:
            param.requires_grad_(True)
        tokenizer.eval()
    return history


# ---------------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_vq(tokenizer: VQImageTokenizer, images: Iterable[torch.Tensor]) -> dict[str, float]:
    """Reconstruction quality and code usage on held-out images.

    Args:
        tokenizer: trained tokenizer.
        images: iterable of float tensors ``[B, 3, H, W]`` in ``[-1, 1]``, read once.

    Returns:
        ``psnr`` (mean per-image dB), ``mse`` (in [-1, 1] space), ``codebook_usage`` (fraction of codes used at
        least once), ``perplexity`` (exp entropy of the code histogram; at most ``codebook_size``) and
        ``num_images``.
    """
    was_training = tokenizer.training
    tokenizer.eval()
    counts = torch.zeros(tokenizer.codebook_size, dtype=torch.float64)
    psnr_sum = mse_sum = 0.0
    n_images = 0
    for batch in images:
        batch = _check_batch(batch, tokenizer)
        ids = tokenizer.encode(batch)
        reconstruction = tokenizer.decode(ids)
        counts += torch.bincount(ids.flatten().cpu(), minlength=tokenizer.codebook_size).double()
        psnr_sum += psnr_per_image(reconstruction, batch).sum().item()
        mse_sum += (reconstruction - batch).pow(2).flatten(1).mean(dim=1).sum().item()
        n_images += batch.shape[0]
    tokenizer.train(was_training)
    if n_images == 0:
        raise ValueError("evaluate_vq received no image batches")
    usage, perplexity = code_statistics(counts)
    return {
        "psnr": psnr_sum / n_images,
        "mse": mse_sum / n_images,
        "codebook_usage": usage,
        "perplexity": perplexity,
        "num_images": n_images,
    }
