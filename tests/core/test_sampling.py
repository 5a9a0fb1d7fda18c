"""MaskGIT sampler invariants (diffusers' token-diffusion scheduler tests are the model for these)."""

import pytest
import torch

from medim.config import SamplerConfig
from medim.sampling import (
    MaskGITSampler,
    apply_guidance,
    apply_task_mask,
    filter_top_k_top_p,
    mask_ratio,
    task_positions,
    unconditional_input,
)
from medim.vocab import IMAGE, TEXT, VocabLayout

LAYOUT = VocabLayout(text_vocab_size=20, codebook_size=12, image_tokens=9, text_tokens=7)


def _run(task, config, seed=0, logits_fn=None, batch=3, x=None):
    g = torch.Generator().manual_seed(seed)
    if x is None:
        x0 = LAYOUT.pack(
            torch.randint(0, 20, (batch, 7), generator=g), torch.randint(0, 12, (batch, 9), generator=g)
        )
        generate = task_positions(task, LAYOUT)
        x = apply_task_mask(x0, generate, LAYOUT)
    start = x.clone()
    sampler = MaskGITSampler(LAYOUT, config)
    sampler.set_timesteps(config.steps)
    initial = (x == LAYOUT.mask_id).sum(-1)
    history = [x]
    for step in range(config.steps):
        logits = (
            logits_fn(x)
            if logits_fn
            else torch.randn(x.shape[0], LAYOUT.seq_len, LAYOUT.vocab_size, generator=g)
        )
        out = sampler.step(logits, x, step, initial, g)
        x = out.tokens
        history.append(x)
    return start, x, history


@pytest.mark.parametrize("task", ["report2image", "image2report", "pair"])
@pytest.mark.parametrize("schedule", ["arccos", "cosine", "linear"])
def test_unmasked_tokens_never_change_and_everything_is_decoded(task, schedule):
    start, final, history = _run(task, SamplerConfig(steps=5, schedule=schedule))
    fixed = start != LAYOUT.mask_id
    for x in history:
        assert torch.equal(x[fixed], start[fixed])
    for before, after in zip(history, history[1:]):  # once decoded, a token stays
        decided = before != LAYOUT.mask_id
        assert torch.equal(after[decided], before[decided])
        assert (after == LAYOUT.mask_id).sum() < (before == LAYOUT.mask_id).sum()
    assert not (final == LAYOUT.mask_id).any()


def test_mask_is_never_sampled_even_when_it_has_the_largest_logit():
    def favour_mask(x):
        logits = torch.zeros(x.shape[0], LAYOUT.seq_len, LAYOUT.vocab_size)
        logits[..., LAYOUT.mask_id] = 100.0
        return logits

    _, final, _ = _run("pair", SamplerConfig(steps=4), logits_fn=favour_mask)
    assert not (final == LAYOUT.mask_id).any()


def test_modality_slices_are_respected():
    def favour_wrong_modality(x):
        logits = torch.zeros(x.shape[0], LAYOUT.seq_len, LAYOUT.vocab_size)
        logits[:, LAYOUT.image_slice, :20] = 50.0  # text ids at image positions
        logits[:, LAYOUT.text_slice, LAYOUT.image_offset :] = 50.0  # image codes at text positions
        return logits

    _, final, _ = _run("pair", SamplerConfig(steps=3), logits_fn=favour_wrong_modality)
    image = final[:, LAYOUT.image_slice]
    text = final[:, LAYOUT.text_slice]
    assert ((image >= LAYOUT.image_offset) & (image < LAYOUT.image_offset + 12)).all()
    assert ((text < 20) | (text == LAYOUT.pad_id)).all()


def test_same_seed_same_output_different_seed_different_output():
    config = SamplerConfig(steps=4, temperature=1.0)
    _, a, _ = _run("pair", config, seed=7)
    _, b, _ = _run("pair", config, seed=7)
    _, c, _ = _run("pair", config, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_nan_and_inf_logits_do_not_crash_and_stay_in_slice():
    def broken(x):
        logits = torch.randn(x.shape[0], LAYOUT.seq_len, LAYOUT.vocab_size)
        logits[0] = float("nan")
        logits[1, :, :5] = float("inf")
        return logits

    _, final, _ = _run("pair", SamplerConfig(steps=3), logits_fn=broken)
    assert not (final == LAYOUT.mask_id).any()
    modality = LAYOUT.position_modality
    allowed = LAYOUT.allowed_tokens[modality]
    assert allowed.gather(1, final[0][:, None]).squeeze(1)[modality > 0].all()


def test_greedy_commits_most_confident_first():
    x = LAYOUT.blank(1)
    logits = torch.zeros(1, LAYOUT.seq_len, LAYOUT.vocab_size)
    confident = LAYOUT.image_slice.start + 4
    logits[0, confident, LAYOUT.image_offset + 3] = 30.0
    sampler = MaskGITSampler(LAYOUT, SamplerConfig(steps=16, temperature=0.0))
    out = sampler.step(logits, x, 0, (x == LAYOUT.mask_id).sum(-1))
    assert out.committed[0, confident]
    assert out.tokens[0, confident] == LAYOUT.image_offset + 3


def test_schedule_counts_follow_the_unmasking_curve():
    sampler = MaskGITSampler(LAYOUT, SamplerConfig(steps=4, schedule="cosine"))
    initial = torch.tensor([100])
    counts = [sampler.masks_after(s, initial).item() for s in range(4)]
    assert counts == [int(100 * mask_ratio((s + 1) / 4, "cosine")) for s in range(3)] + [0]
    assert counts == sorted(counts, reverse=True)


def test_inpainting_keeps_everything_outside_the_region():
    g = torch.Generator().manual_seed(0)
    x0 = LAYOUT.pack(torch.randint(0, 20, (2, 7), generator=g), torch.randint(0, 12, (2, 9), generator=g))
    region = torch.zeros(LAYOUT.seq_len, dtype=torch.bool)
    region[LAYOUT.image_slice.start + 2 : LAYOUT.image_slice.start + 5] = True
    region[LAYOUT.text_slice.start + 1] = True
    start, final, _ = _run("inpaint", SamplerConfig(steps=3), x=apply_task_mask(x0, region, LAYOUT))
    assert torch.equal(final[:, ~region], x0[:, ~region])
    assert not (final == LAYOUT.mask_id).any()


def test_specials_cannot_be_masked():
    region = torch.zeros(LAYOUT.seq_len, dtype=torch.bool)
    region[0] = True
    with pytest.raises(ValueError, match="boi"):
        apply_task_mask(LAYOUT.blank(1), region, LAYOUT)


def test_unconditional_input_blanks_only_the_condition():
    x0 = LAYOUT.pack(torch.randint(0, 20, (1, 7)), torch.randint(0, 12, (1, 9)))
    generate = task_positions("report2image", LAYOUT)
    uncond = unconditional_input(apply_task_mask(x0, generate, LAYOUT), generate[None], LAYOUT)
    modality = LAYOUT.position_modality
    assert (uncond[0, modality == TEXT] == LAYOUT.mask_id).all()
    assert (uncond[0, modality == IMAGE] == LAYOUT.mask_id).all()
    assert uncond[0, 0] == LAYOUT.boi_id


def test_guidance_zero_is_identity_and_positive_moves_away_from_uncond():
    cond, uncond = torch.randn(1, 2, 5), torch.randn(1, 2, 5)
    assert torch.equal(apply_guidance(cond, uncond, 0.0), cond)
    guided = apply_guidance(cond, uncond, 2.0)
    delta = torch.log_softmax(cond, -1) - torch.log_softmax(uncond, -1)
    torch.testing.assert_close(guided - cond, 2.0 * delta)


def test_top_k_top_p_filtering():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    assert torch.isinf(filter_top_k_top_p(logits, 2, None)[0, 2:]).all()
    nucleus = filter_top_k_top_p(logits, None, 0.5)
    assert torch.isfinite(nucleus[0, 0]) and torch.isinf(nucleus[0, 1:]).all()


def test_bad_sampler_config_is_rejected():
    with pytest.raises(ValueError, match="steps"):
        SamplerConfig(steps=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplerConfig(top_p=1.5)
    with pytest.raises(ValueError, match="confidence"):
        SamplerConfig(confidence="entropy")
    assert SamplerConfig(task_settings={"pair": {"confidence": "max"}}).for_task("pair").confidence == "max"


def _two_mode_logits(batch: int = 64) -> torch.Tensor:
    """Every image position of every row: code 0 with p ~0.45 (one peaked mode) or one of five other codes with
    p ~0.11 each (a spread-out one), the pattern of "FINDINGS" against the many ways a pathology report begins."""
    logits = torch.full((batch, LAYOUT.seq_len, LAYOUT.vocab_size), -30.0)
    logits[:, :, LAYOUT.image_offset] = 0.0
    logits[:, :, LAYOUT.image_offset + 1 : LAYOUT.image_offset + 6] = -1.4
    logits[:, LAYOUT.text_slice, :] = 0.0
    return logits


@pytest.mark.parametrize("confidence", ["sampled", "max"])
def test_ranking_by_the_most_likely_token_does_not_favour_the_peaked_mode(confidence):
    x = LAYOUT.blank(64)
    logits = _two_mode_logits()
    config = SamplerConfig(steps=9, schedule="linear", confidence_noise=0.0, confidence=confidence)
    sampler = MaskGITSampler(LAYOUT, config)
    out = sampler.step(logits, x, 0, (x == LAYOUT.mask_id).sum(-1), torch.Generator().manual_seed(0))
    image = LAYOUT.image_slice
    drawn = out.predicted[:, image] - LAYOUT.image_offset
    committed = out.committed[:, image]
    peaked_share_drawn = (drawn == 0).float().mean().item()
    peaked_share_committed = (drawn[committed] == 0).float().mean().item()
    assert 0.35 < peaked_share_drawn < 0.55  # the draw follows the model: p(code 0) = 0.45
    if confidence == "max":
        # every position is equally sure of its best code, so what gets committed is a fair sample of the draw
        assert abs(peaked_share_committed - peaked_share_drawn) < 0.15
        probs = torch.softmax(logits[0, image.start], -1)
        assert torch.allclose(out.confidence[:, image], probs.max().expand_as(out.confidence[:, image]))
    else:
        # ranking by the drawn token's probability commits the peaked mode first
        assert peaked_share_committed > 0.95


def _text(x):
    return x[:, LAYOUT.text_slice]


def _pad_heavy_logits(x):
    """Random logits with <pad> as likely as any word, so interior pads would be common without the rule."""
    logits = torch.randn(x.shape[0], LAYOUT.seq_len, LAYOUT.vocab_size)
    logits[..., LAYOUT.pad_id] += 2.0
    return logits


@pytest.mark.parametrize("schedule", ["arccos", "linear"])
def test_pads_are_only_ever_a_suffix_at_every_step(schedule):
    torch.manual_seed(0)
    start, final, history = _run(
        "image2report", SamplerConfig(steps=6, schedule=schedule), batch=16, logits_fn=_pad_heavy_logits
    )
    for x in history:
        for row in _text(x):
            pads = (row == LAYOUT.pad_id).nonzero().flatten()
            if len(pads):  # after the first pad: nothing but pads (a masked slot there would also be wrong)
                assert (row[int(pads[0]) :] == LAYOUT.pad_id).all()
            words = ((row != LAYOUT.pad_id) & (row != LAYOUT.mask_id)).nonzero().flatten()
            if len(words) and len(pads):
                assert int(words[-1]) < int(pads[0])
    assert (_text(final) == LAYOUT.pad_id).any()  # the rule shapes the reports; it does not forbid padding


def test_without_the_rule_interior_pads_appear():
    torch.manual_seed(0)
    _, final, _ = _run(
        "image2report", SamplerConfig(steps=6, pad_suffix=False), batch=16, logits_fn=_pad_heavy_logits
    )
    interior = [
        row
        for row in _text(final)
        if (row == LAYOUT.pad_id).any()
        and (row[int((row == LAYOUT.pad_id).nonzero()[0]) :] != LAYOUT.pad_id).any()
    ]
    assert interior  # so the test above would fail without the rule


def test_a_given_report_with_words_after_a_pad_still_decodes():
    x0 = LAYOUT.pack(torch.tensor([[1, 2, 3, 4, 5, 6, 7]]), torch.zeros(1, 9, dtype=torch.long))
    x = x0.clone()
    text = LAYOUT.text_slice.start
    x[0, text + 1] = LAYOUT.pad_id  # a user-supplied interior pad
    x[0, text + 2] = LAYOUT.mask_id  # between a pad and a word: the rule allows nothing here
    _, final, _ = _run("inpaint", SamplerConfig(steps=2), x=x)
    assert not (final == LAYOUT.mask_id).any()
    assert torch.equal(final[0, text + 3 :], x[0, text + 3 :])  # given tokens never change


def test_padding_is_free_the_step_commits_its_words_and_reports_the_padding():
    """A committed <pad> fills the rest of the report. Neither it nor the filled padding uses up the step's
    commits, and StepOutput.padding counts them so the caller takes them off the schedule's budget (else the
    schedule spends its early steps on padding and dumps the words in the last ones)."""
    x = LAYOUT.blank(1)
    x[:, LAYOUT.image_slice] = LAYOUT.image_offset  # the image is given: only the report is generated
    text = LAYOUT.text_slice
    logits = torch.zeros(1, LAYOUT.seq_len, LAYOUT.vocab_size)
    # a word everywhere, surer the earlier it stands, and the report surely ends at its third token
    logits[0, text, 5] = torch.linspace(12.0, 10.0, LAYOUT.text_tokens)
    logits[0, text.start + 2, LAYOUT.pad_id] = 50.0
    sampler = MaskGITSampler(
        LAYOUT, SamplerConfig(steps=4, schedule="linear", temperature=0.0, confidence_noise=0.0)
    )
    sampler.set_timesteps(4)
    initial = (x == LAYOUT.mask_id).sum(-1)
    out = sampler.step(logits, x, 0, initial, torch.Generator().manual_seed(0))
    scheduled = int(initial) - int(sampler.masks_after(0, initial))
    words = out.committed & (out.tokens != LAYOUT.pad_id)
    assert int(words.sum()) == min(scheduled, 2)  # only two word slots are left before the end
    assert int(out.padding) == LAYOUT.text_tokens - 2  # the pad and every position behind it
    assert int(out.committed.sum()) == int(words.sum()) + int(out.padding)
    assert (out.tokens[0, text.start + 2 :] == LAYOUT.pad_id).all()


def test_a_confident_pad_does_not_take_a_words_commit():
    x = LAYOUT.blank(1)
    x[:, LAYOUT.image_slice] = LAYOUT.image_offset
    text = LAYOUT.text_slice
    logits = torch.zeros(1, LAYOUT.seq_len, LAYOUT.vocab_size)
    logits[0, text, 5] = 10.0
    logits[0, text.stop - 1, LAYOUT.pad_id] = 50.0  # the last slot is surely padding, and the most confident
    config = SamplerConfig(steps=LAYOUT.text_tokens, schedule="linear", temperature=0.0, confidence_noise=0.0)
    sampler = MaskGITSampler(LAYOUT, config)
    sampler.set_timesteps(LAYOUT.text_tokens)
    initial = (x == LAYOUT.mask_id).sum(-1)
    out = sampler.step(logits, x, 0, initial, torch.Generator().manual_seed(0))
    assert out.tokens[0, text.stop - 1] == LAYOUT.pad_id
    assert int((out.committed & (out.tokens != LAYOUT.pad_id)).sum()) == 1  # the step's one commit is a word


def _group_logits(first_group_bias: torch.Tensor):
    """Random logits whose image positions favour codes 0-5 by ``first_group_bias[b]`` in sequence b."""
    g = torch.Generator().manual_seed(7)

    def logits_fn(x):
        logits = torch.randn(x.shape[0], LAYOUT.seq_len, LAYOUT.vocab_size, generator=g) * 3
        start = LAYOUT.image_offset
        logits[:, LAYOUT.image_slice, start : start + 6] += first_group_bias[:, None, None]
        return logits

    return logits_fn


def test_one_code_group_draws_each_image_from_one_group_chosen_by_its_mass():
    groups = ((0, 6), (6, 12))
    bias = torch.tensor([4.0, -4.0, 0.0, 1.0])
    config = SamplerConfig(steps=4, one_code_group=True)
    g = torch.Generator().manual_seed(0)
    x0 = LAYOUT.pack(torch.randint(0, 20, (4, 7), generator=g), torch.randint(0, 12, (4, 9), generator=g))
    x = apply_task_mask(x0, task_positions("report2image", LAYOUT), LAYOUT)
    sampler = MaskGITSampler(LAYOUT, config, code_groups=groups)
    initial, logits_fn = (x == LAYOUT.mask_id).sum(-1), _group_logits(bias)
    for step in range(config.steps):
        x = sampler.step(logits_fn(x), x, step, initial, g).tokens
    codes = LAYOUT.image_codes(x)
    first = codes < 6
    assert (first.all(-1) | (~first).all(-1)).all()  # every image within one group
    assert first[0].all() and (~first[1]).all()  # the group the model puts its mass on
    # without the setting (or without groups) the same logits mix the groups within an image
    mixed = []
    for sampler in (
        MaskGITSampler(LAYOUT, SamplerConfig(steps=4), code_groups=groups),
        MaskGITSampler(LAYOUT, config),
    ):
        y = apply_task_mask(x0, task_positions("report2image", LAYOUT), LAYOUT)
        logits_fn = _group_logits(torch.zeros(4))
        for step in range(4):
            y = sampler.step(logits_fn(y), y, step, initial, torch.Generator().manual_seed(1)).tokens
        in_first = LAYOUT.image_codes(y) < 6
        mixed.append((in_first.any(-1) & (~in_first).any(-1)).any().item())
    assert mixed == [True, True]


def test_one_code_group_follows_the_codes_an_image_already_holds():
    """Inpainting: the visible codes (group 2) decide, whatever the logits favour."""
    config = SamplerConfig(steps=3, one_code_group=True, temperature=0.0)
    codes = torch.full((1, 9), 8)
    x0 = LAYOUT.pack(torch.zeros(1, 7, dtype=torch.long), codes)
    x = x0.clone()
    x[:, LAYOUT.image_slice.start : LAYOUT.image_slice.start + 4] = LAYOUT.mask_id
    sampler = MaskGITSampler(LAYOUT, config, code_groups=((0, 6), (6, 12)))
    initial, logits_fn = (x == LAYOUT.mask_id).sum(-1), _group_logits(torch.tensor([10.0]))
    for step in range(3):
        x = sampler.step(logits_fn(x), x, step, initial).tokens
    assert (LAYOUT.image_codes(x) >= 6).all()
