"""Speed modes: the exact ones (restricted head, rotary table) give the plain path's logits/tokens for every config
a checkpoint can carry; the opt-in approximate ones (medim.speedups) are exact where they claim to be, refuse the
configs they cannot serve, and otherwise give valid tokens and say what they did."""

import dataclasses

import pytest
import torch
from PIL import Image

from benchmarks.legacy import LegacyMaskGITSampler
from medim.commands.init_random import build_random_pipeline
from medim.config import SamplerConfig
from medim.heads import restricted_logits
from medim.runtime import configure_cpu_threads
from medim.sampling import ThresholdSampler, apply_guidance, sample_categorical, unconditional_input
from medim.speedups import ConditionCache, SpeedSettings, fast_run, quantize_int8
from medim.vocab import IMAGE, TEXT

REPORT = "FINDINGS: Moderate left pleural effusion. The heart is enlarged."


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    pipe = build_random_pipeline(hidden=32, layers=2, text_tokens=12)
    for adaln in pipe.model.adaln:  # non-zero AdaLN so that t and the condition matter
        torch.nn.init.normal_(adaln.linear.weight, std=0.2)
    return pipe


def task_inputs(task):
    if task == "report2image":
        return {"report": REPORT}
    if task == "image2report":
        return {"image": Image.new("L", (32, 32), 90)}
    return {}


def valid(pipe, tokens):
    """Every image position holds an image code and every text position a text id or pad."""
    layout = pipe.layout
    allowed = layout.allowed_tokens[layout.position_modality]  # [L, V]
    modality = layout.position_modality
    rows = tokens[:, (modality == IMAGE) | (modality == TEXT)]
    return bool(allowed[(modality == IMAGE) | (modality == TEXT)].gather(1, rows.T).all())


# ---- restricted head (exact, the default) --------------------------------------------------------------


@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_restricted_logits_match_full_head_where_the_sampler_reads(pipe, guidance):
    layout, model = pipe.layout, pipe.model
    x, generate, _ = pipe.prepare("pair")
    x = x.clone()
    x[0, 3] = layout.image_offset + 2  # one decoded image token: it must get no logits
    t = torch.tensor([0.7])
    need = x == layout.mask_id
    inputs, times = (
        (torch.cat([x, unconditional_input(x, generate, layout)]), t.repeat(2)) if guidance else (x, t)
    )
    with torch.no_grad():
        full = model(inputs, times)
        full = apply_guidance(*full.chunk(2), guidance) if guidance else full
        restricted = restricted_logits(model, model.hidden_states(inputs, times), need, guidance)
    allowed = layout.allowed_tokens[layout.position_modality][None] & need[..., None]
    assert torch.isinf(restricted[~allowed]).all()
    # log-probabilities over each position's allowed ids agree (guidance shifts logits by a per-position constant)
    masked_full = full.masked_fill(~allowed, float("-inf"))
    for row, pos in need.nonzero().tolist():
        a = torch.log_softmax(masked_full[row, pos], -1)[allowed[row, pos]]
        b = torch.log_softmax(restricted[row, pos], -1)[allowed[row, pos]]
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("task", ["report2image", "image2report", "pair"])
@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_pipeline_gives_the_same_tokens_with_and_without_the_restricted_head(pipe, task, guidance):
    pipe.restrict_head = False
    try:
        plain = pipe.run(task, seed=5, steps=4, guidance_scale=guidance, **task_inputs(task))
    finally:
        pipe.restrict_head = True
    fast = pipe.run(task, seed=5, steps=4, guidance_scale=guidance, **task_inputs(task))
    assert torch.equal(plain.tokens, fast.tokens)
    assert valid(pipe, fast.tokens)


# ---- every config a checkpoint can carry ------------------------------------------------------------------

# (name, MeDiMConfig changes): what a converted official checkpoint or an ablation sets
CHECKPOINT_CONFIGS = {
    "default": {},
    "official layout": {"attend_to_pad": False, "logits_offsets": (1, -1), "adaln_gate": "dit"},
    "no pad attention": {"attend_to_pad": False},
    "logits offsets": {"logits_offsets": (1, -1)},
    "causal ablation": {"causal_attention": True},
    "DiT gate": {"adaln_gate": "dit"},
    "additive timestep": {"timestep_conditioning": "additive"},
    "no timestep": {"timestep_conditioning": "off"},
}
CACHE_REFUSES = {"official layout", "logits offsets", "causal ablation"}


@pytest.fixture(scope="module", params=sorted(CHECKPOINT_CONFIGS))
def config_pipe(request, pipe):
    """`pipe`'s tokenizers around a random model carrying one checkpoint config (AdaLN non-zero)."""
    from medim.modeling import MeDiMModel
    from medim.pipeline import MeDiMPipeline

    torch.manual_seed(1)
    model = MeDiMModel(dataclasses.replace(pipe.config, **CHECKPOINT_CONFIGS[request.param]))
    for adaln in model.adaln or []:
        torch.nn.init.normal_(adaln.linear.weight, std=0.2)
        torch.nn.init.normal_(adaln.linear.bias, std=0.2)
    return request.param, MeDiMPipeline(model, pipe.text_tokenizer, pipe.image_tokenizer)


@pytest.mark.parametrize("task", ["report2image", "image2report", "pair"])
def test_restricted_head_gives_the_full_heads_tokens_for_every_config(config_pipe, task):
    _, pipe = config_pipe
    pipe.restrict_head = False
    try:
        plain = pipe.run(task, seed=3, steps=4, guidance_scale=1.5, **task_inputs(task))
    finally:
        pipe.restrict_head = True
    assert torch.equal(
        plain.tokens, pipe.run(task, seed=3, steps=4, guidance_scale=1.5, **task_inputs(task)).tokens
    )


def test_rotary_table_is_built_once_per_length_and_dtype(config_pipe):
    _, pipe = config_pipe
    model = pipe.model
    x, _, _ = pipe.prepare("pair")
    t = torch.tensor([0.3])
    model._rotary_tables.clear()
    with torch.no_grad():
        first, second = model.hidden_states(x, t), model.hidden_states(x, t)
    assert len(model._rotary_tables) == 1 and torch.equal(first, second)
    table = next(iter(model._rotary_tables.values()))
    reference = model.decoder.rotary_emb(first, position_ids=torch.arange(x.shape[1])[None])
    assert all(torch.equal(a, b) for a, b in zip(table, reference))


def test_a_partial_pass_on_recorded_keys_equals_the_full_pass(config_pipe):
    """What the condition cache builds on: with the keys/values recorded from the same tokens and t, running only
    the generated positions gives exactly the full pass's hidden states there (padding masks included)."""
    name, pipe = config_pipe
    if name in CACHE_REFUSES:
        pytest.skip("partial passes are refused for this config (next test)")
    from medim.modeling import PositionKeyValues

    x, generate, _ = pipe.prepare("report2image", report=REPORT)
    x = x.clone()
    x[0, 2:5] = pipe.layout.image_offset + torch.arange(3)  # some image tokens decoded
    active = generate[0].nonzero().flatten()
    cache = PositionKeyValues((~generate[0]).nonzero().flatten())
    t = torch.tensor([0.6])
    with torch.no_grad():
        full = pipe.model.hidden_states(x, t, key_values=cache)
        cache.recording = False
        partial = pipe.model.hidden_states(x, t, positions=active, key_values=cache)
    torch.testing.assert_close(partial, full[:, active], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("task", ["report2image", "image2report"])
def test_condition_cache_refreshed_every_step_reproduces_the_pipeline_or_refuses(config_pipe, task):
    name, pipe = config_pipe
    settings = SpeedSettings(cache_condition=True, refresh_every=1)
    if name in CACHE_REFUSES:
        with pytest.raises(ValueError, match="causal|logits_offsets"):
            fast_run(pipe, task, settings, seed=2, steps=5, **task_inputs(task))
        return
    plain = pipe.run(task, seed=2, steps=5, guidance_scale=1.5, **task_inputs(task))
    fast = fast_run(pipe, task, settings, seed=2, steps=5, guidance_scale=1.5, **task_inputs(task))
    assert torch.equal(plain.tokens, fast.tokens)
    assert fast.settings["fast"]["cache_condition"] is True


def test_int8_quantisation_stays_close_for_every_config(config_pipe):
    _, pipe = config_pipe
    quantised = quantize_int8(pipe.model)
    x, _, _ = pipe.prepare("report2image", report=REPORT)
    t = torch.tensor([0.5])
    with torch.no_grad():
        exact, approx = pipe.model(x, t), quantised(x, t)
    assert (exact - approx).abs().max() < 0.1 * exact.abs().max()


# ---- the condition cache (approximate) --------------------------------------------------------------------


def test_condition_cache_is_exact_on_its_refresh_pass_and_reused_after(pipe):
    x, generate, _ = pipe.prepare("report2image", report=REPORT)
    denoiser = ConditionCache(pipe)
    first = denoiser(x, generate, 0.0)
    torch.testing.assert_close(first, pipe.denoise_logits(x, generate, 0.0), atol=1e-4, rtol=1e-4)
    x2 = x.clone()
    x2[0, 1] = pipe.layout.image_offset  # one image token decoded: the cached pass runs only image positions
    second = denoiser(x2, generate, 0.0)
    assert denoiser.refreshes == 1
    assert torch.isfinite(second[0, 2 : 1 + pipe.layout.image_tokens, pipe.layout.image_offset]).all()
    assert not torch.allclose(second, pipe.denoise_logits(x2, generate, 0.0))  # approximate, as documented
    other, _, _ = pipe.prepare("report2image", report="FINDINGS: Normal heart size. No effusion.")
    denoiser(other, generate, 0.0)
    assert denoiser.refreshes == 2  # a new condition is never served from the old cache


def test_condition_cache_run_gives_valid_tokens_and_keeps_the_condition(pipe):
    x, _, _ = pipe.prepare("report2image", report=REPORT)
    out = fast_run(pipe, "report2image", SpeedSettings(cache_condition=True), report=REPORT, seed=1, steps=6)
    assert valid(pipe, out.tokens)
    assert torch.equal(out.tokens[:, pipe.layout.text_slice], x[:, pipe.layout.text_slice])


def test_speed_settings_reject_bad_values(pipe):
    with pytest.raises(ValueError, match="refresh_every"):
        ConditionCache(pipe, refresh_every=-1)
    with pytest.raises(ValueError, match="refresh_every"):
        SpeedSettings(refresh_every=-1)
    with pytest.raises(ValueError, match="threshold"):
        SpeedSettings(threshold=1.5)
    with pytest.raises(ValueError, match="recorded"):  # a partial pass without recorded keys is refused
        x, generate, _ = pipe.prepare("pair")
        pipe.model.hidden_states(x, torch.tensor([0.5]), positions=generate[0].nonzero().flatten())


# ---- samplers -------------------------------------------------------------------------------------------


def test_sample_categorical_follows_the_distribution_and_never_draws_zero_probability_ids():
    probs = torch.tensor([0.2, 0.0, 0.5, 0.3, 0.0]).expand(40_000, -1)
    draws = sample_categorical(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).float() / draws.numel()
    assert freq[1] == 0 and freq[4] == 0
    torch.testing.assert_close(freq, probs[0], atol=0.01, rtol=0)


def test_threshold_sampler_finishes_early_and_never_later_than_k(pipe):
    x, generate, _ = pipe.prepare("report2image", report=REPORT)
    eager = fast_run(pipe, "report2image", SpeedSettings(threshold=1e-9), report=REPORT, steps=8)
    assert (eager.committed_at[generate] == 1).all()  # everything above a near-zero threshold: one step
    strict = fast_run(pipe, "report2image", SpeedSettings(threshold=1.0), report=REPORT, steps=8)
    assert strict.committed_at[generate].max() == 8 and valid(pipe, strict.tokens)
    with pytest.raises(ValueError, match="threshold"):
        ThresholdSampler(pipe.layout, SamplerConfig(), threshold=0.0)


def test_legacy_sampler_still_gives_valid_tokens(pipe):
    x, generate, _ = pipe.prepare("pair")
    config = SamplerConfig(steps=3)
    states = list(
        pipe.stream(
            x,
            generate,
            sampler_config=config,
            decode_images=False,
            sampler=LegacyMaskGITSampler(pipe.layout, config),
        )
    )
    assert valid(pipe, states[-1].tokens)


# ---- whole-model transforms and threads -----------------------------------------------------------------


def test_int8_quantisation_leaves_the_original_alone(pipe):
    before = {k: v.clone() for k, v in pipe.model.state_dict().items()}
    quantised = quantize_int8(pipe.model)
    assert all(torch.equal(before[k], v) for k, v in pipe.model.state_dict().items())
    assert any("quantized" in type(m).__module__ for m in quantised.modules())


def test_configure_cpu_threads():
    saved = torch.get_num_threads()
    try:
        assert configure_cpu_threads(1) == 1 and torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads"):
            configure_cpu_threads(0)
    finally:
        torch.set_num_threads(saved)


def test_condition_cache_reads_untrained_words_as_the_pipeline_does(pipe, tmp_path):
    """A checkpoint trained with word dropout reads untrained report ids as <unk> on the cached path too."""
    import json

    from medim.config import DiffusionConfig
    from medim.pipeline import MeDiMPipeline

    root = pipe.save_pretrained(tmp_path / "ckpt")
    DiffusionConfig(unknown_word_rate=0.15).save(root / "diffusion_config.json")
    trained = pipe.text_tokenizer("FINDINGS: heart", add_special_tokens=False)["input_ids"]
    (root / "trained_text_ids.json").write_text(json.dumps({"ids": sorted(set(trained))}))
    reading = MeDiMPipeline.from_pretrained(root, device="cpu")
    assert reading.reads_unknown_words
    x, generate, _ = reading.prepare("report2image", report=REPORT)
    assert not torch.equal(reading.model_input(x), x)
    cached = ConditionCache(reading)(x, generate, 1.5)
    torch.testing.assert_close(cached, reading.denoise_logits(x, generate, 1.5), atol=1e-4, rtol=1e-4)
    # and the remapping matters: reading the ids as written gives other logits
    assert not torch.allclose(cached, pipe.denoise_logits(x, generate, 1.5), atol=1e-4)
