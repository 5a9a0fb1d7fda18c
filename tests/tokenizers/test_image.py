"""VQImageTokenizer on a tiny random VQModel: shapes, ranges, agreement with diffusers, persistence, bad input."""

import json

import pytest
import torch

from medim.tokenizers import TokenizerNotFoundError
from medim.tokenizers.image import TOKENIZER_META_FILE, VQConfig, VQImageTokenizer

TINY = dict(
    image_size=16,
    block_out_channels=(8, 16, 16),
    latent_channels=8,
    vq_embed_dim=4,
    num_vq_embeddings=32,
    norm_num_groups=4,
)


@pytest.fixture(scope="module")
def tokenizer():
    torch.manual_seed(0)
    tok = VQImageTokenizer.from_config(**TINY).eval()
    # A spread-out codebook, so random images use many different codes (diffusers initialises it near zero).
    with torch.no_grad():
        tok.codebook.normal_()
    return tok


def _images(n=3, size=16, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=generator) * 2 - 1


def test_properties(tokenizer):
    assert tokenizer.codebook_size == 32
    assert tokenizer.image_size == 16
    assert tokenizer.downsample_factor == 4
    assert tokenizer.grid_size == (4, 4)
    assert tokenizer.num_tokens == 16


def test_encode_decode_shapes_and_ranges(tokenizer):
    ids = tokenizer.encode(_images())
    assert ids.shape == (3, 16) and ids.dtype == torch.long
    assert ids.min() >= 0 and ids.max() < tokenizer.codebook_size
    assert ids.unique().numel() > 1
    pixels = tokenizer.decode(ids)
    assert pixels.shape == (3, 3, 16, 16) and pixels.dtype == torch.float32
    assert pixels.min() >= -1 and pixels.max() <= 1


def test_encode_matches_diffusers_quantizer_row_major(tokenizer):
    x = _images()
    with torch.no_grad():
        latents = tokenizer.vq_model.encode(x).latents
        _, _, (_, _, indices) = tokenizer.vq_model.quantize(latents)
    expected = indices.view(3, 4, 4)  # diffusers flattens (batch, h, w) in row-major order
    assert torch.equal(tokenizer.encode(x).view(3, 4, 4), expected)


def test_decode_of_encode_equals_vqmodel_reconstruction(tokenizer):
    x = _images()
    with torch.no_grad():
        reference = tokenizer.vq_model(x).sample.clamp(-1, 1)
    torch.testing.assert_close(tokenizer.decode(tokenizer.encode(x)), reference, atol=1e-5, rtol=0)


def test_save_and_load_round_trip(tokenizer, tmp_path):
    x = _images()
    tokenizer.save_pretrained(tmp_path / "vq")
    files = {p.name for p in (tmp_path / "vq").iterdir()}
    assert {"config.json", "diffusion_pytorch_model.safetensors", TOKENIZER_META_FILE} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    assert json.loads((tmp_path / "vq" / TOKENIZER_META_FILE).read_text())["image_size"] == 16
    loaded = VQImageTokenizer.from_pretrained(tmp_path / "vq")
    assert loaded.grid_size == tokenizer.grid_size and loaded.codebook_size == tokenizer.codebook_size
    ids = tokenizer.encode(x)
    assert torch.equal(loaded.encode(x), ids)
    assert torch.equal(loaded.decode(ids), tokenizer.decode(ids))


def test_from_pretrained_missing_local_path_names_it(tmp_path):
    missing = tmp_path / "no_such_tokenizer"
    with pytest.raises(TokenizerNotFoundError, match="no_such_tokenizer"):
        VQImageTokenizer.from_pretrained(missing)


def test_from_pretrained_unknown_hub_id_offline_is_clear():
    # conftest sets HF_HUB_OFFLINE=1: nothing is downloaded, and the message says where it looked.
    with pytest.raises(TokenizerNotFoundError, match="hub id .medim-tests/no-such-vq."):
        VQImageTokenizer.from_pretrained("medim-tests/no-such-vq")


def test_from_pretrained_directory_without_metadata(tokenizer, tmp_path):
    tokenizer.vq_model.save_pretrained(tmp_path / "plain")
    with pytest.raises(TokenizerNotFoundError, match=TOKENIZER_META_FILE):
        VQImageTokenizer.from_pretrained(tmp_path / "plain")
    assert issubclass(TokenizerNotFoundError, ValueError) and issubclass(
        TokenizerNotFoundError, FileNotFoundError
    )


@pytest.mark.parametrize(
    "pixels, message",
    [
        (torch.zeros(2, 3, 8, 8), r"shape \[B, 3, 16, 16\]"),
        (torch.zeros(3, 16, 16), "shape"),
        (torch.full((1, 3, 16, 16), 255.0), r"\[-1, 1\].*255"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.long), "float tensor"),
    ],
)
def test_encode_rejects_bad_pixels(tokenizer, pixels, message):
    with pytest.raises(ValueError, match=message):
        tokenizer.encode(pixels)


@pytest.mark.parametrize(
    "ids, message",
    [
        (torch.full((1, 16), 32), r"\[0, 32\).*32"),
        (torch.full((1, 16), -1), r"\[0, 32\)"),
        (torch.zeros(1, 15, dtype=torch.long), r"shape \[B, 16\]"),
        (torch.zeros(1, 16), "integer tensor"),
    ],
)
def test_decode_rejects_bad_ids(tokenizer, ids, message):
    with pytest.raises(ValueError, match=message):
        tokenizer.decode(ids)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(image_size=18), "image_size=18"),
        (dict(norm_num_groups=3), "norm_num_groups=3"),
        (dict(num_vq_embeddings=0), "num_vq_embeddings"),
        (dict(block_out_channels=()), "block_out_channels"),
    ],
)
def test_config_validation_names_bad_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        VQConfig(**{**TINY, **overrides})


def test_config_dict_round_trip_and_unknown_field():
    config = VQConfig(**TINY)
    assert VQConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown VQConfig fields.*'grid'"):
        VQConfig.from_dict({**config.to_dict(), "grid": 4})
