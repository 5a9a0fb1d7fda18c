"""Backbone adapter: bidirectional attention on every backend, AdaLN-Zero identity, ablation switches."""

import pytest
import torch

from medim.modeling import MeDiMModel, build_backbone
from tests.core.helpers import FAMILIES, tiny_config

IMPLEMENTATIONS = ("eager", "sdpa")


def _logits(model, ids, t=None):
    with torch.no_grad():
        return model(ids, t if t is not None else torch.full((ids.shape[0],), 0.5))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_later_token_changes_earlier_output(family, impl):
    model = MeDiMModel(tiny_config(family, attn_implementation=impl)).eval()
    assert all(layer.self_attn.is_causal is False for layer in model.decoder.layers)
    ids = torch.randint(0, model.layout.vocab_size - 1, (2, model.layout.seq_len))
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % (model.layout.vocab_size - 1)
    before, after = _logits(model, ids), _logits(model, changed)
    # every earlier position sees the change of the last token
    assert (before[:, :-1] - after[:, :-1]).abs().amax(dim=-1).min() > 1e-6


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_causal_ablation_hides_later_tokens(family, impl):
    model = MeDiMModel(tiny_config(family, attn_implementation=impl, causal_attention=True)).eval()
    ids = torch.randint(0, model.layout.vocab_size - 1, (2, model.layout.seq_len))
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % (model.layout.vocab_size - 1)
    before, after = _logits(model, ids), _logits(model, changed)
    torch.testing.assert_close(before[:, :-1], after[:, :-1])
    assert (before[:, -1] - after[:, -1]).abs().max() > 1e-6


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_adaln_zero_at_init_reproduces_the_pretrained_backbone(family, impl):
    """With the causal flag on, the adapted model must compute exactly the unwrapped causal LM's logits."""
    config = tiny_config(family, attn_implementation=impl, causal_attention=True)
    torch.manual_seed(1)
    reference = build_backbone(config).eval()
    torch.manual_seed(1)
    model = MeDiMModel(config, backbone=build_backbone(config)).eval()
    ids = torch.randint(0, model.layout.vocab_size, (3, model.layout.seq_len))
    with torch.no_grad():
        expected = reference(input_ids=ids).logits
        for t in (0.01, 0.5, 1.0):
            got = model(ids, torch.full((3,), t))
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_bidirectional_adaln_at_init_equals_unconditioned_model(family):
    torch.manual_seed(2)
    plain = MeDiMModel(tiny_config(family, timestep_conditioning="off")).eval()
    adaln = MeDiMModel(tiny_config(family), backbone=plain.backbone).eval()
    ids = torch.randint(0, plain.layout.vocab_size, (2, plain.layout.seq_len))
    torch.testing.assert_close(_logits(adaln, ids, torch.tensor([0.1, 0.9])), _logits(plain, ids))


def test_dit_gate_form_blanks_blocks_at_init_and_shifted_bias_restores_them():
    torch.manual_seed(3)
    one_plus = MeDiMModel(tiny_config()).eval()
    dit = MeDiMModel(tiny_config(adaln_gate="dit"), backbone=one_plus.backbone).eval()
    dit.timestep_embedder.load_state_dict(one_plus.timestep_embedder.state_dict())
    ids = torch.randint(0, one_plus.layout.vocab_size, (2, one_plus.layout.seq_len))
    assert (_logits(dit, ids) - _logits(one_plus, ids)).abs().max() > 1e-4
    hidden = one_plus.backbone.config.hidden_size
    with torch.no_grad():
        for module in dit.adaln:
            module.linear.bias[2 * hidden : 3 * hidden] += 1  # attention gate
            module.linear.bias[5 * hidden : 6 * hidden] += 1  # MLP gate
    torch.testing.assert_close(_logits(dit, ids), _logits(one_plus, ids))


def test_timestep_changes_output_once_adaln_is_trained():
    model = MeDiMModel(tiny_config()).eval()
    with torch.no_grad():
        for module in model.adaln:
            module.linear.weight.normal_(std=0.1)
    ids = torch.randint(0, model.layout.vocab_size, (1, model.layout.seq_len))
    assert (
        _logits(model, ids, torch.tensor([0.1])) - _logits(model, ids, torch.tensor([0.9]))
    ).abs().max() > 1e-4


def test_additive_timestep_ablation_uses_t_without_adaln():
    model = MeDiMModel(tiny_config(timestep_conditioning="additive")).eval()
    assert model.adaln is None and model.timestep_embedder is not None
    ids = torch.randint(0, model.layout.vocab_size, (1, model.layout.seq_len))
    assert (
        _logits(model, ids, torch.tensor([0.1])) - _logits(model, ids, torch.tensor([0.9]))
    ).abs().max() > 1e-6


def test_padding_mask_hides_padded_keys():
    model = MeDiMModel(tiny_config(attn_implementation="eager")).eval()
    ids = torch.randint(0, model.layout.vocab_size, (1, model.layout.seq_len))
    attention = torch.ones_like(ids)
    attention[:, -2:] = 0
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % model.layout.vocab_size
    t = torch.tensor([0.5])
    with torch.no_grad():
        a = model(ids, t, attention_mask=attention)
        b = model(changed, t, attention_mask=attention)
    torch.testing.assert_close(a[:, :-2], b[:, :-2])


def test_missing_t_is_a_clear_error():
    model = MeDiMModel(tiny_config())
    with pytest.raises(ValueError, match="pass t"):
        model(torch.zeros(1, model.layout.seq_len, dtype=torch.long))


def test_pretrained_backbone_gets_mean_initialised_vocabulary(tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    hf_config = AutoConfig.for_model(
        "llama",
        vocab_size=40,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
    )
    lm = AutoModelForCausalLM.from_config(hf_config)
    lm.save_pretrained(tmp_path)
    config = tiny_config(backbone_path=str(tmp_path))
    backbone = build_backbone(config, pretrained=True)
    rows = backbone.get_input_embeddings().weight
    assert rows.shape[0] == 40 + 16 + 4
    torch.testing.assert_close(rows[:40], lm.get_input_embeddings().weight)
    new_mean = rows[40:].mean(0)
    assert (new_mean - lm.get_input_embeddings().weight.mean(0)).norm() < rows[:40].std(0).norm()


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="timestep_conditioning"):
        tiny_config(timestep_conditioning="film")
    with pytest.raises(ValueError, match="model_type"):
        tiny_config("gpt2")
