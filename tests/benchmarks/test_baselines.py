"""The AR baseline decodes valid tokens causally with its KV cache; FLOP counts and benchmark helpers are right."""

import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.ar_baseline import ar_generate, ar_plan, ar_run, causal_attention
from benchmarks.common import load_examples, markdown_table, measure
from benchmarks.flops import forward_flops
from benchmarks.training import model_from_preset, random_sequences
from medim.commands.init_random import build_random_pipeline
from medim.modeling import MeDiMModel
from medim.vocab import IMAGE, TEXT
from tests.core.helpers import tiny_config

REPORT = "FINDINGS: Small right pleural effusion."


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    return build_random_pipeline(hidden=32, layers=2, text_tokens=12)


@pytest.mark.parametrize("task", ["report2image", "image2report", "pair"])
@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_ar_baseline_decodes_valid_tokens_in_each_slice(pipe, task, guidance):
    from PIL import Image

    layout = pipe.layout
    inputs = (
        {"report": REPORT}
        if task == "report2image"
        else {"image": Image.new("L", (32, 32))}
        if (task == "image2report")
        else {}
    )
    x, generate, _ = pipe.prepare(task, **inputs)
    seq = ar_generate(pipe, task, x, generate, text_tokens=5, guidance=guidance, seed=1)
    assert not (seq == layout.mask_id).any()
    image = seq[:, layout.image_slice] - layout.image_offset
    assert ((image >= 0) & (image < layout.codebook_size)).all()
    text = seq[0, layout.text_slice]
    if task != "report2image":
        assert ((text[:5] < layout.text_vocab_size) | (text[:5] == layout.pad_id)).all()
        assert (text[5:] == layout.pad_id).all()
    else:
        assert torch.equal(text, x[0, layout.text_slice])  # the condition is untouched


def test_ar_cache_decoding_matches_a_full_causal_forward(pipe):
    """Greedy decoding with the KV cache picks what a full causal pass over the final sequence would pick."""
    layout = pipe.layout
    x, generate, _ = pipe.prepare("report2image", report=REPORT)
    seq = ar_generate(pipe, "report2image", x, generate, temperature=0.0)
    prefix, plan = ar_plan("report2image", layout, x, 0)
    full = torch.cat([prefix, seq[:, layout.image_slice]], 1)
    with torch.no_grad(), causal_attention(pipe.model):
        logits = pipe.model.backbone(input_ids=full).logits[0, prefix.shape[1] - 1 : -1]
    picks = logits.masked_fill(~layout.allowed_tokens[IMAGE], float("-inf")).argmax(-1)
    assert torch.equal(picks, seq[0, layout.image_slice])
    assert plan == [IMAGE] * layout.image_tokens


def test_causal_attention_restores_the_bidirectional_flags(pipe):
    layers = pipe.model.decoder.layers
    assert not any(layer.self_attn.is_causal for layer in layers)
    with causal_attention(pipe.model):
        assert all(layer.self_attn.is_causal for layer in layers)
    assert not any(layer.self_attn.is_causal for layer in layers)


def test_ar_run_end_to_end_and_bad_input(pipe):
    images, reports = ar_run(pipe, "pair", text_tokens=4)
    assert len(images) == 1 and images[0].size == (32, 32) and isinstance(reports[0], str)
    with pytest.raises(ValueError, match="text_tokens"):
        ar_plan("pair", pipe.layout, pipe.layout.blank(1), pipe.layout.text_tokens + 1)
    assert ar_plan("pair", pipe.layout, pipe.layout.blank(1), 2)[1][-3:] == [None, TEXT, TEXT]


def test_forward_flops_match_torch_flop_counter():
    model = MeDiMModel(tiny_config(attn_implementation="eager")).eval()
    x = torch.randint(0, 40, (3, model.layout.seq_len))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, torch.rand(3))
    assert forward_flops(model, 3).total == counter.get_total_flops()


def test_training_preset_model_and_sequences():
    from train.config import load_config

    config = load_config("demo-cpu")
    model = model_from_preset(config)
    layout = model.layout
    assert model.backbone.config.hidden_size == config.model.backbone["hidden_size"]
    assert layout.image_tokens == (config.data.image_size // 8) ** 2
    # built as the medim stage builds it: the real vocabulary of the tokenizer, the preset's domains
    from medim.pipeline import DEFAULT_CHECKPOINT
    from medim.tokenizers.text import load_text_tokenizer

    assert model.config.text_vocab_size == len(load_text_tokenizer(DEFAULT_CHECKPOINT / "text_tokenizer"))
    assert model.config.domains == tuple(config.data.domain_weights)
    seq = random_sequences(layout, 4, torch.Generator().manual_seed(0))
    assert seq.shape == (4, layout.seq_len) and not (seq == layout.mask_id).any()


def test_helpers():
    calls = []
    timing = measure(lambda: (calls.append(1), time.sleep(0.002)), runs=3, warmup=2)
    assert len(calls) == 5 and len(timing.seconds) == 3  # warm-up calls run but are not timed
    assert min(timing.seconds) >= 0.002  # each timing covers the call it times
    with pytest.raises(ValueError, match="runs"):
        measure(lambda: None, runs=0)
    assert markdown_table(["a", "b"], [[1, 0.5]]).splitlines()[2] == "| 1 | 0.5 |"
    examples = load_examples(4)
    assert len(examples) == 4 and {e.domain for e in examples} == {"chest_xray", "pathology"}
