"""DICOM loading: header checks before decoding, LUT/window/MONOCHROME1 handling, pydicom's bundled files."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medim.data.io import ImageLoadError, load_image

# Lossless encodings of one 64x64 MR image: every one must decode to exactly the same 8-bit picture.
MR_SMALL_ENCODINGS = [
    "MR_small_implicit.dcm",  # Implicit VR Little Endian
    "MR_small_bigendian.dcm",  # Explicit VR Big Endian
    "MR_small_expb.dcm",  # Explicit VR Big Endian
    "MR_small_padded.dcm",  # Explicit VR Little Endian with trailing padding
    "MR_small_RLE.dcm",  # RLE Lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 Lossless Only (pylibjpeg-openjpeg or Pillow)
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS Lossless (pylibjpeg-libjpeg)
]

# Other bundled greyscale single-frame files and the transfer syntax each covers.
GOOD_FILES = [
    "CT_small.dcm",  # Explicit VR Little Endian, CT with rescale slope/intercept
    "MR_small.dcm",  # Explicit VR Little Endian, MR with a window
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
    "JPGExtended.dcm",  # JPEG Extended (Process 2 and 4), 12-bit, NumberOfFrames = 1
    "JPEG2000.dcm",  # JPEG 2000
    "693_J2KI.dcm",  # JPEG 2000 (lossy), signed CT
    "JPEGLSNearLossless_08.dcm",  # JPEG-LS near-lossless, 8-bit
    "examples_overlay.dcm",  # MR with two windows (the first is used)
]

# Bundled files that must be refused, with a word the error has to contain.
REFUSED_FILES = [
    ("rtplan.dcm", "RTPLAN"),
    ("test-SR.dcm", "SR"),
    ("waveform_ecg.dcm", "ECG"),
    ("liver_1frame.dcm", "SEG"),
    ("rtdose_1frame.dcm", "RTDOSE"),
    ("examples_rgb_color.dcm", "colour"),  # single-frame RGB ultrasound
    ("examples_palette.dcm", "PALETTE COLOR"),
    ("examples_jpeg2k.dcm", "YBR_RCT"),
    ("examples_ybr_color.dcm", "multi-frame"),  # 30-frame ultrasound cine
    ("SC_rgb_rle_2frame.dcm", "multi-frame"),
    ("MR_truncated.dcm", "truncated"),  # pixel data shorter than Rows x Columns
    ("empty_charset_LEI.dcm", "not an image"),  # a dataset with no image attributes
]


@pytest.mark.parametrize("decodable_pydicom_file", MR_SMALL_ENCODINGS, indirect=True)
def test_lossless_encodings_decode_to_the_reference_image(decodable_pydicom_file):
    reference = np.asarray(load_image(pydicom.data.get_testdata_file("MR_small.dcm", download=False)))
    image = load_image(decodable_pydicom_file)
    assert image.mode == "L"
    np.testing.assert_array_equal(np.asarray(image), reference)


@pytest.mark.parametrize("decodable_pydicom_file", GOOD_FILES, indirect=True)
def test_bundled_greyscale_files_load_as_full_range_grey(decodable_pydicom_file):
    dataset = pydicom.dcmread(decodable_pydicom_file, stop_before_pixels=True)
    image = load_image(decodable_pydicom_file)
    pixels = np.asarray(image)
    assert image.mode == "L"
    assert image.size == (dataset.Columns, dataset.Rows)
    assert pixels.std() > 5, "a real image must not collapse to a flat picture"
    assert pixels.max() == 255  # windowed or min-max scaled: the brightest value reaches white


def test_mr_small_is_windowed_not_min_max_scaled():
    """MR_small declares WindowCenter 600 / WindowWidth 1600: values below 600 - 800 would be black, none are,
    so the darkest pixel is grey (min-max scaling would have made it 0)."""
    path = pydicom.data.get_testdata_file("MR_small.dcm", download=False)
    pixels = np.asarray(load_image(path))
    dataset = pydicom.dcmread(path)
    center, width = float(dataset.WindowCenter), float(dataset.WindowWidth)
    low_stored = float(dataset.pixel_array.min())
    expected_min = ((low_stored - (center - 0.5)) / (width - 1) + 0.5) * 255
    assert pixels.min() == pytest.approx(expected_min, abs=1)
    assert pixels.min() > 0


@pytest.mark.parametrize(("pydicom_file", "reason"), REFUSED_FILES, indirect=["pydicom_file"])
def test_bundled_non_images_and_unsupported_files_are_refused(pydicom_file, reason):
    with pytest.raises(ImageLoadError, match=reason) as caught:
        load_image(pydicom_file)
    assert pydicom_file.name in str(caught.value)


def test_undecodable_compressed_stream_names_the_transfer_syntax():
    # JPEG-lossy.dcm's JPEG stream has a misplaced marker; decoders other than GDCM reject it.
    path = pydicom.data.get_testdata_file("JPEG-lossy.dcm", download=False)
    if path is None:
        pytest.skip("JPEG-lossy.dcm not bundled")
    try:
        pydicom.dcmread(path).pixel_array  # noqa: B018
    except Exception:
        pass
    else:
        pytest.skip("an installed decoder (e.g. GDCM) can read this stream")
    with pytest.raises(ImageLoadError, match="JPEG Extended"):
        load_image(path)


def test_missing_decoder_plugin_names_syntax_and_packages(monkeypatch):
    import pydicom.pixels

    class NoDecoder:
        is_available = False
        missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0"]

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: NoDecoder())
    path = pydicom.data.get_testdata_file("MR_small_jp2klossless.dcm", download=False)
    with pytest.raises(
        ImageLoadError, match=r"JPEG 2000 Image Compression \(Lossless Only\).*pip install pylibjpeg"
    ):
        load_image(path)


def _window_fraction(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 LINEAR window as a fraction of the output range."""
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def test_monochrome1_with_window_is_windowed_then_inverted(make_dicom):
    stored = np.linspace(0, 4095, 16 * 16).reshape(16, 16).round().astype(np.uint16)
    center, width = 2048.0, 1024.0
    data = make_dicom(stored, photometric="MONOCHROME1", window=(center, width))
    pixels = np.asarray(load_image(data)).astype(np.float64)
    expected = 255.0 * (1.0 - _window_fraction(stored.astype(np.float64), center, width))
    np.testing.assert_allclose(pixels, expected, atol=1.0)
    assert pixels[0, 0] == 255  # below the window: MONOCHROME1 shows low values white
    assert pixels[-1, -1] == 0
    assert 0 < pixels[8, 0] < 255  # stored ≈ 2048, inside the window


def test_monochrome1_is_the_inverse_of_monochrome2(make_dicom):
    stored = np.random.default_rng(0).integers(0, 4096, size=(12, 20), dtype=np.uint16)
    mono1 = np.asarray(load_image(make_dicom(stored, photometric="MONOCHROME1", window=(1500, 2000))))
    mono2 = np.asarray(load_image(make_dicom(stored, photometric="MONOCHROME2", window=(1500, 2000))))
    np.testing.assert_array_equal(mono1.astype(int), 255 - mono2.astype(int))


def test_rescale_is_applied_before_the_window(make_dicom):
    # Stored 1024 + intercept -1024 = 0 HU, the window's centre: mid grey. Without the rescale it would be
    # far above the window (white).
    stored = np.array([[0, 824, 1024, 1224, 4095]], dtype=np.uint16)
    data = make_dicom(stored, rescale=(1.0, -1024.0), window=(0.0, 400.0))
    pixels = np.asarray(load_image(data)).astype(np.float64)
    expected = 255.0 * _window_fraction(stored.astype(np.float64) - 1024.0, 0.0, 400.0)
    np.testing.assert_allclose(pixels, expected, atol=1.0)
    assert 120 <= pixels[0, 2] <= 135


@pytest.mark.parametrize("as_ow", [False, True], ids=["US-values", "OW-bytes"])
def test_voi_lut_sequence_is_used_and_scaled_by_its_output_range(make_dicom, as_ow):
    stored = np.array([[0, 1, 2, 3]], dtype=np.uint16)
    data = make_dicom(
        stored, voi_lut=(0, [0, 3000, 100, 6000]), voi_lut_as_ow=as_ow
    )  # non-monotone on purpose
    pixels = np.asarray(load_image(data))
    np.testing.assert_array_equal(pixels, [[0, round(3000 / 6000 * 255), round(100 / 6000 * 255), 255]])


def test_no_voi_means_min_max_scaling(make_dicom):
    stored = np.array([[100, 200], [300, 500]], dtype=np.uint16)
    pixels = np.asarray(load_image(make_dicom(stored)))
    np.testing.assert_array_equal(pixels, [[0, 64], [128, 255]])


def test_constant_image_does_not_divide_by_zero(make_dicom):
    pixels = np.asarray(load_image(make_dicom(np.full((4, 4), 7, dtype=np.uint16))))
    assert (pixels == 0).all()


def test_header_without_pixel_data_is_refused(make_dicom):
    with pytest.raises(ImageLoadError, match="no PixelData"):
        load_image(make_dicom(None))


def test_rgb_ultrasound_is_refused_naming_photometric_and_modality(make_dicom):
    colour = np.zeros((6, 5, 3), dtype=np.uint8)
    data = make_dicom(colour, photometric="RGB", modality="US", samples_per_pixel=3)
    with pytest.raises(ImageLoadError, match=r"colour DICOM.*'RGB'.*'US'"):
        load_image(data)


def test_multiframe_is_refused_before_decoding(make_dicom):
    frames = np.zeros((3, 8, 8), dtype=np.uint16)
    with pytest.raises(ImageLoadError, match=r"multi-frame DICOM \(3 frames"):
        load_image(make_dicom(frames, frames=3))


def test_pixel_cap_is_checked_from_the_header(make_dicom):
    data = make_dicom(np.zeros((40, 50), dtype=np.uint16))
    with pytest.raises(ImageLoadError, match=r"50x40 = 2000 pixels, over max_pixels=1999"):
        load_image(data, max_pixels=1999)
    assert load_image(data, max_pixels=2000).size == (50, 40)


def test_truncated_dicom_is_refused(make_dicom):
    data = make_dicom(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(data[: len(data) - 1000])


def test_preamble_less_dicom_is_refused_by_default_and_read_when_allowed(make_dicom):
    stored = np.array([[0, 100], [200, 300]], dtype=np.uint16)
    raw = make_dicom(stored, preamble=False)
    assert raw[128:132] != b"DICM"
    with pytest.raises(ImageLoadError, match="without the 128-byte preamble.*allow_raw_dicom=True"):
        load_image(raw)
    np.testing.assert_array_equal(np.asarray(load_image(raw, allow_raw_dicom=True)), [[0, 85], [170, 255]])


def test_forced_parsing_of_garbage_is_still_refused_when_raw_dicom_is_allowed():
    # Starts like a group-0008 element, but nothing after it describes an image.
    garbage = b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100" + np.random.default_rng(1).bytes(300)
    with pytest.raises(ImageLoadError):
        load_image(garbage, allow_raw_dicom=True)


def test_non_dicom_with_dcm_extension_is_refused(tmp_path):
    path = tmp_path / "scan.dcm"
    path.write_text("PatientName: nobody\nthis is not a DICOM file\n")
    with pytest.raises(ImageLoadError, match=r"scan\.dcm: not a PNG, JPEG or DICOM image.*plain text"):
        load_image(path)


def test_dicom_magic_without_a_valid_dataset_is_refused():
    data = b"\x00" * 128 + b"DICM" + b"\xff" * 64
    with pytest.raises(ImageLoadError, match="DICOM"):
        load_image(data)
