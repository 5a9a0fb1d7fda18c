"""MeDiMPipeline: save/load round trip, the three tasks, streaming, inpainting and bad input."""

import json

import pytest
import torch
from PIL import Image

from medim.commands.init_random import build_random_pipeline
from medim.pipeline import MeDiMPipeline, resolve_checkpoint


@pytest.fixture(scope="module")
def pipe():
    return build_random_pipeline(
        hidden=32, layers=1, image_size=16, grid=4, codebook=16, text_tokens=12, text_vocab=280
    )


@pytest.fixture(scope="module")
def saved(pipe, tmp_path_factory):
    return pipe.save_pretrained(tmp_path_factory.mktemp("ckpt"))


def test_save_load_round_trip_gives_identical_logits(pipe, saved):
    loaded = MeDiMPipeline.from_pretrained(saved, device="cpu")
    ids = torch.randint(0, pipe.layout.vocab_size, (2, pipe.layout.seq_len))
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids, t), pipe.model(ids, t), rtol=0, atol=0)
    assert loaded.config == pipe.config
    assert len(loaded.checkpoint_hash) == 64
    assert json.loads((saved / "checkpoint_info.json").read_text())["kind"] == "random-init"


def test_generate_image_report_and_pair(pipe):
    image = pipe.generate_image("FINDINGS: The heart is enlarged.", steps=3, seed=1).images[0]
    assert image.size == (16, 16) and image.mode == "RGB"
    report = pipe.generate_report(Image.new("L", (40, 30), 128), steps=3).reports[0]
    assert isinstance(report, str)
    pair = pipe.generate_pair(num_samples=2, steps=3)
    assert len(pair.images) == 2 and len(pair.reports) == 2
    assert not (pair.tokens == pipe.layout.mask_id).any()


def test_conditioning_tokens_are_kept(pipe):
    result = pipe.generate_image("FINDINGS: The heart is enlarged.", steps=3)
    x_init, generate, _ = pipe.prepare("report2image", report="FINDINGS: The heart is enlarged.")
    fixed = ~generate
    assert torch.equal(result.tokens[fixed], x_init[fixed])
    assert (result.committed_at[generate] >= 1).all() and (result.committed_at[fixed] == 0).all()


def test_prompted_pair_keeps_the_prompt(pipe):
    x_init, generate, _ = pipe.prepare("pair", prompt="FINDINGS:")
    result = pipe.generate_pair(prompt="FINDINGS:", steps=2)
    start = pipe.layout.text_slice.start
    kept = (~generate[0, start:]).nonzero().flatten()
    assert len(kept) > 0
    assert torch.equal(result.tokens[0, start + kept], x_init[0, start + kept])


def test_same_seed_same_result_and_guidance_runs(pipe):
    a = pipe.generate_image("No acute process.", steps=3, seed=5)
    b = pipe.generate_image("No acute process.", steps=3, seed=5)
    assert torch.equal(a.tokens, b.tokens)
    guided = pipe.generate_image("No acute process.", steps=3, seed=5, guidance_scale=2.0)
    assert guided.settings["guidance_scale"] == 2.0
    # guidance changes the distribution the tokens are drawn from: same seed, different image
    assert not torch.equal(guided.tokens, a.tokens)


def test_stream_yields_every_step_with_shrinking_masks(pipe):
    x_init, generate, _ = pipe.prepare("pair")
    states = list(pipe.stream(x_init, generate, seed=0))
    assert [s.step for s in states] == list(range(1, pipe.sampler_config.steps + 1))
    masked = [int(s.image_masked.sum()) for s in states]
    assert masked == sorted(masked, reverse=True) and masked[-1] == 0
    assert all(len(s.images) == 1 for s in states)
    assert any(text == "[MASK]" for text, _ in states[0].report_pieces[0])
    assert states[-1].done


def test_inpainting_resamples_only_the_region(pipe):
    base = pipe.generate_pair(steps=3)
    region = torch.zeros(pipe.layout.seq_len, dtype=torch.bool)
    region[pipe.layout.image_slice.start : pipe.layout.image_slice.start + 4] = True
    edited = pipe.inpaint(base.tokens, region, steps=2, seed=3)
    assert torch.equal(edited.tokens[:, ~region], base.tokens[:, ~region])
    with pytest.raises(ValueError, match="re-masked"):
        special = torch.zeros(pipe.layout.seq_len, dtype=torch.bool)
        special[0] = True
        pipe.inpaint(base.tokens, special)


def test_long_report_is_truncated_with_a_warning(pipe):
    result = pipe.generate_image("The heart is enlarged. " * 20, steps=2)
    assert any("truncated" in w for w in result.warnings)


@pytest.mark.parametrize("report", ["", "   ", None])
def test_empty_report_is_rejected(pipe, report):
    with pytest.raises(ValueError, match="empty"):
        pipe.generate_image(report)


def test_wrong_tokenizer_for_checkpoint_is_rejected(pipe):
    other = build_random_pipeline(hidden=32, layers=1, image_size=16, grid=4, codebook=32, text_tokens=12)
    with pytest.raises(ValueError, match="codes"):
        MeDiMPipeline(pipe.model, pipe.text_tokenizer, other.image_tokenizer)


def test_missing_or_broken_checkpoints_are_clear_errors(tmp_path, saved):
    with pytest.raises(ValueError, match="not found"):
        resolve_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="medim_config.json"):
        resolve_checkpoint(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("medim_config.json", "sampler_config.json"):
        (broken / name).write_text((saved / name).read_text())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors"):
        MeDiMPipeline.from_pretrained(broken, device="cpu")


def test_the_noise_schedule_comes_from_the_typed_diffusion_config(pipe, tmp_path):
    """diffusion_config.json (what training wrote) decides the schedule; checkpoint_info's name is only the
    fallback for checkpoints saved without it, and a broken file is a clear error."""
    from medim.config import DiffusionConfig

    root = pipe.save_pretrained(tmp_path / "ckpt", info={"noise_schedule": "loglinear"})
    DiffusionConfig(schedule="cosine").save(root / "diffusion_config.json")
    loaded = MeDiMPipeline.from_pretrained(root, device="cpu")
    assert loaded.noise_schedule_name == "cosine"
    # alpha_t = cos(pi t / 2): half masked at t = 2/3 (loglinear: 1/2)
    assert float(loaded.noise_schedule.t_for_mask_probability(torch.tensor(0.5))) == pytest.approx(
        2 / 3, abs=1e-4
    )
    resaved = loaded.save_pretrained(tmp_path / "again")
    assert DiffusionConfig.load(resaved / "diffusion_config.json").schedule == "cosine"
    (root / "diffusion_config.json").unlink()
    assert MeDiMPipeline.from_pretrained(root, device="cpu").noise_schedule_name == "loglinear"
    (root / "diffusion_config.json").write_text('{"schedule": "zigzag"}')
    with pytest.raises(ValueError, match="diffusion_config.json"):
        MeDiMPipeline.from_pretrained(root, device="cpu")


def test_checkpoint_resolution_never_falls_back_silently(monkeypatch, tmp_path):
    """Only "nothing asked for" resolves to the bundled default; an id that cannot be fetched is an error."""
    import huggingface_hub

    from medim.pipeline import DEFAULT_CHECKPOINT

    monkeypatch.delenv("MEDIM_CHECKPOINT", raising=False)
    assert resolve_checkpoint(None) == DEFAULT_CHECKPOINT
    monkeypatch.setenv("MEDIM_CHECKPOINT", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="not found"):
        resolve_checkpoint(None)

    def offline(repo_id, **kwargs):
        raise OSError(f"no connection to fetch {repo_id}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ValueError, match="could not be fetched from the Hugging Face hub"):
        resolve_checkpoint("someone/medim-model")


def test_a_task_may_have_its_own_step_count_and_an_explicit_one_wins(tmp_path):
    import dataclasses

    from medim.config import SamplerConfig

    own = build_random_pipeline(
        hidden=32, layers=1, image_size=16, grid=4, codebook=16, text_tokens=12, text_vocab=280
    )
    own.sampler_config = dataclasses.replace(own.sampler_config, steps=3, task_steps={"image2report": 5})
    scan = Image.new("L", (16, 16), 128)
    streamed = own.generate_report(scan)
    assert streamed.settings["steps"] == 5
    assert own.generate_image("FINDINGS: Normal heart.").settings["steps"] == 3
    assert own.generate_report(scan, steps=2).settings["steps"] == 2  # the call's own steps
    given = SamplerConfig(steps=4, task_steps={"image2report": 9})
    assert (
        own.generate_report(scan, sampler_config=given).settings["steps"] == 4
    )  # a given config is used as is
    # the setting survives save / load, and a bad one is refused
    loaded = MeDiMPipeline.from_pretrained(own.save_pretrained(tmp_path / "ckpt"), device="cpu")
    assert loaded.sampler_config.task_steps == {"image2report": 5}
    with pytest.raises(ValueError, match="unknown task"):
        SamplerConfig(task_steps={"inpaint": 4})
    with pytest.raises(ValueError, match="integer in"):
        SamplerConfig(task_steps={"pair": 0})


def test_a_task_may_have_its_own_sampler_settings_and_explicit_values_win(tmp_path):
    import dataclasses

    from medim.config import SamplerConfig

    own = build_random_pipeline(
        hidden=32, layers=1, image_size=16, grid=4, codebook=16, text_tokens=12, text_vocab=280
    )
    own.sampler_config = dataclasses.replace(
        own.sampler_config,
        steps=3,
        temperature=1.0,
        task_settings={"image2report": {"steps": 5, "confidence_noise": 0.0, "temperature": 0.7}},
    )
    scan = Image.new("L", (16, 16), 128)
    report = own.generate_report(scan).settings
    assert (report["steps"], report["confidence_noise"], report["temperature"]) == (5, 0.0, 0.7)
    image = own.generate_image("FINDINGS: Normal heart.").settings
    assert (image["steps"], image["confidence_noise"], image["temperature"]) == (3, 1.0, 1.0)
    called = own.generate_report(scan, temperature=1.2, steps=2).settings  # the call's own values win
    assert (called["steps"], called["confidence_noise"], called["temperature"]) == (2, 0.0, 1.2)
    # a call may also replace the task settings themselves
    replaced = own.generate_report(scan, task_settings={"image2report": {"steps": 4}}).settings
    assert (replaced["steps"], replaced["confidence_noise"], replaced["temperature"]) == (4, 1.0, 1.0)
    loaded = MeDiMPipeline.from_pretrained(own.save_pretrained(tmp_path / "ckpt"), device="cpu")
    assert loaded.sampler_config.for_task("image2report") == own.sampler_config.for_task("image2report")
    with pytest.raises(ValueError, match="unknown task"):
        SamplerConfig(task_settings={"inpaint": {"steps": 4}})
    with pytest.raises(ValueError, match="a task may set"):
        SamplerConfig(task_settings={"pair": {"pad_suffix": False}})
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        SamplerConfig(task_settings={"pair": {"temperature": -1.0}})
    with pytest.raises(ValueError, match="sets its steps twice"):
        SamplerConfig(task_steps={"pair": 4}, task_settings={"pair": {"steps": 5}})


def _unknown_word_checkpoint(pipe, root, trained_words: str, rate: float = 0.15):
    """A copy of ``pipe`` saved with the ids of ``trained_words`` as its training ids and ``unknown_word_rate``."""
    from medim.config import DiffusionConfig

    trained = pipe.text_tokenizer(trained_words, add_special_tokens=False)["input_ids"]
    path = pipe.save_pretrained(root)
    DiffusionConfig(unknown_word_rate=rate).save(path / "diffusion_config.json")
    (path / "trained_text_ids.json").write_text(json.dumps({"ids": sorted(set(trained))}))
    return MeDiMPipeline.from_pretrained(path, device="cpu"), set(trained)


def test_a_model_trained_with_word_dropout_reads_untrained_ids_as_unknown_and_outputs_keep_them(
    pipe, tmp_path
):
    words = "FINDINGS: The heart is enlarged."
    loaded, trained = _unknown_word_checkpoint(pipe, tmp_path / "ckpt", words)
    assert loaded.reads_unknown_words
    report = "zqxv The heart."  # within the tiny model's 12 report tokens
    x_init, generate, _ = loaded.prepare("report2image", report=report)
    text = x_init[0, loaded.layout.text_slice]
    words_ids = text[text != loaded.layout.pad_id]
    read = loaded.model_input(x_init)[0, loaded.layout.text_slice][: len(words_ids)]
    unknown = loaded.text_tokenizer.unk_token_id
    for written, seen in zip(words_ids.tolist(), read.tolist()):
        assert seen == (written if written in trained else unknown)
    assert (read == unknown).any()
    # the model's input is remapped, never the sequence: the condition comes back as written
    seen_inputs = []
    hidden_states = loaded.model.hidden_states

    def recording(inputs, *args, **kwargs):
        seen_inputs.append(inputs.clone())
        return hidden_states(inputs, *args, **kwargs)

    loaded.model.hidden_states = recording
    try:
        result = loaded.generate_image(report, steps=2, seed=0, guidance_scale=1.5)
    finally:
        del loaded.model.hidden_states
    assert torch.equal(result.tokens[~generate], x_init[~generate])
    assert len(seen_inputs) == 2  # one pass per step (conditional and unconditional rows together)
    assert all((inputs[0, loaded.layout.text_slice] == unknown).any() for inputs in seen_inputs)
    # the id map is the identity on every trained id and on everything outside the text vocabulary
    everything = torch.arange(loaded.layout.vocab_size)[None]
    mapped = loaded.model_input(everything)[0]
    changed = (mapped != everything[0]).nonzero().flatten().tolist()
    assert changed and all(i < loaded.layout.text_vocab_size and i not in trained for i in changed)
    # the ids survive a save/load round trip
    again = MeDiMPipeline.from_pretrained(loaded.save_pretrained(tmp_path / "again"), device="cpu")
    assert again.trained_text_ids == loaded.trained_text_ids


def test_without_word_dropout_untrained_ids_are_read_as_mask_and_outputs_keep_them(pipe, tmp_path):
    plain, trained = _unknown_word_checkpoint(pipe, tmp_path / "plain", "FINDINGS: The heart.", rate=0.0)
    assert plain.unknown_words == "mask" and plain.unknown_word_reading == "[MASK]"
    everything = torch.arange(plain.layout.vocab_size)[None]
    mapped = plain.model_input(everything)[0]
    untrained = [i for i in range(plain.layout.text_vocab_size) if i not in trained]
    assert (mapped[untrained] == plain.layout.mask_id).all()
    kept = [i for i in range(plain.layout.vocab_size) if i not in untrained]
    assert torch.equal(mapped[kept], everything[0, kept])  # trained ids, image codes and specials as written
    # only the model's input changes: the written condition comes back unchanged
    report = "zqxv The heart."
    x_init, generate, _ = plain.prepare("report2image", report=report)
    assert (plain.model_input(x_init)[0, plain.layout.text_slice] == plain.layout.mask_id).any()
    result = plain.generate_image(report, steps=2, seed=0)
    assert torch.equal(result.tokens[~generate], x_init[~generate])
    # as written on request, or when the checkpoint does not record its trained ids
    plain.unknown_words = "written"
    assert not plain.reads_unknown_words and torch.equal(plain.model_input(everything), everything)
    assert not torch.equal(
        plain.denoise_logits(x_init, generate, 1.5), logits_reading_mask(plain, x_init, generate)
    )
    assert pipe.unknown_word_reading == "as written" and pipe.trained_text_ids is None
    assert torch.equal(pipe.model_input(everything), everything)
    with pytest.raises(ValueError, match="unknown_words must be one of"):
        plain.unknown_words = "drop"
    # the notice names the words the checkpoint never trained on
    notices = plain.encode_reports(["FINDINGS: The heart zqxv."])[1]
    assert any("zqxv" in notice and "training reports" in notice for notice in notices)
    assert not any("training reports" in n for n in plain.encode_reports(["FINDINGS: The heart."])[1])


def logits_reading_mask(pipe, x, generate):
    """The denoiser's logits for ``x`` read with untrained ids as [MASK], whatever ``pipe`` is set to."""
    setting = pipe.unknown_words
    pipe.unknown_words = "mask"
    try:
        return pipe.denoise_logits(x, generate, 1.5)
    finally:
        pipe.unknown_words = setting


def test_ids_assigned_after_loading_change_what_the_model_reads(pipe):
    """Benchmarks set a checkpoint's trained ids after loading; the reading follows them, not a stale map."""
    ids = torch.arange(pipe.layout.vocab_size)[None]
    assert torch.equal(pipe.model_input(ids), ids)
    trained = set(pipe.text_tokenizer("FINDINGS: heart", add_special_tokens=False)["input_ids"])
    pipe.trained_text_ids = frozenset(trained)
    try:
        read = pipe.model_input(ids)[0]
        assert read[sorted(trained)].tolist() == sorted(trained)
        assert int((read == pipe.layout.mask_id).sum()) == pipe.layout.text_vocab_size - len(trained) + 1
    finally:
        pipe.trained_text_ids = None
    assert torch.equal(pipe.model_input(ids), ids)


def test_broken_trained_text_ids_are_a_clear_error(pipe, tmp_path):
    root = pipe.save_pretrained(tmp_path / "ckpt")
    (root / "trained_text_ids.json").write_text('{"words": [1, 2]}')
    with pytest.raises(ValueError, match="trained_text_ids.json"):
        MeDiMPipeline.from_pretrained(root, device="cpu")


def test_one_code_group_reaches_the_sampler_through_the_image_tokenizer(pipe, monkeypatch):
    """A tokenizer with code groups (a routed one) plus `one_code_group=True`: every drawn image stays in one
    group; the random model left to itself mixes them."""
    monkeypatch.setattr(pipe.image_tokenizer, "code_groups", ((0, 8), (8, 16)), raising=False)
    reports = ["FINDINGS: The heart is enlarged."] * 6

    def groups_per_image(**settings):
        tokens = pipe.generate_image(reports, steps=3, seed=2, **settings).tokens
        in_first = pipe.layout.image_codes(tokens) < 8
        return in_first.all(-1) | (~in_first).all(-1)

    assert groups_per_image(one_code_group=True).all()
    assert not groups_per_image(one_code_group=False).all()
