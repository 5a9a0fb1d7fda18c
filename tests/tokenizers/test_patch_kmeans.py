"""Patch k-means image tokenizer: exact on its own centres, row-major grid, round trip, dispatch by kind."""

import pytest
import torch

from medim.tokenizers.image import VQImageTokenizer, load_image_tokenizer
from medim.tokenizers.patch_kmeans import PatchKMeansTokenizer


def _images(n: int = 12, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Images made of 4x4 patches of four flat colours, so four centres describe them exactly."""
    generator = torch.Generator().manual_seed(seed)
    colours = torch.tensor([[-1.0, -1.0, -1.0], [1.0, -1.0, 0.0], [0.0, 0.5, 1.0], [0.25, 0.25, 0.25]])
    choice = torch.randint(4, (n, size // 4, size // 4), generator=generator)
    grid = colours[choice].permute(0, 3, 1, 2)  # [n, 3, 4, 4] cells
    return grid.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)


@pytest.fixture(scope="module")
def fitted() -> PatchKMeansTokenizer:
    return PatchKMeansTokenizer.fit([_images()[:6], _images()[6:]], codebook_size=4, patch=4, iterations=5)


def test_shape_properties(fitted):
    assert fitted.grid_size == (4, 4) and fitted.num_tokens == 16 and fitted.codebook_size == 4
    assert fitted.image_size == 16 and fitted.downsample_factor == 4


def test_images_made_of_the_centres_round_trip_exactly(fitted):
    images = _images(5, seed=3)
    ids = fitted.encode(images)
    assert ids.shape == (5, 16) and ids.dtype == torch.long
    torch.testing.assert_close(fitted.decode(ids), images, rtol=0, atol=1e-3)


def test_ids_are_row_major_over_the_grid(fitted):
    images = _images(1, seed=4)
    ids = fitted.encode(images)
    # the patch at grid row 1, column 2 covers pixels [4:8, 8:12]
    patch = images[0, :, 4:8, 8:12].reshape(-1)
    nearest = torch.cdist(patch[None], fitted.centres).argmin().item()
    assert ids[0, 1 * 4 + 2].item() == nearest


def test_save_load_and_dispatch_by_kind(fitted, tmp_path):
    fitted.save_pretrained(tmp_path / "kmeans")
    loaded = load_image_tokenizer(tmp_path / "kmeans")
    assert isinstance(loaded, PatchKMeansTokenizer)
    torch.testing.assert_close(loaded.centres, fitted.centres, rtol=0, atol=0)
    vq = VQImageTokenizer.from_config(
        image_size=16,
        block_out_channels=(8, 8),
        latent_channels=8,
        vq_embed_dim=4,
        num_vq_embeddings=8,
        norm_num_groups=4,
        mid_block_add_attention=False,
    )
    vq.save_pretrained(tmp_path / "vq")
    assert isinstance(load_image_tokenizer(tmp_path / "vq"), VQImageTokenizer)
    with pytest.raises(ValueError, match=r"lacks \[.centres.safetensors"):
        PatchKMeansTokenizer.from_pretrained(tmp_path / "vq")


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (torch.zeros(1, 3, 8, 8), "shape"),
        (torch.full((1, 3, 16, 16), 2.0), r"\[-1, 1\]"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.long), "float"),
    ],
)
def test_encode_rejects_bad_pixels(fitted, pixels, message):
    with pytest.raises(ValueError, match=message):
        fitted.encode(pixels)


def test_decode_rejects_out_of_range_ids(fitted):
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        fitted.decode(torch.full((1, 16), 4))
    with pytest.raises(ValueError, match="shape"):
        fitted.decode(torch.zeros(1, 15, dtype=torch.long))


def test_fit_needs_images():
    with pytest.raises(ValueError, match="at least one image"):
        PatchKMeansTokenizer.fit([], codebook_size=4)


def _specks(n: int, seed: int) -> torch.Tensor:
    """16 px grey images of 4x4 patches: half plain mid-grey, half mid-grey with one black pixel somewhere."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 3, 16, 16)
    for image in images:
        for row in range(4):
            for col in range(4):
                if torch.rand((), generator=generator) < 0.5:
                    y, x = torch.randint(4, (2,), generator=generator).tolist()
                    image[:, 4 * row + y, 4 * col + x] = -1.0
    return images


def test_luminance_quantiles_and_exemplars_keep_a_speck_that_centres_average_away():
    images = _specks(40, seed=0)
    plain = PatchKMeansTokenizer.fit([images], codebook_size=2, patch=4, iterations=10)
    kept = PatchKMeansTokenizer.fit(
        [images], codebook_size=2, patch=4, iterations=10, quantile_weight=8.0, draw="exemplar"
    )
    test = _specks(10, seed=1)
    speck = test.view(10, 3, 4, 4, 4, 4).amin((1, 3, 5)).flatten(1) < -0.5  # [image, cell]: has a black pixel
    ids = kept.encode(test)
    # the quantiles put specked and plain patches into different codes whatever the speck's position
    assert ids[speck].unique().numel() == 1 and ids[~speck].unique().numel() == 1
    assert ids[speck][0] != ids[~speck][0]

    # an exemplar is a real patch, so every specked patch is drawn with a black pixel; centres of pixel-only
    # k-means average specks at different places into grey, so most specked patches come back without one
    def drawn_specks(tokenizer):
        drawn = tokenizer.decode(tokenizer.encode(test))
        return drawn.view(10, 3, 4, 4, 4, 4).amin((1, 3, 5)).flatten(1)[speck] < -0.5

    assert kept.codebook[ids[speck][0]].min() == -1.0
    assert drawn_specks(kept).all()
    assert drawn_specks(plain).float().mean() < 0.5


def test_quantile_weight_and_drawn_patches_survive_save_and_load(tmp_path):
    from safetensors.torch import load_file, save_file

    tokenizer = PatchKMeansTokenizer.fit(
        [_specks(8, seed=2)], codebook_size=3, patch=4, iterations=3, quantile_weight=2.0, draw="exemplar"
    )
    tokenizer.save_pretrained(tmp_path / "kept")
    loaded = load_image_tokenizer(tmp_path / "kept")
    assert loaded.quantile_weight == 2.0
    assert loaded.describe() == "patch k-means 4x4, 3 codes (exemplars drawn, luminance quantiles x2)"
    torch.testing.assert_close(loaded.codebook, tokenizer.codebook, rtol=0, atol=0)
    images = _specks(3, seed=3)
    assert torch.equal(loaded.encode(images), tokenizer.encode(images))
    # a file written before drawn patches existed draws its centres
    plain = PatchKMeansTokenizer.fit([_specks(8, seed=2)], codebook_size=3, patch=4, iterations=3)
    plain.save_pretrained(tmp_path / "old")
    save_file({"centres": plain.centres}, str(tmp_path / "old" / "centres.safetensors"))
    old = load_image_tokenizer(tmp_path / "old")
    torch.testing.assert_close(old.codebook, load_file(tmp_path / "old" / "centres.safetensors")["centres"])
    with pytest.raises(ValueError, match="draw must be one of"):
        PatchKMeansTokenizer.fit([_specks(2, seed=0)], codebook_size=2, patch=4, draw="medoid")
