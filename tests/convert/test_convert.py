"""End to end: official-layout weights -> converted checkpoint whose logits equal the official forward."""

from __future__ import annotations

import json

import pytest
import torch

from medim.config import SamplerConfig
from medim.convert_official import (
    REQUIRED_CONFIG_FIELDS,
    OfficialCheckpointError,
    OfficialVocab,
    convert,
    official_sampler_config,
    prepare_text_tokenizer,
    vocab_source_rows,
)
from tests.convert.conftest import (
    REPORT_SLOTS,
    convert_release,
    needs_core,
    official_vocab_size,
    write_official_backbone,
)
from tests.convert.official_reference import (
    TINY_GEMMA,
    official_logits,
    official_sigma,
    random_official_state,
)


@pytest.fixture(scope="module")
def pipe(converted_dir):
    from medim.pipeline import MeDiMPipeline

    return MeDiMPipeline.from_pretrained(converted_dir, device="cpu")


def _official_vocab(tokenizer_dir) -> tuple[OfficialVocab, object]:
    tokenizer, ids = prepare_text_tokenizer(tokenizer_dir)
    vocab = OfficialVocab(
        len(tokenizer), 24, ids["bos"], ids["pad"], ids["<boi>"], ids["<eoi>"], ids["<eos>"]
    )
    return vocab, tokenizer


def _paired_sequences(model, official: OfficialVocab, tokenizer):
    """The same two noisy sequences in official ids [2, L] and in ours [2, L], plus masked fractions [2]."""
    layout, config = model.layout, model.config
    g = torch.Generator().manual_seed(3)
    n, t = layout.image_tokens, layout.text_tokens
    codes = torch.randint(0, official.codebook_size, (2, n), generator=g)
    report = tokenizer("No pleural effusion.", add_special_tokens=False)["input_ids"][: t - 2]
    official_rows, our_rows = [], []
    for row in range(2):
        image_masked = torch.rand(n, generator=g) < (0.3 if row == 0 else 1.0)
        text = report + [official.pad_id] * (t - len(report))
        text_masked = [row == 1 or i % 3 == 0 for i in range(t)]
        off_image = torch.where(image_masked, official.mask_id, codes[row] + official.image_offset).tolist()
        off_text = [official.mask_id if m else tok for tok, m in zip(text, text_masked)]
        official_rows.append(
            [
                official.boi_id,
                *off_image,
                official.eoi_id,
                *config.text_prefix_ids,
                *off_text,
                official.eos_id,
            ]
        )
        ours_image = torch.where(image_masked, layout.mask_id, codes[row] + layout.image_offset).tolist()
        ours_text = [
            layout.mask_id if m else (layout.pad_id if tok == official.pad_id else tok)
            for tok, m in zip(text, text_masked)
        ]
        our_rows.append(
            [
                layout.boi_id,
                *ours_image,
                layout.eoi_id,
                *config.text_prefix_ids,
                *ours_text,
                *config.text_suffix_ids,
            ]
        )
    official_ids, our_ids = torch.tensor(official_rows), torch.tensor(our_rows)
    assert official_ids.shape == our_ids.shape == (2, layout.seq_len)
    maskable = (layout.position_modality != 0)[None]
    fraction = ((our_ids == layout.mask_id) & maskable).sum(-1) / maskable.sum()
    return official_ids, our_ids, fraction.float()


@needs_core
def test_logits_equal_the_official_forward(pipe, official_state, llama_tokenizer_dir):
    official, tokenizer = _official_vocab(llama_tokenizer_dir)
    model, layout = pipe.model, pipe.layout
    official_ids, our_ids, fraction = _paired_sequences(model, official, tokenizer)
    # the official time input: sigma at its t, where the masked fraction is (1 - 1e-3) t (t <= 1)
    sigma = official_sigma((fraction / (1 - 1e-3)).clamp(max=1.0))
    attention = ((official_ids != official.pad_id) | (layout.position_modality != 2)[None]).long()
    ref_image, ref_text = official_logits(
        official_state,
        TINY_GEMMA,
        official_ids,
        sigma,
        attention,
        image_tokens=layout.image_tokens,
        report_tokens=REPORT_SLOTS,
    )
    with torch.no_grad():
        ours = model(our_ids, fraction)
    rows = vocab_source_rows(official, layout)
    torch.testing.assert_close(ours[:, layout.image_slice], ref_image[..., rows], atol=2e-5, rtol=1e-4)
    # official report slot 0 is the fixed <s> (in our prefix): our report token j is its slot j + 1
    torch.testing.assert_close(ours[:, layout.text_slice], ref_text[:, 1:][..., rows], atol=2e-5, rtol=1e-4)
    assert fraction[1] == 1.0  # the fully masked row exercised the t = 1 end of the schedule


@needs_core
def test_untied_head_converts_exactly(tmp_path, vqgan_files, llama_tokenizer_dir):
    from medim.pipeline import MeDiMPipeline

    state = random_official_state(TINY_GEMMA, official_vocab_size(llama_tokenizer_dir), tied=False, seed=5)
    out = convert_release(tmp_path, vqgan_files, llama_tokenizer_dir, state, name="untied")
    pipe = MeDiMPipeline.from_pretrained(out, device="cpu")
    assert pipe.config.backbone["tie_word_embeddings"] is False
    official, tokenizer = _official_vocab(llama_tokenizer_dir)
    official_ids, our_ids, fraction = _paired_sequences(pipe.model, official, tokenizer)
    sigma = official_sigma((fraction / (1 - 1e-3)).clamp(max=1.0))
    attention = ((official_ids != official.pad_id) | (pipe.layout.position_modality != 2)[None]).long()
    ref_image, _ = official_logits(
        state, TINY_GEMMA, official_ids, sigma, attention, image_tokens=16, report_tokens=REPORT_SLOTS
    )
    with torch.no_grad():
        ours = pipe.model(our_ids, fraction)
    rows = vocab_source_rows(official, pipe.layout)
    torch.testing.assert_close(ours[:, pipe.layout.image_slice], ref_image[..., rows], atol=2e-5, rtol=1e-4)


@needs_core
def test_written_checkpoint_describes_itself(converted_dir, pipe):
    info = json.loads((converted_dir / "checkpoint_info.json").read_text())
    assert info["kind"] == "converted-official" and info["requires_gpu"] is True
    assert info["estimated_gpu_memory_gib"] > 0 and info["estimated_step_seconds_h100_bf16"] > 0
    assert pipe.sampler_config == official_sampler_config()
    assert pipe.config.adaln_gate == "dit" and pipe.config.timestep_input == "loglinear_sigma"
    assert pipe.config.suppressed_text_ids == (0,) and not pipe.config.attend_to_pad
    assert sorted(p.name for p in converted_dir.iterdir()) == [
        "checkpoint_info.json",
        "image_tokenizer",
        "medim_config.json",
        "model.safetensors",
        "sampler_config.json",
        "text_tokenizer",
    ]


@needs_core
@pytest.mark.parametrize("task", ["report2image", "image2report", "pair"])
def test_three_tasks_run_on_cpu(pipe, task):
    from PIL import Image

    image = Image.new("RGB", (20, 12), (90, 90, 90))
    result = pipe.run(
        task, report="No pleural effusion.", image=image, prompt=None, seed=0, steps=3, guidance_scale=1.0
    )
    layout = pipe.layout
    generated = result.tokens[:, layout.image_slice if task == "report2image" else layout.text_slice]
    assert not (generated == layout.mask_id).any()
    assert result.images[0].size == (16, 16)
    assert not (
        result.tokens[:, layout.text_slice] == 0
    ).any()  # the suppressed official pad id never appears
    assert torch.equal(result.tokens[0, -1:], torch.tensor(pipe.config.text_suffix_ids))


@needs_core
def test_cli_converts(tmp_path, vqgan_files, llama_tokenizer_dir, official_state, capsys):
    from medim.__main__ import main

    backbone = write_official_backbone(tmp_path / "backbone", official_state)
    ckpt, config = vqgan_files
    argv = [
        "convert-official",
        "--backbone",
        str(backbone),
        "--vqgan-ckpt",
        str(ckpt),
        "--vqgan-config",
        str(config),
        "--tokenizer",
        str(llama_tokenizer_dir),
        "--out",
        str(tmp_path / "out"),
        "--image-size-text",
        "640x480",
    ]
    assert main(argv) == 0
    assert "wrote the converted official MeDiM checkpoint" in capsys.readouterr().out
    info = json.loads((tmp_path / "out" / "checkpoint_info.json").read_text())
    assert info["image_size_sentence"] == "Image Size: Width is tensor([640]) Height is tensor([480])."
    assert main([*argv[:-2], "--image-size-text", "wide"]) == 2  # a clear error, not a traceback


def test_sampler_preset_matches_official_settings():
    preset = official_sampler_config()
    assert isinstance(preset, SamplerConfig)
    assert (preset.steps, preset.schedule, preset.temperature, preset.guidance_scale) == (
        128,
        "arccos",
        1.0,
        5.0,
    )
    assert preset.guidance_schedule == "linear" and preset.top_k is None and preset.top_p is None


def test_old_core_is_refused_clearly(monkeypatch, tmp_path):
    import medim.convert_official as module

    monkeypatch.setattr(module, "REQUIRED_CONFIG_FIELDS", (*REQUIRED_CONFIG_FIELDS, "a_field_no_core_has"))
    with pytest.raises(OfficialCheckpointError, match="a_field_no_core_has"):
        convert(tmp_path, tmp_path, tmp_path, tmp_path, tmp_path / "out")
