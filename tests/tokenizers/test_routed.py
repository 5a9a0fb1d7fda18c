"""Routed image tokenizer: grey images keep the grey tokenizer's ids, colour images get the colour tokenizer's ids
after them; each position is drawn by the tokenizer its id belongs to; save, load and dispatch by kind."""

import pytest
import torch

from medim.tokenizers.image import VQImageTokenizer, load_image_tokenizer
from medim.tokenizers.patch_kmeans import PatchKMeansTokenizer
from medim.tokenizers.routed import RoutedImageTokenizer, colourfulness


def _vq(codes: int = 8) -> VQImageTokenizer:
    torch.manual_seed(0)
    return VQImageTokenizer.from_config(
        image_size=16,
        block_out_channels=(8, 8, 8),
        latent_channels=8,
        vq_embed_dim=4,
        num_vq_embeddings=codes,
        norm_num_groups=4,
        mid_block_add_attention=False,
    ).eval()


def _grey(n: int, seed: int) -> torch.Tensor:
    return (torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1).repeat(
        1, 3, 1, 1
    )


def _colour(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def routed() -> RoutedImageTokenizer:
    colour = PatchKMeansTokenizer.fit([_colour(8, seed=1)], codebook_size=6, patch=4, iterations=3)
    return RoutedImageTokenizer(_vq(), colour)


def test_colourfulness_is_zero_for_grey_images_and_large_for_colour_ones():
    assert torch.equal(colourfulness(_grey(3, 0)), torch.zeros(3))
    assert (colourfulness(_colour(3, 0)) > 0.5).all()


def test_ids_are_the_grey_tokenizers_or_the_colour_tokenizers_after_them(routed):
    assert routed.grid_size == (4, 4) and routed.codebook_size == 8 + 6 and routed.colour_offset == 8
    assert routed.code_groups == ((0, 8), (8, 14))
    images = torch.cat([_grey(2, 2), _colour(2, 3), _grey(1, 4)])
    ids = routed.encode(images)
    colour = torch.tensor([False, False, True, True, False])
    assert torch.equal(routed.is_colour(images), colour)
    assert torch.equal(ids[~colour], routed.grey.encode(images[~colour]))
    assert torch.equal(ids[colour], routed.colour.encode(images[colour]) + 8)


def test_each_position_is_drawn_by_the_tokenizer_its_id_belongs_to(routed):
    grey_ids = torch.randint(8, (1, 16), generator=torch.Generator().manual_seed(5))
    colour_ids = torch.randint(6, (1, 16), generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(routed.decode(grey_ids), routed.grey.decode(grey_ids))
    torch.testing.assert_close(routed.decode(colour_ids + 8), routed.colour.decode(colour_ids))
    # a mixed grid: colour positions are the colour tokenizer's patches; grey positions come from the grey
    # decoder run on the grid with its colour ids replaced by the grid's most frequent grey id
    mixed = torch.where(torch.arange(16) % 3 == 0, colour_ids + 8, grey_ids)
    drawn = routed.decode(mixed)
    is_colour = (mixed >= 8).view(4, 4).repeat_interleave(4, 0).repeat_interleave(4, 1)
    colour_drawn = routed.colour.decode((mixed - 8).clamp_min(0))[0]
    assert torch.equal(drawn[0][:, is_colour], colour_drawn[:, is_colour])
    frequent = torch.mode(mixed[mixed < 8]).values
    grey_drawn = routed.grey.decode(torch.where(mixed >= 8, frequent, mixed))[0]
    torch.testing.assert_close(drawn[0][:, ~is_colour], grey_drawn[:, ~is_colour])
    with pytest.raises(ValueError, match="ids must lie in"):
        routed.decode(torch.full((1, 16), 14))


def test_save_load_and_dispatch_by_kind(routed, tmp_path):
    routed.save_pretrained(tmp_path / "routed")
    loaded = load_image_tokenizer(tmp_path / "routed")
    assert isinstance(loaded, RoutedImageTokenizer)
    assert isinstance(loaded.grey, VQImageTokenizer) and isinstance(loaded.colour, PatchKMeansTokenizer)
    images = torch.cat([_grey(2, 7), _colour(2, 8)])
    assert torch.equal(loaded.encode(images), routed.encode(images))
    torch.testing.assert_close(loaded.decode(routed.encode(images)), routed.reconstruct(images))


def test_describe_names_both_parts_and_their_id_ranges(routed):
    assert routed.describe() == (
        "routed: grey images -> VQ, 8 codes (ids 0-7); colour images -> patch k-means 4x4, 6 codes "
        "(centres drawn) (ids 8-13)"
    )


def test_parts_must_share_the_grid():
    colour = PatchKMeansTokenizer.fit([_colour(4, seed=1)], codebook_size=4, patch=2, iterations=2)
    with pytest.raises(ValueError, match="share image size and grid"):
        RoutedImageTokenizer(_vq(), colour)
