"""VQ training on tiny models: losses fall, dead codes come back, k-means and metrics compute what they claim."""

import math

import pytest
import torch

from medim.tokenizers.image import VQImageTokenizer
from medim.tokenizers.vq_training import (
    VQTrainingOptions,
    code_statistics,
    default_demo_vq_config,
    default_demo_vq_recipe,
    evaluate_vq,
    kmeans,
    psnr_per_image,
    restart_dead_codes,
    train_vq,
)

TINY = dict(
    image_size=16,
    block_out_channels=(8, 16, 16),
    latent_channels=8,
    vq_embed_dim=4,
    num_vq_embeddings=32,
    norm_num_groups=4,
    mid_block_add_attention=False,
)


def _smooth_images(n, seed):
    """Blurry random blobs in [-1, 1]: structured enough for a 4x4 grid to reconstruct."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=16, mode="bilinear", align_corners=False)


@pytest.fixture
def batches():
    return [_smooth_images(8, seed) for seed in range(4)]


def test_training_lowers_reconstruction_error(batches):
    tokenizer = VQImageTokenizer.from_config(**TINY)
    held_out = [_smooth_images(8, 100)]
    before = evaluate_vq(tokenizer, held_out)
    records = []
    history = train_vq(tokenizer, batches, steps=40, lr=3e-3, log_every=10, callback=records.append)
    after = evaluate_vq(tokenizer, held_out)
    assert after["mse"] < 0.85 * before["mse"]
    assert after["psnr"] > before["psnr"] + 0.5
    assert history[-1]["rec_loss"] < history[0]["rec_loss"]
    assert records == history and [r["step"] for r in history] == [10, 20, 30, 40]
    assert not tokenizer.training


def test_dead_code_restart_revives_unused_codes(batches):
    tokenizer = VQImageTokenizer.from_config(**TINY)
    with torch.no_grad():
        tokenizer.codebook.fill_(1e3)  # every code far from the encoder outputs ...
        tokenizer.codebook[0] = 0.0  # ... except code 0, which therefore wins every position
    no_restart = VQTrainingOptions(kmeans_batches=0, restart_every=0)
    collapsed = VQImageTokenizer.from_config(**TINY)
    collapsed.load_state_dict(tokenizer.state_dict())
    train_vq(collapsed, batches, steps=6, lr=1e-3, options=no_restart)
    assert evaluate_vq(collapsed, batches)["codebook_usage"] == pytest.approx(1 / 32)

    with_restart = VQTrainingOptions(kmeans_batches=0, restart_every=2, restart_until_fraction=1.0)
    history = train_vq(tokenizer, batches, steps=6, lr=1e-3, log_every=6, options=with_restart)
    assert history[-1]["restarted"] >= 31
    assert evaluate_vq(tokenizer, batches)["codebook_usage"] > 0.25
    assert tokenizer.codebook.abs().max() < 1e3  # nothing left at the dead value


def test_restart_dead_codes_reseeds_only_dead_rows_from_the_pool():
    tokenizer = VQImageTokenizer.from_config(**TINY)
    before = tokenizer.codebook.detach().clone()
    counts = torch.ones(32)
    counts[[3, 7, 30]] = 0
    pool = torch.randn(50, 4) + 10.0
    dead = restart_dead_codes(
        tokenizer, counts, pool, min_count=1, generator=torch.Generator().manual_seed(0)
    )
    assert dead.tolist() == [3, 7, 30]
    after = tokenizer.codebook.detach()
    live = torch.ones(32, dtype=torch.bool)
    live[dead] = False
    assert torch.equal(after[live], before[live])
    distance_to_pool = torch.cdist(after[dead], pool).min(dim=1).values
    assert (distance_to_pool < 0.1).all()


def test_kmeans_init_uses_every_code_at_start(batches):
    tokenizer = VQImageTokenizer.from_config(**TINY)
    history = train_vq(
        tokenizer, batches, steps=1, lr=1e-6, log_every=1, options=VQTrainingOptions(kmeans_batches=4)
    )
    # After k-means on the same latents, codes are spread over the data: most are chosen in the first step.
    assert history[0]["codebook_usage"] > 0.5


def test_kmeans_recovers_separated_clusters():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + 0.1 * torch.randn(100, 2, generator=generator) for c in centres])
    found = kmeans(points, 3, iters=10, generator=generator)
    assert torch.cdist(centres, found).min(dim=1).values.max() < 0.1


def test_psnr_and_code_statistics_values():
    target = torch.zeros(2, 3, 4, 4)
    reconstruction = torch.full_like(target, 0.2)  # mse 0.04 in [-1, 1] space → 10 log10(4 / 0.04) = 20 dB
    torch.testing.assert_close(psnr_per_image(reconstruction, target), torch.tensor([20.0, 20.0]))
    usage, perplexity = code_statistics(torch.tensor([5.0, 5.0, 5.0, 5.0, 0.0, 0.0, 0.0, 0.0]))
    assert usage == 0.5 and perplexity == pytest.approx(4.0)
    assert code_statistics(torch.tensor([3.0, 0.0])) == (0.5, pytest.approx(1.0))


def test_evaluate_reports_all_metrics(batches):
    tokenizer = VQImageTokenizer.from_config(**TINY)
    metrics = evaluate_vq(tokenizer, batches[:2])
    assert set(metrics) == {"psnr", "mse", "codebook_usage", "perplexity", "num_images"}
    assert metrics["num_images"] == 16
    assert 0 < metrics["codebook_usage"] <= 1 and 1 <= metrics["perplexity"] <= 32
    assert math.isfinite(metrics["psnr"])


def test_bad_training_input_is_rejected(batches):
    tokenizer = VQImageTokenizer.from_config(**TINY)
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        train_vq(tokenizer, batches, steps=0, lr=1e-3)
    with pytest.raises(ValueError, match=r"shape \[B, 3, 16, 16\], got \[2, 3, 8, 8\]"):
        train_vq(tokenizer, [torch.zeros(2, 3, 8, 8)], steps=1, lr=1e-3)
    with pytest.raises(ValueError, match="no batches"):
        train_vq(tokenizer, [], steps=1, lr=1e-3)
    with pytest.raises(ValueError, match="ran out"):
        train_vq(tokenizer, iter(batches), steps=10, lr=1e-3, options=VQTrainingOptions(kmeans_batches=0))
    with pytest.raises(ValueError, match="commitment_beta must be >= 0"):
        VQTrainingOptions(commitment_beta=-1.0)


def test_demo_preset_is_the_documented_shape():
    config = default_demo_vq_config()
    assert config.image_size == 64 and config.downsample_factor == 8
    assert config.num_vq_embeddings >= 256
    recipe = default_demo_vq_recipe()
    assert recipe.steps > 0 and recipe.batch_size > 0 and recipe.lr > 0


def _feature_network():
    from medim.metrics.judge import FindingJudgeNet, JudgeConfig

    torch.manual_seed(0)
    return FindingJudgeNet(JudgeConfig(findings={"d": ["a"]}, image_size=16, widths=(4, 8))).eval()


def test_finding_feature_loss_is_zero_on_the_input_and_trains_only_the_reconstruction():
    from medim.tokenizers.vq_training import FindingFeatureLoss

    network = _feature_network()
    loss_fn = FindingFeatureLoss(network)
    loss_fn.train()  # must stay in eval mode: BatchNorm statistics are those of real images
    assert not loss_fn.body.training
    images = _smooth_images(4, 0)
    assert loss_fn(images, images).item() == pytest.approx(0.0, abs=1e-6)
    reconstruction = _smooth_images(4, 1).requires_grad_(True)
    loss = loss_fn(reconstruction, images)
    assert loss.item() > 1e-3
    loss.backward()
    assert reconstruction.grad is not None and reconstruction.grad.abs().sum() > 0
    assert all(p.grad is None for p in network.parameters())


def test_perceptual_weight_needs_a_feature_loss_and_changes_training(batches):
    from medim.tokenizers.vq_training import FindingFeatureLoss

    tokenizer = VQImageTokenizer.from_config(**TINY)
    with pytest.raises(ValueError, match="feature_loss"):
        train_vq(tokenizer, batches, 2, 1e-3, options=VQTrainingOptions(perceptual_weight=1.0))
    loss_fn = FindingFeatureLoss(_feature_network())
    history = train_vq(
        tokenizer,
        batches,
        4,
        1e-3,
        log_every=2,
        options=VQTrainingOptions(perceptual_weight=1.0),
        feature_loss=loss_fn,
    )
    assert all(record["perceptual_loss"] > 0 for record in history)
    plain = train_vq(VQImageTokenizer.from_config(**TINY), batches, 4, 1e-3, log_every=2)
    assert all(record["perceptual_loss"] == 0 for record in plain)


def test_decoder_finetune_keeps_every_code_and_improves_the_reconstruction(batches):
    from medim.tokenizers.vq_training import FindingFeatureLoss, finetune_decoder

    tokenizer = VQImageTokenizer.from_config(**TINY)
    train_vq(tokenizer, batches, steps=10, lr=3e-3)
    images = torch.cat(batches)
    ids_before = tokenizer.encode(images)
    encoder_before = {k: v.clone() for k, v in tokenizer.vq_model.encoder.state_dict().items()}
    codebook_before = tokenizer.codebook.detach().clone()
    before = evaluate_vq(tokenizer, batches)

    history = finetune_decoder(
        tokenizer,
        batches,
        steps=40,
        lr=3e-3,
        log_every=20,
        options=VQTrainingOptions(perceptual_weight=0.5),
        feature_loss=FindingFeatureLoss(_feature_network()),
    )

    assert torch.equal(tokenizer.encode(images), ids_before)
    assert torch.equal(tokenizer.codebook.detach(), codebook_before)
    assert all(torch.equal(v, encoder_before[k]) for k, v in tokenizer.vq_model.encoder.state_dict().items())
    assert evaluate_vq(tokenizer, batches)["psnr"] > before["psnr"] + 0.3
    assert [r["step"] for r in history] == [20, 40] and history[-1]["perceptual_loss"] > 0
    # the frozen parts are trainable again afterwards, and the tokenizer is back in eval mode
    assert all(p.requires_grad for p in tokenizer.parameters()) and not tokenizer.training


def test_decoder_finetune_checks_its_arguments(batches):
    from medim.tokenizers.vq_training import finetune_decoder

    tokenizer = VQImageTokenizer.from_config(**TINY)
    with pytest.raises(ValueError, match="feature_loss"):
        finetune_decoder(tokenizer, batches, 2, 1e-3, options=VQTrainingOptions(perceptual_weight=1.0))
    with pytest.raises(ValueError, match="steps"):
        finetune_decoder(tokenizer, batches, 0, 1e-3)
