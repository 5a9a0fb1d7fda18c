"""Schedules, forward masking and the eq. 6 loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from medim.config import DiffusionConfig
from medim.diffusion import (
    TrainingBatch,
    diffusion_loss,
    forward_mask,
    get_schedule,
    make_training_batch,
    sample_t,
)
from medim.modeling import MeDiMModel
from medim.vocab import VocabLayout
from tests.core.helpers import tiny_config


@pytest.mark.parametrize("name", ["loglinear", "cosine"])
def test_schedules_are_monotone_with_correct_ends(name):
    schedule = get_schedule(name)
    t = torch.linspace(0, 1, 101)
    alpha = schedule.alpha(t)
    assert alpha[0] == pytest.approx(1) and alpha[-1] == pytest.approx(0, abs=1e-6)
    assert (alpha[1:] <= alpha[:-1]).all()
    inner = torch.linspace(0.01, 0.99, 50)
    assert (schedule.loss_weight(inner) > 0).all()
    torch.testing.assert_close(schedule.t_for_mask_probability(schedule.mask_probability(inner)), inner)


def test_loglinear_weight_is_one_over_t():
    t = torch.tensor([0.1, 0.5, 0.9])
    torch.testing.assert_close(get_schedule("loglinear").loss_weight(t), 1 / t)


def test_cosine_derivative_matches_finite_difference():
    schedule, t, h = get_schedule("cosine"), torch.tensor([0.2, 0.6], dtype=torch.float64), 1e-6
    numeric = (schedule.alpha(t + h) - schedule.alpha(t - h)) / (2 * h)
    torch.testing.assert_close(schedule.alpha_derivative(t), numeric)


def test_t_sampling_covers_the_unit_interval():
    g = torch.Generator().manual_seed(0)
    t = torch.cat([sample_t(64, eps=1e-3, generator=g) for _ in range(20)])
    assert t.min() >= 1e-3 and t.max() <= 1
    counts = torch.histc(t, bins=10, min=0, max=1)
    assert (counts > 0).all()
    one_batch = sample_t(8, eps=1e-3, generator=g).sort().values
    gaps = one_batch[1:] - one_batch[:-1]  # antithetic: evenly spread within a batch
    torch.testing.assert_close(gaps, torch.full_like(gaps, (1 - 1e-3) / 8), atol=1e-5, rtol=0)


def test_forward_mask_rate_follows_the_schedule_and_respects_maskable():
    schedule = get_schedule("loglinear")
    x0 = torch.zeros(2000, 50, dtype=torch.long)
    maskable = torch.ones_like(x0, dtype=torch.bool)
    maskable[:, :5] = False
    xt = forward_mask(
        x0,
        torch.full((2000,), 0.3),
        maskable,
        schedule,
        mask_id=9,
        generator=torch.Generator().manual_seed(0),
    )
    assert (xt[:, :5] == 0).all()
    assert (xt[:, 5:] == 9).float().mean().item() == pytest.approx(0.3, abs=0.01)


def test_loss_equals_direct_evaluation_of_eq6():
    layout = VocabLayout(text_vocab_size=5, codebook_size=3, image_tokens=2, text_tokens=2)
    x0 = layout.pack(torch.tensor([[1, 2]]), torch.tensor([[0, 2]]))
    xt = x0.clone()
    xt[0, 1] = layout.mask_id  # first image token
    xt[0, 5] = layout.mask_id  # second text token
    batch = TrainingBatch(
        x0=x0, xt=xt, t=torch.tensor([0.25]), target_mask=xt == layout.mask_id, task=["joint"]
    )
    torch.manual_seed(0)
    logits = torch.randn(1, layout.seq_len, layout.vocab_size)
    config = DiffusionConfig(image_loss_weight=2.0, text_loss_weight=0.5)
    loss, _ = diffusion_loss(logits, batch, layout, config)
    logp = logits.clone()
    logp[..., layout.mask_id] = -math.inf
    logp = F.log_softmax(logp, -1)
    nll_image = -logp[0, 1, x0[0, 1]]
    nll_text = -logp[0, 5, x0[0, 5]]
    expected = (1 / 0.25) * (2.0 * nll_image + 0.5 * nll_text) / (layout.image_tokens + layout.text_tokens)
    torch.testing.assert_close(loss, expected)


def test_modality_weights_are_really_applied():
    layout = VocabLayout(text_vocab_size=5, codebook_size=3, image_tokens=2, text_tokens=2)
    x0 = layout.pack(torch.tensor([[1, 2]]), torch.tensor([[0, 2]]))
    xt = torch.where(layout.position_modality[None] > 0, layout.mask_id, x0)
    batch = TrainingBatch(
        x0=x0, xt=xt, t=torch.tensor([0.5]), target_mask=xt == layout.mask_id, task=["joint"]
    )
    logits = torch.randn(1, layout.seq_len, layout.vocab_size)
    only_text, _ = diffusion_loss(logits, batch, layout, DiffusionConfig(image_loss_weight=0.0))
    both, _ = diffusion_loss(logits, batch, layout, DiffusionConfig())
    assert 0 < only_text < both


def test_training_batch_tasks_mask_only_their_modality():
    layout = VocabLayout(text_vocab_size=30, codebook_size=8, image_tokens=6, text_tokens=6)
    x0 = layout.pack(torch.randint(0, 30, (256, 6)), torch.randint(0, 8, (256, 6)))
    config = DiffusionConfig(condition_dropout=0.0, prompt_keep_prob=0.0)
    batch = make_training_batch(x0, layout, config, generator=torch.Generator().manual_seed(0))
    masked = batch.xt == layout.mask_id
    for row, task in enumerate(batch.task):
        if task == "report2image":
            assert not masked[row, layout.text_slice].any()
        if task == "image2report":
            assert not masked[row, layout.image_slice].any()
    assert not masked[:, 0].any() and not masked[:, 1 + layout.image_tokens].any()
    assert set(batch.task) == {"joint", "report2image", "image2report"}
    assert torch.equal(batch.target_mask, masked)


def test_condition_dropout_blanks_the_condition_without_scoring_it():
    layout = VocabLayout(text_vocab_size=30, codebook_size=8, image_tokens=6, text_tokens=6)
    x0 = layout.pack(torch.randint(0, 30, (64, 6)), torch.randint(0, 8, (64, 6)))
    config = DiffusionConfig(condition_dropout=1.0, task_weights={"report2image": 1.0})
    batch = make_training_batch(x0, layout, config, generator=torch.Generator().manual_seed(0))
    assert (batch.xt[:, layout.text_slice] == layout.mask_id).all()
    assert not batch.target_mask[:, layout.text_slice].any()


def test_prompt_keep_leaves_the_first_report_tokens_clean():
    layout = VocabLayout(text_vocab_size=30, codebook_size=8, image_tokens=4, text_tokens=8)
    x0 = layout.pack(torch.randint(0, 30, (64, 8)), torch.randint(0, 8, (64, 4)))
    config = DiffusionConfig(prompt_keep_prob=1.0, task_weights={"joint": 1.0}, eps=0.49)
    batch = make_training_batch(
        x0, layout, config, prompt_lengths=torch.full((64,), 3), generator=torch.Generator().manual_seed(0)
    )
    start = layout.text_slice.start
    assert torch.equal(batch.xt[:, start : start + 3], x0[:, start : start + 3])
    assert (batch.xt[:, start + 3 :] == layout.mask_id).any()


def test_one_optimisation_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = MeDiMModel(tiny_config())
    layout = model.layout
    x0 = layout.pack(torch.randint(0, 40, (8, 6)), torch.randint(0, 16, (8, 6)))
    batch = make_training_batch(x0, layout, DiffusionConfig(), generator=torch.Generator().manual_seed(1))
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(2):
        loss, _ = diffusion_loss(model(batch.xt, batch.t), batch, layout, DiffusionConfig())
        losses.append(loss.item())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert losses[1] < losses[0]
    assert model.adaln[0].linear.weight.abs().sum() > 0  # AdaLN receives gradient and moves off zero


def test_bad_diffusion_config_is_rejected():
    with pytest.raises(ValueError, match="schedule"):
        DiffusionConfig(schedule="sqrt")
    with pytest.raises(ValueError, match="task_weights"):
        DiffusionConfig(task_weights={"joint": 1.0, "video": 1.0})


def test_masked_mean_normalisation_divides_by_the_masked_count_without_w_t():
    layout = VocabLayout(text_vocab_size=5, codebook_size=3, image_tokens=2, text_tokens=2)
    x0 = layout.pack(torch.tensor([[1, 2], [3, 4]]), torch.tensor([[0, 2], [1, 1]]))
    xt = x0.clone()
    xt[0, 1] = layout.mask_id  # sequence 0: one image token masked
    xt[1, 4] = xt[1, 5] = layout.mask_id  # sequence 1: both text tokens masked
    batch = TrainingBatch(
        x0=x0, xt=xt, t=torch.tensor([0.1, 0.9]), target_mask=xt == layout.mask_id, task=["joint", "joint"]
    )
    logits = torch.randn(2, layout.seq_len, layout.vocab_size)
    loss, _ = diffusion_loss(logits, batch, layout, DiffusionConfig(loss_normalisation="masked_mean"))
    logp = logits.clone()
    logp[..., layout.mask_id] = -math.inf
    logp = F.log_softmax(logp, -1)
    first = -logp[0, 1, x0[0, 1]]
    second = -(logp[1, 4, x0[1, 4]] + logp[1, 5, x0[1, 5]]) / 2
    torch.testing.assert_close(loss, (first + second) / 2)
    elbo, _ = diffusion_loss(logits, batch, layout, DiffusionConfig())
    assert not torch.isclose(loss, elbo)  # the option really changes the estimator
    with pytest.raises(ValueError, match="loss_normalisation"):
        DiffusionConfig(loss_normalisation="mean")


def test_unknown_word_dropout_replaces_only_visible_report_tokens_and_scores_the_same_targets():
    layout = VocabLayout(text_vocab_size=30, codebook_size=8, image_tokens=6, text_tokens=10)
    text = torch.randint(3, 30, (512, 10))
    text[:, 7:] = layout.pad_id  # three padding slots per report
    x0 = layout.pack(text, torch.randint(0, 8, (512, 6)))
    unknown = 1
    plain = make_training_batch(x0, layout, DiffusionConfig(), generator=torch.Generator().manual_seed(0))
    dropped = make_training_batch(
        x0,
        layout,
        DiffusionConfig(unknown_word_rate=0.25),
        unknown_id=unknown,
        generator=torch.Generator().manual_seed(0),
    )
    # the same masks, tasks and targets: dropout only changes what the model reads
    assert torch.equal(dropped.target_mask, plain.target_mask) and dropped.task == plain.task
    changed = dropped.xt != plain.xt
    assert (dropped.xt[changed] == unknown).all()
    assert not changed[:, layout.image_slice].any()
    assert not (changed & (plain.xt == layout.mask_id)).any()  # masked positions stay masked
    assert not (changed & (x0 == layout.pad_id)).any()  # padding is the report's length, never a word
    visible_words = (plain.xt[:, layout.text_slice] != layout.mask_id) & (text != layout.pad_id)
    rate = changed[:, layout.text_slice].sum() / visible_words.sum()
    assert 0.2 < rate < 0.3


def test_unknown_word_dropout_needs_the_unknown_id():
    layout = VocabLayout(text_vocab_size=30, codebook_size=8, image_tokens=6, text_tokens=6)
    x0 = layout.pack(torch.randint(0, 30, (4, 6)), torch.randint(0, 8, (4, 6)))
    with pytest.raises(ValueError, match="unknown_id"):
        make_training_batch(x0, layout, DiffusionConfig(unknown_word_rate=0.1))
    with pytest.raises(ValueError, match="unknown_word_rate"):
        DiffusionConfig(unknown_word_rate=1.5)
