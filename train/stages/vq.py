"""Stage `vq`: train the image tokenizer on the training images into <output_dir>/image_tokenizer: a VQ
(vq.kind=vq, the default), patch k-means centres (vq.kind=patch_kmeans), or a routed tokenizer that keeps an
existing tokenizer for grey images and fits patch k-means for colour ones (vq.kind=routed)."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from train.config import TrainConfig
from train.data import corpus_root, ensure_corpus, load_split
from train.stages.tokenizer import _warm_start_part


class _Pixels(torch.utils.data.Dataset):
    def __init__(self, dataset, image_size: int):
        self.dataset = dataset
        self.image_size = image_size

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        from medim.data.preprocess import to_model_tensor

        return to_model_tensor(self.dataset[index].image, self.image_size)


def _feature_loss(config: TrainConfig):
    """The perceptual loss's finding classifier: loaded from vq.feature_network, or trained on the training split
    (its own seed, so it is not the evaluation judge)."""
    from medim.metrics.judge import ConsistencyJudge, train_judge
    from medim.tokenizers.vq_training import FindingFeatureLoss

    if config.vq.feature_network:
        network = ConsistencyJudge.load(config.vq.feature_network)
    else:
        network = train_judge(
            corpus_root(config),
            image_size=config.data.image_size,
            epochs=config.vq.feature_epochs,
            seed=config.seed + 1,
            train_split=config.data.train_split,
            heldout_split=config.data.val_split,
            max_minutes=None,
        )
        network.save(config.out / "image_tokenizer_features")
        print(
            f"feature network for the VQ's perceptual loss: {network.record.get('heldout', {}).get('macro_auc')}"
        )
    return FindingFeatureLoss(network.network)


def run(config: TrainConfig) -> Path:
    from medim.tokenizers.image import VQConfig, VQImageTokenizer, load_image_tokenizer
    from medim.tokenizers.vq_training import evaluate_vq, train_vq

    out = config.out / "image_tokenizer"
    if config.vq.kind == "routed":
        return _fit_routed(config, out)
    # a warm start keeps its source's image tokenizer unless the run asks for image codes of its own
    inherited = None if config.model.new_image_codes else _warm_start_part(config, "image_tokenizer")
    source = config.vq.path or inherited
    if source:
        tokenizer = load_image_tokenizer(source)
        if config.vq.decoder_steps:
            if not isinstance(tokenizer, VQImageTokenizer):
                raise ValueError(
                    f"vq.decoder_steps trains a VQ decoder; {source} is a patch k-means tokenizer"
                )
            return _finetune_decoder(config, tokenizer, Path(source), out)
        tokenizer.save_pretrained(out)
        return out
    ensure_corpus(config)
    if config.vq.kind == "patch_kmeans":
        return _fit_patch_kmeans(config, out)
    torch.manual_seed(config.seed)
    architecture = {**config.vq.architecture, "image_size": config.data.image_size}
    tokenizer = VQImageTokenizer.from_config(VQConfig.from_dict(architecture))
    options, feature_loss = _training_options(config)
    started = time.time()
    with _json_log(config.out / "logs" / "vq.jsonl", "vq") as record:
        train_vq(
            tokenizer,
            _train_images(config),
            config.vq.steps,
            config.vq.lr,
            log_every=50,
            callback=record,
            options=options,
            feature_loss=feature_loss,
        )
    metrics = evaluate_vq(tokenizer.eval(), _val_images(config))
    metrics["train_minutes"] = (time.time() - started) / 60
    tokenizer.save_pretrained(out)
    (out / "val_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"image tokenizer -> {out}; validation {metrics}")
    return out


def _patch_kmeans(config: TrainConfig, keep=None):
    """Patch k-means fitted on the first vq.kmeans_images training images (those ``keep`` accepts, if given)."""
    from medim.tokenizers.patch_kmeans import PatchKMeansTokenizer

    train = _Pixels(load_split(config, config.data.train_split), config.data.image_size)
    images = torch.utils.data.Subset(train, range(min(config.vq.kmeans_images, len(train))))
    batches = DataLoader(images, batch_size=256, num_workers=config.data.num_workers)
    if keep is not None:
        batches = [batch[keep(batch)] for batch in batches]
    return PatchKMeansTokenizer.fit(
        batches,
        codebook_size=config.vq.kmeans_codes,
        patch=config.vq.kmeans_patch,
        samples=config.vq.kmeans_samples,
        iterations=config.vq.kmeans_iterations,
        seed=config.seed,
        quantile_weight=config.vq.kmeans_quantile_weight,
        draw=config.vq.kmeans_draw,
    )


def _fit_routed(config: TrainConfig, out: Path) -> Path:
    from medim.tokenizers.image import load_image_tokenizer
    from medim.tokenizers.routed import DEFAULT_COLOUR_THRESHOLD, RoutedImageTokenizer, colourfulness

    source = config.vq.path or _warm_start_part(config, "image_tokenizer")
    if not source:
        raise ValueError(
            "vq.kind=routed keeps an existing tokenizer for grey images: set vq.path or model.init_from"
        )
    grey = load_image_tokenizer(source).eval()
    if isinstance(grey, RoutedImageTokenizer):  # re-fitting the colour part of a routed tokenizer
        grey = grey.grey
    ensure_corpus(config)
    started = time.time()
    colour = _patch_kmeans(config, keep=lambda batch: colourfulness(batch) >= DEFAULT_COLOUR_THRESHOLD)
    return _save_fitted(config, RoutedImageTokenizer(grey, colour), out, started, f"routed (grey: {source})")


def _fit_patch_kmeans(config: TrainConfig, out: Path) -> Path:
    started = time.time()
    return _save_fitted(config, _patch_kmeans(config), out, started, "patch k-means")


def _save_fitted(config: TrainConfig, tokenizer, out: Path, started: float, what: str) -> Path:
    """Save a fitted tokenizer with its validation metrics (val_metrics.json, fitting minutes included)."""
    from medim.tokenizers.vq_training import evaluate_vq

    metrics = evaluate_vq(tokenizer, _val_images(config))
    metrics["train_minutes"] = (time.time() - started) / 60
    tokenizer.save_pretrained(out)
    (out / "val_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"{what} image tokenizer -> {out}; validation {metrics}")
    return out


def _finetune_decoder(config: TrainConfig, tokenizer, source: Path, out: Path) -> Path:
    """More decoder training for an existing tokenizer (vq.decoder_steps at vq.decoder_lr, vq.batch_size).

    The codes stay those of ``source``, so a denoiser trained on them keeps working with the result; the source's
    training log is carried over and the decoder's own log is written next to it (decoder_log.jsonl).
    """
    from medim.tokenizers.vq_training import evaluate_vq, finetune_decoder

    ensure_corpus(config)
    torch.manual_seed(config.seed)
    options, feature_loss = _training_options(config)
    before = evaluate_vq(tokenizer.eval(), _val_images(config))
    started = time.time()
    log_path = config.out / "logs" / "vq_decoder.jsonl"
    with _json_log(log_path, "decoder") as record:
        finetune_decoder(
            tokenizer,
            _train_images(config),
            config.vq.decoder_steps,
            config.vq.decoder_lr,
            log_every=50,
            callback=record,
            options=options,
            feature_loss=feature_loss,
        )
    metrics = evaluate_vq(tokenizer.eval(), _val_images(config))
    metrics["decoder_steps"] = config.vq.decoder_steps
    metrics["decoder_minutes"] = (time.time() - started) / 60
    metrics["psnr_before_decoder_steps"] = before["psnr"]
    tokenizer.save_pretrained(out)
    if (source / "train_log.jsonl").is_file():
        shutil.copyfile(source / "train_log.jsonl", out / "train_log.jsonl")
    shutil.copyfile(log_path, out / "decoder_log.jsonl")
    (out / "val_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(
        f"image tokenizer (decoder trained {config.vq.decoder_steps} more steps) -> {out}; validation {metrics}"
    )
    return out


def _training_options(config: TrainConfig):
    """(VQTrainingOptions from vq.options, the finding-feature loss when its weight is positive, else None)."""
    from medim.tokenizers.vq_training import VQTrainingOptions

    options = VQTrainingOptions(**{"seed": config.seed, **config.vq.options})
    return options, (_feature_loss(config) if options.perceptual_weight > 0 else None)


def _train_images(config: TrainConfig) -> DataLoader:
    return DataLoader(
        _Pixels(load_split(config, config.data.train_split), config.data.image_size),
        batch_size=config.vq.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(config.seed),
        num_workers=config.data.num_workers,
    )


def _val_images(config: TrainConfig) -> DataLoader:
    return DataLoader(
        _Pixels(load_split(config, config.data.val_split), config.data.image_size), batch_size=64
    )


@contextlib.contextmanager
def _json_log(path: Path, name: str):
    """A callback that appends each training record to ``path`` (JSON lines) and prints a progress line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as log:

        def record(entry: dict) -> None:
            log.write(json.dumps(entry) + "\n")
            log.flush()
            usage = f" usage {entry['codebook_usage']:.2f}" if "codebook_usage" in entry else ""
            print(
                f"{name} step {entry['step']}: loss {entry['loss']:.4f} psnr {entry['psnr']:.2f} dB{usage}",
                flush=True,
            )

        yield record
