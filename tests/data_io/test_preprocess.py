"""Image ⟷ tensor conversion and report cleaning, sectioning and truncation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from medim.data.preprocess import (
    clean_report,
    extract_sections,
    from_model_tensor,
    pad_to_square,
    split_sentences,
    to_model_tensor,
    truncate_report,
)

# ----------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------


def test_pad_to_square_centres_the_image():
    image = Image.new("L", (30, 10), 200)
    square = pad_to_square(image, fill=7)
    pixels = np.asarray(square)
    assert square.size == (30, 30)
    assert (pixels[10:20, :] == 200).all()
    assert (pixels[:10, :] == 7).all() and (pixels[20:, :] == 7).all()


def test_pad_to_square_rgb_fill_and_already_square():
    image = Image.new("RGB", (4, 6), (1, 2, 3))
    square = pad_to_square(image, fill=(9, 8, 7))
    assert square.size == (6, 6)
    assert square.getpixel((0, 0)) == (9, 8, 7)
    assert square.getpixel((3, 3)) == (1, 2, 3)
    assert pad_to_square(square) is square
    with pytest.raises(ValueError, match="fill"):
        pad_to_square(image, fill=(1, 2))


def test_to_model_tensor_shape_range_and_grey_replication():
    image = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (40, 1)), mode="L")  # 64 x 40
    tensor = to_model_tensor(image, 32)
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32
    assert tensor.min() >= -1.0 and tensor.max() <= 1.0
    torch.testing.assert_close(tensor[0], tensor[1])
    torch.testing.assert_close(tensor[0], tensor[2])
    # 64 x 40 padded to 64 x 64 with black bands of 12 rows top and bottom → 6 rows at 32 x 32.
    assert (tensor[:, :5, :] == -1.0).all() and (tensor[:, -5:, :] == -1.0).all()
    assert tensor[0, 16, -1].item() > 0.9  # the bright right edge of the gradient survives


def test_to_model_tensor_extremes_and_single_channel():
    assert (to_model_tensor(Image.new("L", (8, 8), 255), 8) == 1.0).all()
    assert (to_model_tensor(Image.new("L", (8, 8), 0), 8) == -1.0).all()
    rgb = Image.new("RGB", (8, 8), (255, 0, 0))
    single = to_model_tensor(rgb, 4, channels=1)
    assert single.shape == (1, 4, 4)
    assert -1.0 < single.mean().item() < 0.0  # red's luma (76/255) is dark grey


def test_downsampling_is_antialiased():
    checkerboard = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    tensor = to_model_tensor(Image.fromarray(checkerboard, mode="L"), 16)
    # Aliasing would give a pattern of pure black/white; an antialiased resize averages to mid grey.
    assert tensor.abs().max().item() < 0.1


def test_to_model_tensor_rejects_bad_arguments():
    image = Image.new("L", (8, 8))
    with pytest.raises(ValueError, match="size"):
        to_model_tensor(image, 0)
    with pytest.raises(ValueError, match="channels"):
        to_model_tensor(image, 8, channels=2)
    with pytest.raises(ValueError, match="PIL"):
        to_model_tensor(np.zeros((8, 8)), 8)


def test_model_tensor_round_trip_is_exact_at_native_size():
    pixels = np.random.default_rng(0).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, mode="RGB")
    restored = from_model_tensor(to_model_tensor(image, 16))
    assert restored.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(restored), pixels)
    grey = from_model_tensor(to_model_tensor(image.convert("L"), 16, channels=1).unsqueeze(0))
    assert grey.mode == "L" and grey.size == (16, 16)


def test_from_model_tensor_clamps_and_validates():
    out_of_range = torch.tensor([[[-3.0, 3.0]]])
    np.testing.assert_array_equal(np.asarray(from_model_tensor(out_of_range)), [[0, 255]])
    with pytest.raises(ValueError, match="NaN or Inf"):
        from_model_tensor(torch.tensor([[[float("nan")]]]))
    with pytest.raises(ValueError, match=r"shape \[C, H, W\]"):
        from_model_tensor(torch.zeros(2, 4, 4))


# ----------------------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------------------

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows . The
 cardiomediastinal silhouette is normal.

 IMPRESSION:

 No acute cardiopulmonary process.
"""


def test_clean_report_normalises_whitespace():
    assert clean_report("  Heart\tsize\u00a0normal .\n\n Lungs  clear ,  no effusion.  ") == (
        "Heart size normal. Lungs clear, no effusion."
    )
    with pytest.raises(ValueError, match="str"):
        clean_report(None)


def test_split_sentences_keeps_decimals():
    assert split_sentences("Nodule of 3.5 cm. No effusion! Stable?") == [
        "Nodule of 3.5 cm.",
        "No effusion!",
        "Stable?",
    ]


def test_extract_sections_from_a_mimic_report():
    sections = extract_sections(MIMIC_REPORT)
    assert sections["findings"] == (
        "There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular opacities that "
        "most likely represent nipple shadows. The cardiomediastinal silhouette is normal."
    )
    assert sections["impression"] == "No acute cardiopulmonary process."


def test_extract_sections_heading_variants():
    assert extract_sections("Findings: Heart normal. Impression: Clear lungs.") == {
        "findings": "Heart normal.",
        "impression": "Clear lungs.",
    }
    assert extract_sections("FINDINGS AND IMPRESSION: Stable lines. CONCLUSION: ok.") == {
        "findings": "Stable lines.",
        "impression": "ok.",
    }
    # A following unknown upper-case heading ends the section; times like 10:30 are not headings.
    text = "IMPRESSIONS: Small effusion. NOTIFICATION: Dr. ___ paged at 10:30 AM."
    assert extract_sections(text) == {"findings": "", "impression": "Small effusion."}


def test_extract_sections_fallbacks():
    assert extract_sections("The heart is normal. Lungs clear.") == {
        "findings": "The heart is normal. Lungs clear.",
        "impression": "",
    }
    only_admin = "INDICATION: cough.\n\nCOMPARISON: none.\n\nThe lungs are clear. No effusion."
    assert extract_sections(only_admin) == {"findings": "The lungs are clear. No effusion.", "impression": ""}


def _word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """One token per word or punctuation mark; unknown words map to [UNK] (still one token each)."""
    vocabulary = {"[UNK]": 0, "[PAD]": 1}
    for word in words:
        vocabulary.setdefault(word, len(vocabulary))
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")


REPORT = "Heart size is normal. Lungs are clear. No pleural effusion or pneumothorax."


def test_truncate_report_keeps_text_that_fits():
    tokenizer = _word_tokenizer(REPORT.replace(".", " .").split())
    assert truncate_report(REPORT, tokenizer, 100) == (REPORT, False)


@pytest.mark.parametrize("max_tokens", [9, 10, 13])
def test_truncate_report_cuts_at_sentence_boundaries(max_tokens):
    tokenizer = _word_tokenizer(REPORT.replace(".", " .").split())
    text, truncated = truncate_report(REPORT, tokenizer, max_tokens)
    assert truncated
    assert text == "Heart size is normal. Lungs are clear."  # 5 + 4 tokens; the third sentence needs 7 more
    assert len(tokenizer.encode(text, add_special_tokens=False)) <= max_tokens


def test_truncate_report_falls_back_to_words_then_tokens():
    tokenizer = _word_tokenizer(REPORT.replace(".", " .").split())
    text, truncated = truncate_report(REPORT, tokenizer, 3)
    assert (text, truncated) == ("Heart size is", True)
    backend = tokenizer.backend_tokenizer  # a raw tokenizers.Tokenizer works as well
    assert truncate_report(REPORT, backend, 3) == ("Heart size is", True)


def test_truncate_report_validates_budget():
    tokenizer = _word_tokenizer(["a"])
    with pytest.raises(ValueError, match="max_tokens"):
        truncate_report("a", tokenizer, 0)
