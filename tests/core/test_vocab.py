"""Vocabulary layout and sequence packing."""

import pytest
import torch

from medim.vocab import IMAGE, SPECIAL, TEXT, VocabLayout

LAYOUT = VocabLayout(text_vocab_size=30, codebook_size=10, image_tokens=4, text_tokens=5)


def test_ids_are_disjoint_and_cover_the_vocabulary():
    specials = {LAYOUT.boi_id, LAYOUT.eoi_id, LAYOUT.pad_id, LAYOUT.mask_id}
    assert len(specials) == 4 and min(specials) == 40 and LAYOUT.vocab_size == 44
    assert LAYOUT.image_offset == 30


def test_pack_unpack_round_trip():
    text, truncated = LAYOUT.pad_text([[1, 2, 3], [4, 5, 6, 7, 8, 9]])
    assert truncated.tolist() == [False, True]
    codes = torch.tensor([[0, 1, 2, 9], [3, 3, 3, 3]])
    seq = LAYOUT.pack(text, codes)
    assert seq.shape == (2, LAYOUT.seq_len)
    assert torch.equal(LAYOUT.image_codes(seq), codes)
    assert LAYOUT.text_ids(seq) == [[1, 2, 3], [4, 5, 6, 7, 8]]
    modality = LAYOUT.position_modality
    assert modality[0] == SPECIAL and (modality[LAYOUT.image_slice] == IMAGE).all()
    assert (modality[LAYOUT.text_slice] == TEXT).all()


def test_masked_positions_are_reported_as_missing():
    seq = LAYOUT.blank(1)
    assert (LAYOUT.image_codes(seq) == -1).all()
    assert LAYOUT.text_ids(seq) == [[]]


def test_out_of_range_ids_are_rejected():
    with pytest.raises(ValueError, match="outside the text vocabulary"):
        LAYOUT.pad_text([[31]])
    with pytest.raises(ValueError, match="image codes"):
        LAYOUT.pack(LAYOUT.pad_text([[1]])[0], torch.tensor([[0, 0, 0, 10]]))


def test_allowed_tokens_never_include_mask():
    assert not LAYOUT.allowed_tokens[:, LAYOUT.mask_id].any()
    assert LAYOUT.allowed_tokens[TEXT, LAYOUT.pad_id]
    assert not LAYOUT.allowed_tokens[IMAGE, :30].any()
