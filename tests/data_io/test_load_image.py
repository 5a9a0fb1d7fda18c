"""PNG/JPEG loading, source types, format sniffing and the refusal of everything that is not an image."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from medim.data.io import ImageLoadError, load_image, sniff_format


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(mode: str = "L", size: tuple[int, int] = (32, 24)) -> Image.Image:
    width, height = size
    grey = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    image = Image.fromarray(grey, mode="L")
    return image if mode == "L" else image.convert(mode)


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` 8-bit grey but whose data is a few bytes (a bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# ----------------------------------------------------------------------------------------------------------
# Good images
# ----------------------------------------------------------------------------------------------------------


def test_grey_png_round_trips_exactly():
    original = gradient("L")
    loaded = load_image(encode(original, "PNG"))
    assert loaded.mode == "L"
    np.testing.assert_array_equal(np.asarray(loaded), np.asarray(original))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "CMYK"])
def test_colour_modes_become_rgb(mode):
    original = gradient("RGB").convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    loaded = load_image(encode(original, fmt))
    assert loaded.mode == "RGB"
    assert loaded.size == original.size


@pytest.mark.parametrize("mode", ["1", "LA"])
def test_grey_variants_become_l(mode):
    loaded = load_image(encode(gradient("L").convert(mode), "PNG"))
    assert loaded.mode == "L"


def test_sixteen_bit_png_is_scaled_to_eight_bits_over_the_full_range():
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 257 * (0, 1, 128, 255)
    loaded = load_image(encode(Image.fromarray(values), "PNG"))
    assert loaded.mode == "L"
    np.testing.assert_array_equal(np.asarray(loaded), [[0, 1, 128, 255]])


def test_jpeg_grey_and_colour():
    grey = load_image(encode(gradient("L"), "JPEG", quality=95))
    colour = load_image(encode(gradient("RGB"), "JPEG", quality=95))
    assert (grey.mode, colour.mode) == ("L", "RGB")
    np.testing.assert_allclose(np.asarray(grey, dtype=float), np.asarray(gradient("L"), dtype=float), atol=6)


def test_every_source_type_gives_the_same_image(tmp_path):
    data = encode(gradient("L"), "PNG")
    path = tmp_path / "image.png"
    path.write_bytes(data)
    expected = np.asarray(load_image(data))
    with path.open("rb") as handle:
        from_handle = load_image(handle)
    for loaded in (load_image(str(path)), load_image(path), load_image(io.BytesIO(data)), from_handle):
        np.testing.assert_array_equal(np.asarray(loaded), expected)
    np.testing.assert_array_equal(np.asarray(load_image(bytearray(data))), expected)


def test_format_is_taken_from_content_not_extension(tmp_path):
    path = tmp_path / "actually_a_png.jpg"
    path.write_bytes(encode(gradient("L"), "PNG"))
    assert load_image(path).size == (32, 24)


def test_sniff_format():
    assert sniff_format(encode(gradient(), "PNG")[:16]) == "png"
    assert sniff_format(encode(gradient(), "JPEG")[:16]) == "jpeg"
    assert sniff_format(b"\x00" * 128 + b"DICM" + b"\x02\x00") == "dicom"
    assert sniff_format(b"hello") is None
    raw_dicom_head = b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100"
    assert sniff_format(raw_dicom_head) is None
    assert sniff_format(raw_dicom_head, allow_raw_dicom=True) == "dicom"


# ----------------------------------------------------------------------------------------------------------
# Refusals
# ----------------------------------------------------------------------------------------------------------


def test_random_bytes_are_refused():
    data = np.random.default_rng(0).bytes(2048)
    with pytest.raises(ImageLoadError, match="not a PNG, JPEG or DICOM image"):
        load_image(data)


def test_text_file_renamed_png_is_refused_as_text(tmp_path):
    path = tmp_path / "xray.png"
    path.write_text("FINDINGS: the lungs are clear.\n")
    with pytest.raises(ImageLoadError, match=r"xray\.png: not a PNG.*plain text"):
        load_image(path)


@pytest.mark.parametrize(
    ("data", "description"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF"),
        (gzip.compress(b"payload"), "gzip"),
        (b'{"image": "x.png"}', "JSON"),
        (b"GIF89a\x01\x00\x01\x00", "GIF"),
    ],
)
def test_known_non_image_formats_are_named(data, description):
    with pytest.raises(ImageLoadError, match=description):
        load_image(data)


def test_zip_archive_is_named(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("image.png", encode(gradient(), "PNG"))
    with pytest.raises(ImageLoadError, match="ZIP archive"):
        load_image(buffer.getvalue())


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty\.png: empty file"):
        load_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_refused(fmt):
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64), dtype=np.uint8)
    data = encode(Image.fromarray(noise), fmt)
    with pytest.raises(ImageLoadError, match=f"corrupt or truncated {fmt}"):
        load_image(data[: len(data) // 2])


def test_header_claiming_a_huge_image_is_refused_before_decoding():
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(png_with_header(100_000, 100_000))


def test_pillow_bomb_warning_is_an_error_even_under_a_generous_cap():
    # 10000 x 10000 is above Pillow's warning threshold (~89 Mpx) but under its hard error threshold.
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(png_with_header(10_000, 10_000), max_pixels=10**9)


def test_pixel_cap_is_read_from_the_header():
    data = encode(gradient("L", size=(40, 30)), "PNG")
    with pytest.raises(ImageLoadError, match=r"40x30 = 1200 pixels, over max_pixels=1000"):
        load_image(data, max_pixels=1000)


def test_byte_cap(tmp_path):
    data = encode(gradient("L"), "PNG")
    path = tmp_path / "image.png"
    path.write_bytes(data)
    for source in (data, path, io.BytesIO(data)):
        with pytest.raises(ImageLoadError, match="max_bytes"):
            load_image(source, max_bytes=len(data) - 1)
    assert load_image(path, max_bytes=len(data)).size == (32, 24)


def test_missing_path_and_directory_are_named(tmp_path):
    with pytest.raises(ImageLoadError, match=r"nowhere\.png: file not found"):
        load_image(tmp_path / "nowhere.png")
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image(tmp_path)


def test_text_mode_stream_and_unsupported_types_are_refused():
    with pytest.raises(ImageLoadError, match="binary mode"):
        load_image(io.StringIO("not bytes"))
    with pytest.raises(ImageLoadError, match="unsupported image source type int"):
        load_image(42)


def test_errors_are_value_errors():
    assert issubclass(ImageLoadError, ValueError)
    with pytest.raises(ValueError, match="max_pixels must be positive"):
        load_image(b"x", max_pixels=0)
