"""Validation of the official files: tokenizer ids, vocabulary mapping, and clear errors at the first mismatch."""

from __future__ import annotations

import pytest
import torch

from medim.convert_official import (
    OFFICIAL_SPECIAL_TOKENS,
    OfficialCheckpointError,
    OfficialVocab,
    backbone_config_from_official,
    check_official_backbone,
    load_weights,
    prepare_text_tokenizer,
    size_prefix_ids,
    vocab_source_rows,
)
from medim.vocab import VocabLayout
from tests.convert.conftest import VQGAN_PARAMS, write_official_backbone
from tests.convert.official_reference import TINY_GEMMA


@pytest.fixture(scope="module")
def tokenizer_and_ids(llama_tokenizer_dir):
    return prepare_text_tokenizer(llama_tokenizer_dir)


@pytest.fixture(scope="module")
def official_vocab(tokenizer_and_ids):
    tokenizer, ids = tokenizer_and_ids
    return OfficialVocab(
        len(tokenizer),
        VQGAN_PARAMS["n_embed"],
        ids["bos"],
        ids["pad"],
        ids["<boi>"],
        ids["<eoi>"],
        ids["<eos>"],
    )


def test_special_tokens_are_appended_in_official_order(tokenizer_and_ids, llama_tokenizer_dir):
    tokenizer, ids = tokenizer_and_ids
    from transformers import AutoTokenizer

    base = len(AutoTokenizer.from_pretrained(str(llama_tokenizer_dir)))
    assert [ids[t] for t in OFFICIAL_SPECIAL_TOKENS] == [base, base + 1, base + 2]
    assert ids["pad"] == tokenizer.convert_tokens_to_ids("<unk>") == 0  # the official pad, absent pad token
    assert ids["bos"] == 1


def test_tokenizer_saved_after_adding_is_accepted(tokenizer_and_ids, tmp_path):
    tokenizer, ids = tokenizer_and_ids
    tokenizer.save_pretrained(tmp_path)
    again, again_ids = prepare_text_tokenizer(tmp_path)
    assert again_ids == ids and len(again) == len(tokenizer)


def test_specials_at_wrong_ids_are_rejected(llama_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(llama_tokenizer_dir))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<eoi>", "<boi>", "<eos>"]})
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(OfficialCheckpointError, match="last three ids"):
        prepare_text_tokenizer(tmp_path)


def test_size_prefix_starts_and_ends_with_bos(tokenizer_and_ids):
    tokenizer, ids = tokenizer_and_ids
    prefix = size_prefix_ids(tokenizer, ids["bos"], 512, 512)
    assert prefix[0] == ids["bos"] and prefix[-1] == ids["bos"]
    assert "Width is tensor([512])" in tokenizer.decode(list(prefix), skip_special_tokens=True)


def test_vocab_rows_map_every_official_role(official_vocab):
    layout = VocabLayout(official_vocab.text_vocab_size, official_vocab.codebook_size, 16, 5)
    rows = vocab_source_rows(official_vocab, layout)
    assert rows.shape == (layout.vocab_size,)
    assert torch.equal(rows[: layout.text_vocab_size], torch.arange(official_vocab.text_vocab_size))
    codes = torch.arange(official_vocab.codebook_size)
    assert torch.equal(rows[layout.image_offset + codes], official_vocab.image_offset + codes)
    roles = {"boi": "boi_id", "eoi": "eoi_id", "pad": "pad_id", "mask": "mask_id"}
    for role, attribute in roles.items():
        assert rows[getattr(layout, attribute)] == getattr(official_vocab, attribute), role
    # every official row is used, so nothing the model learned is dropped
    assert set(rows.tolist()) == set(range(official_vocab.vocab_size))


def test_backbone_config_uses_the_official_activation():
    backbone = backbone_config_from_official(TINY_GEMMA)
    assert backbone["hidden_act"] == "gelu_pytorch_tanh"  # hidden_activation unset -> tanh GELU
    assert backbone["rope_parameters"]["rope_theta"] == 10000.0
    with pytest.raises(OfficialCheckpointError, match="exact GELU"):
        backbone_config_from_official({**TINY_GEMMA, "hidden_activation": "gelu"})


def test_valid_state_passes(official_state, official_vocab):
    # raises ValueError naming the first mismatch; a valid state returns nothing
    assert (
        check_official_backbone(official_state, backbone_config_from_official(TINY_GEMMA), official_vocab)
        is None
    )


def test_layer_count_mismatch_is_explained(official_state, official_vocab):
    backbone = backbone_config_from_official({**TINY_GEMMA, "num_hidden_layers": 28})
    with pytest.raises(
        OfficialCheckpointError, match=r"num_hidden_layers=28 but the weights hold 2 .*--num-hidden-layers 2"
    ):
        check_official_backbone(official_state, backbone, official_vocab)


def test_base_lm_vocabulary_is_explained(official_state, official_vocab):
    state = dict(official_state)
    state["model.embed_tokens.weight"] = torch.zeros(1000, TINY_GEMMA["hidden_size"])
    with pytest.raises(
        OfficialCheckpointError,
        match=rf"has 1000 rows but the official layout needs {official_vocab.vocab_size}",
    ):
        check_official_backbone(state, backbone_config_from_official(TINY_GEMMA), official_vocab)


def test_wrong_shape_names_first_tensor(official_state, official_vocab):
    state = dict(official_state)
    state["model.layers.1.mlp.up_proj.weight"] = torch.zeros(64, 32)
    state["model.layers.1.mlp.down_proj.weight"] = torch.zeros(32, 64)
    with pytest.raises(
        OfficialCheckpointError,
        match=r"model\.layers\.1\.mlp\.down_proj\.weight has shape \[32, 64\] .* implies \[32, 48\]",
    ):
        check_official_backbone(state, backbone_config_from_official(TINY_GEMMA), official_vocab)


def test_missing_adaln_is_named(official_state, official_vocab):
    state = dict(official_state)
    del state["model.layers.0.adaLN_modulation.bias"]
    with pytest.raises(OfficialCheckpointError, match=r"model\.layers\.0\.adaLN_modulation\.bias is missing"):
        check_official_backbone(state, backbone_config_from_official(TINY_GEMMA), official_vocab)


def test_unexpected_tensor_is_named(official_state, official_vocab):
    state = {**official_state, "model.layers.0.self_attn.q_norm.weight": torch.zeros(8)}
    with pytest.raises(
        OfficialCheckpointError, match=r"unexpected tensor model\.layers\.0\.self_attn\.q_norm\.weight"
    ):
        check_official_backbone(state, backbone_config_from_official(TINY_GEMMA), official_vocab)


@pytest.mark.parametrize("binary", [False, True])
def test_sharded_weights_load_with_prefixes_stripped(official_state, tmp_path, binary):
    prefixed = {"module.backbone." + k: v for k, v in official_state.items()}
    write_official_backbone(tmp_path, prefixed, shards=3, binary=binary)
    loaded = load_weights(tmp_path)
    assert set(loaded) == set(official_state)
    assert torch.equal(loaded["model.norm.weight"], official_state["model.norm.weight"])


def test_missing_shard_and_empty_directory_are_named(official_state, tmp_path):
    write_official_backbone(tmp_path / "a", official_state, shards=2)
    (tmp_path / "a" / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(OfficialCheckpointError, match="model-00002-of-00002.safetensors"):
        load_weights(tmp_path / "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OfficialCheckpointError, match="no weights in"):
        load_weights(tmp_path / "empty")
