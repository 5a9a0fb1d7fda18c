"""The Chameleon/taming VQ-GAN maps exactly onto diffusers' VQModel behind VQImageTokenizer."""

from __future__ import annotations

import copy

import pytest
import torch

from medim.convert_official import (
    OfficialCheckpointError,
    convert_vqgan,
    load_weights,
    read_vqgan_yaml,
)
from medim.tokenizers.image import VQImageTokenizer
from tests.convert.conftest import VQGAN_PARAMS


@pytest.fixture(scope="module")
def converted(vqgan_files):
    ckpt, config = vqgan_files
    return convert_vqgan(load_weights(ckpt), read_vqgan_yaml(config))


def test_interface_sizes(converted):
    assert converted.codebook_size == VQGAN_PARAMS["n_embed"]
    assert converted.image_size == 16
    assert converted.grid_size == (4, 4)


def test_decode_matches_reference_decoder(converted, taming_vqgan):
    ids = torch.randint(0, VQGAN_PARAMS["n_embed"], (3, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = taming_vqgan.decode(ids, grid=4).clamp(-1, 1)
    ours = converted.decode(ids)
    assert ours.shape == (3, 3, 16, 16)
    assert reference.abs().max() > 0.05  # a real picture, not a collapsed output
    torch.testing.assert_close(ours, reference, atol=2e-5, rtol=1e-4)


def test_encode_matches_reference_encoder(converted, taming_vqgan):
    pixels = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        reference = taming_vqgan.encode(pixels)
    assert torch.equal(converted.encode(pixels), reference)
    assert reference.unique().numel() > 1


def test_round_trip_through_save_pretrained(converted, tmp_path):
    converted.save_pretrained(tmp_path / "vq")
    loaded = VQImageTokenizer.from_pretrained(tmp_path / "vq")
    ids = torch.arange(16).remainder(VQGAN_PARAMS["n_embed"])[None]
    torch.testing.assert_close(loaded.decode(ids), converted.decode(ids))


def test_wrong_shape_names_the_tensor(vqgan_files):
    ckpt, config = vqgan_files
    state = load_weights(ckpt)
    state["decoder.up.1.block.0.conv1.weight"] = torch.zeros(32, 32, 1, 1)
    with pytest.raises(
        OfficialCheckpointError, match=r"decoder\.up\.1\.block\.0\.conv1\.weight has shape \[32, 32, 1, 1\]"
    ):
        convert_vqgan(state, read_vqgan_yaml(config))


def test_missing_and_unknown_tensors_are_named(vqgan_files):
    ckpt, config = vqgan_files
    state = load_weights(ckpt)
    params = read_vqgan_yaml(config)
    missing = dict(state)
    del missing["post_quant_conv.bias"]
    with pytest.raises(OfficialCheckpointError, match="post_quant_conv.bias"):
        convert_vqgan(missing, params)
    extra = dict(state)
    extra["encoder.down.5.block.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(OfficialCheckpointError, match=r"unexpected VQ-GAN tensor encoder\.down\.5"):
        convert_vqgan(extra, params)


def test_codebook_size_mismatch_is_named(vqgan_files):
    ckpt, config = vqgan_files
    params = copy.deepcopy(read_vqgan_yaml(config))
    params["n_embed"] = 32
    with pytest.raises(OfficialCheckpointError, match=r"quantize\.embedding\.weight has shape \[24, 4\]"):
        convert_vqgan(load_weights(ckpt), params)


def test_unsupported_yaml_options_are_rejected(tmp_path):
    import yaml

    params = copy.deepcopy(VQGAN_PARAMS)
    params["ddconfig"]["double_z"] = True
    (tmp_path / "vq.yaml").write_text(yaml.safe_dump({"model": {"params": params}}))
    with pytest.raises(OfficialCheckpointError, match="double_z=True"):
        read_vqgan_yaml(tmp_path / "vq.yaml")


def test_pickles_with_objects_are_refused(tmp_path):
    torch.save({"state_dict": {"x": torch.zeros(1)}, "callback": _Unsafe()}, tmp_path / "bad.ckpt")
    with pytest.raises(OfficialCheckpointError, match="weights_only=True"):
        load_weights(tmp_path / "bad.ckpt")


class _Unsafe:
    """Any custom class makes a pickle unloadable with weights_only=True."""
