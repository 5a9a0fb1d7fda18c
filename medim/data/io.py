"""Image loading for MeDiM: PNG, JPEG and greyscale DICOM, recognised by content and checked before decoding.

Every image that enters MeDiM (training data, the demo's uploads, evaluation references) goes through
:func:`load_image`. It reads the bytes once (capped by ``max_bytes``), recognises the format from its magic bytes
rather than its file name, checks the declared size against ``max_pixels`` *before* decoding any pixels, and
returns a ``PIL.Image.Image`` in mode ``"L"`` (grey) or ``"RGB"``. Anything it cannot or will not read raises
:class:`ImageLoadError` (a ``ValueError``) whose message names the source and the reason.

DICOM is reduced to an 8-bit display image the way a viewer would show it: modality LUT (rescale slope and
intercept, or a Modality LUT Sequence) → VOI LUT or window (the first one the file declares) → MONOCHROME1
inverted so that bright always means dense → 8 bits. Only single-frame greyscale DICOM is read; colour
(ultrasound, secondary capture, slide microscopy) and multi-frame (cine, volumes) files are refused with a
message saying which. Compressed transfer syntaxes are decoded by pydicom's plugins (Pillow, pylibjpeg with
pylibjpeg-libjpeg and pylibjpeg-openjpeg); when none is installed for a file's transfer syntax the error names
the syntax and the packages to install.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "ImageLoadError",
    "dicom_to_uint8",
    "ImageSource",
    "load_image",
    "sniff_format",
]

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 100_000_000  # 100 MB

ImageSource = str | Path | bytes | bytearray | memoryview | BinaryIO
ImageFormat = Literal["png", "jpeg", "dicom"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_DICOM_PREAMBLE_LENGTH = 128
_DICOM_MAGIC = b"DICM"

# Formats that are recognisable but not accepted: named in the error so a user knows what they uploaded.
_KNOWN_OTHER_FORMATS: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or a .docx/.xlsx/.npz, which are ZIP files)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"BZh", "a bzip2-compressed file"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x80\x02", "a Python pickle"),
    (b"\x80\x04", "a Python pickle"),
)

# DICOM modalities whose objects carry no picture worth reading as an image (plans, structured reports,
# waveforms, label masks, dose grids, presentation states, documents).
_NON_IMAGE_MODALITIES = frozenset(
    {
        "RTPLAN",
        "RTSTRUCT",
        "RTRECORD",
        "RTDOSE",
        "RTIMAGE_PLAN",
        "SR",
        "KO",
        "PR",
        "DOC",
        "REG",
        "SEG",
        "ECG",
        "HD",
        "AU",
        "RWV",
        "PLAN",
        "FID",
    }
)
_GREY_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2")
_DICOM_PLUGIN_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"


class ImageLoadError(ValueError):
    """Raised when a source is not an image MeDiM can read (wrong format, corrupt, too large, unsupported)."""


# ----------------------------------------------------------------------------------------------------------
# Format sniffing
# ----------------------------------------------------------------------------------------------------------


def sniff_format(head: bytes, *, allow_raw_dicom: bool = False) -> ImageFormat | None:
    """Recognise PNG, JPEG or DICOM from the first bytes of a file (at least 132 for DICOM).

    DICOM is recognised by the ``"DICM"`` marker after the 128-byte preamble (DICOM Part 10). A DICOM dataset
    written without preamble and file meta ("raw" DICOM) has no magic number at all; with
    ``allow_raw_dicom=True`` a head that starts with a plausible group 0x0002/0x0008 element is reported as
    ``"dicom"`` and :func:`load_image` then validates the header it parses. It is off by default because any
    byte string "parses" as a raw dataset when forced, so recognition by content would no longer mean much.

    Returns:
        ``"png"``, ``"jpeg"``, ``"dicom"`` or ``None`` when the bytes are none of these.
    """
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head[_DICOM_PREAMBLE_LENGTH : _DICOM_PREAMBLE_LENGTH + 4] == _DICOM_MAGIC:
        return "dicom"
    if allow_raw_dicom and _looks_like_raw_dicom(head):
        return "dicom"
    return None


def _looks_like_raw_dicom(head: bytes) -> bool:
    """True when ``head`` starts with a little-endian group 0x0002/0x0008 element header (implicit or explicit VR)."""
    if len(head) < 8:
        return False
    group = int.from_bytes(head[0:2], "little")
    if group not in (0x0002, 0x0008):
        return False
    vr = head[4:6]
    if vr.isalpha() and vr.isupper():
        return True  # explicit VR
    implicit_length = int.from_bytes(head[4:8], "little")
    return implicit_length < 0x10000  # implicit VR: a short first element (e.g. Specific Character Set)


def _describe_unrecognised(head: bytes) -> str:
    """A short human description of content that is not PNG/JPEG/DICOM, for error messages."""
    for magic, description in _KNOWN_OTHER_FORMATS:
        if head.startswith(magic):
            return description
    if _looks_like_raw_dicom(head):
        return (
            "a DICOM dataset without the 128-byte preamble and 'DICM' marker "
            "(load_image(..., allow_raw_dicom=True) accepts it)"
        )
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[4:8] == b"ftyp":
        return "an ISO media file (HEIC/AVIF/MP4)"
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"[") or stripped.lower().startswith(
        (b"<?xml", b"<!doctype", b"<html", b"<svg")
    ):
        return "a text document (JSON/XML/HTML/SVG)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "plain text"
    return "unrecognised binary data"


# ----------------------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------------------


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_raw_dicom: bool = False,
) -> Image.Image:
    """Load a PNG, JPEG or single-frame greyscale DICOM image, recognised by content, as a PIL image.

    Args:
        source: a file path, the file's bytes, or a binary stream (read from its current position).
        max_pixels: largest accepted width × height, checked from the header before any pixel is decoded.
        max_bytes: largest accepted encoded size in bytes.
        allow_raw_dicom: also accept DICOM datasets without the 128-byte preamble and ``"DICM"`` marker
            (see :func:`sniff_format`); the parsed header must then describe a greyscale image.

    Returns:
        A fully loaded ``PIL.Image.Image`` in mode ``"L"`` (greyscale sources, including 16-bit PNG scaled to
        8 bits and DICOM) or ``"RGB"`` (colour PNG/JPEG; alpha is dropped, palettes are expanded).

    Raises:
        ImageLoadError: empty, truncated or corrupt files, content that is not PNG/JPEG/DICOM (named when
            recognisable: text, ZIP, PDF, ...), images over ``max_pixels``/``max_bytes`` (decompression bombs),
            and DICOM files that are not single-frame greyscale images or whose transfer syntax cannot be decoded.
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    name = _source_name(source)
    data = _read_source(source, name, max_bytes)
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes), not an image")
    head = data[:256]
    kind = sniff_format(head, allow_raw_dicom=allow_raw_dicom)
    if kind is None:
        raise ImageLoadError(
            f"{name}: not a PNG, JPEG or DICOM image (the content looks like {_describe_unrecognised(data[:512])}; "
            f"{len(data)} bytes, starting {data[:8]!r})"
        )
    if kind == "dicom":
        return _load_dicom(data, name, max_pixels, raw=sniff_format(head) != "dicom")
    return _load_pillow(data, name, kind, max_pixels)


def _source_name(source: ImageSource) -> str:
    if isinstance(source, str | Path):
        return str(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>"
    return str(getattr(source, "name", None) or f"<{type(source).__name__} stream>")


def _read_source(source: ImageSource, name: str, max_bytes: int) -> bytes:
    """All bytes of ``source``, refusing anything larger than ``max_bytes`` without reading it whole."""
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            if not path.exists():
                raise ImageLoadError(f"{name}: file not found")
            if not path.is_file():
                raise ImageLoadError(f"{name}: not a regular file")
            size = path.stat().st_size
            if size > max_bytes:
                raise ImageLoadError(f"{name}: file is {size} bytes, over the limit of max_bytes={max_bytes}")
            return path.read_bytes()
        except ImageLoadError:
            raise
        except (OSError, ValueError) as error:  # permissions, NUL bytes in the path, vanished files
            raise ImageLoadError(f"{name!r}: cannot read the file ({error})") from error
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(max_bytes + 1)
        if not isinstance(data, bytes | bytearray):
            raise ImageLoadError(f"{name}: stream must be opened in binary mode, got {type(data).__name__}")
        data = bytes(data)
    else:
        raise ImageLoadError(
            f"unsupported image source type {type(source).__name__}: pass a path, bytes or a binary stream"
        )
    if len(data) > max_bytes:
        raise ImageLoadError(f"{name}: more than max_bytes={max_bytes} bytes, refusing to read it")
    return data


# ----------------------------------------------------------------------------------------------------------
# PNG / JPEG through Pillow
# ----------------------------------------------------------------------------------------------------------


@contextmanager
def _bomb_warnings_as_errors() -> Iterator[None]:
    """Turn Pillow's DecompressionBombWarning into an error for the duration of one decode."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _load_pillow(data: bytes, name: str, kind: ImageFormat, max_pixels: int) -> Image.Image:
    pillow_format = {"png": "PNG", "jpeg": "JPEG"}[kind]
    try:
        with _bomb_warnings_as_errors():
            image = Image.open(io.BytesIO(data), formats=[pillow_format])  # parses the header only
            width, height = image.size
            if width * height > max_pixels:
                raise ImageLoadError(
                    f"{name}: {kind.upper()} header declares {width}x{height} = {width * height} pixels, over "
                    f"max_pixels={max_pixels} (possible decompression bomb); not decoded"
                )
            image.load()
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageLoadError(f"{name}: refused as a possible decompression bomb: {error}") from error
    except UnidentifiedImageError as error:
        raise ImageLoadError(
            f"{name}: starts like a {kind.upper()} but Pillow cannot parse it: {error}"
        ) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # Pillow reports truncated/corrupt streams as OSError ("image file is truncated", "broken data stream").
        raise ImageLoadError(f"{name}: corrupt or truncated {kind.upper()} ({error})") from error
    return _to_l_or_rgb(image, name)


def _to_l_or_rgb(image: Image.Image, name: str) -> Image.Image:
    """Convert any Pillow mode to "L" or "RGB"; 16/32-bit greyscale is scaled to 8 bits over the full range."""
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode in ("1", "LA", "La"):
        return image.convert("L")
    if mode.startswith("I;16") or mode == "I":
        # A 16-bit PNG sample is a fraction of 65535 (PNG spec: sBIT-reduced data is scaled up on writing),
        # so full-range scaling keeps the intended brightness; 257 = 65535 / 255.
        pixels = np.clip(np.asarray(image, dtype=np.float64), 0.0, 65535.0)
        scaled = np.rint(pixels / 257.0).astype(np.uint8)
        return Image.fromarray(scaled, mode="L")
    if mode == "F":
        raise ImageLoadError(f"{name}: floating-point images (mode F) are not supported")
    if mode == "P":
        return image.convert("RGBA").convert("RGB") if "transparency" in image.info else image.convert("RGB")
    return image.convert("RGB")  # RGBA, RGBa, CMYK, YCbCr, LAB, RGBX, ...


# ----------------------------------------------------------------------------------------------------------
# DICOM through pydicom
# ----------------------------------------------------------------------------------------------------------


def _load_dicom(data: bytes, name: str, max_pixels: int, *, raw: bool) -> Image.Image:
    import pydicom  # imported here: pydicom is only needed when a DICOM file actually arrives

    try:
        with warnings.catch_warnings():
            # pydicom warns about odd-but-readable values; the header checks below decide what is acceptable.
            warnings.simplefilter("ignore")
            header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=raw)
    except Exception as error:  # pydicom's parser raises many types on malformed input; all mean "unreadable"
        raise ImageLoadError(
            f"{name}: DICOM header cannot be read ({type(error).__name__}: {error})"
        ) from error
    _check_dicom_header(header, name, max_pixels, raw=raw)
    transfer_syntax = _transfer_syntax(header, name)
    _check_decoder_available(transfer_syntax, name)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(io.BytesIO(data), force=raw)
    except Exception as error:
        raise ImageLoadError(
            f"{name}: DICOM file is truncated or corrupt ({type(error).__name__}: {error})"
        ) from error
    if "PixelData" not in dataset:
        other = [keyword for keyword in ("FloatPixelData", "DoubleFloatPixelData") if keyword in dataset]
        detail = f" (it holds {other[0]}, which is not supported)" if other else ""
        raise ImageLoadError(f"{name}: DICOM header describes an image but the file has no PixelData{detail}")
    if raw:
        dataset.file_meta.TransferSyntaxUID = transfer_syntax

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stored = dataset.pixel_array
    except Exception as error:  # decoders raise anything from ValueError to RuntimeError on bad streams
        raise ImageLoadError(
            f"{name}: DICOM pixel data is truncated, corrupt or cannot be decoded (transfer syntax "
            f"{transfer_syntax.name}): "
            f"{type(error).__name__}: {error}"
        ) from error
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    if stored.shape != (rows, columns):
        raise ImageLoadError(
            f"{name}: decoded DICOM pixels have shape {stored.shape}, expected (Rows, Columns) = ({rows}, {columns})"
        )
    return Image.fromarray(dicom_to_uint8(stored, dataset), mode="L")


def _check_dicom_header(header, name: str, max_pixels: int, *, raw: bool) -> None:
    """Refuse, before any pixel is decoded, DICOM objects that are not single-frame greyscale images."""
    modality = str(header.get("Modality", "") or "").upper()
    modality_text = f"modality {modality!r}" if modality else "no Modality"
    if modality in _NON_IMAGE_MODALITIES:
        raise ImageLoadError(
            f"{name}: DICOM {modality_text} holds no image to read (plan/report/waveform/mask)"
        )
    missing = [
        key for key in ("Rows", "Columns", "PhotometricInterpretation", "BitsAllocated") if key not in header
    ]
    if missing:
        what = "parsed preamble-less data" if raw else "DICOM object"
        raise ImageLoadError(
            f"{name}: {what} ({modality_text}) is not an image: it has no {', '.join(missing)}"
        )
    frames = _int_or_none(header.get("NumberOfFrames", 1))
    if frames is None:
        raise ImageLoadError(
            f"{name}: DICOM NumberOfFrames is not a number: {header.get('NumberOfFrames')!r}"
        )
    photometric = str(header.PhotometricInterpretation).strip().upper()
    samples = _int_or_none(header.get("SamplesPerPixel", 1))
    if frames > 1:
        raise ImageLoadError(
            f"{name}: multi-frame DICOM ({frames} frames, {modality_text}, e.g. a cine loop or volume) is not "
            "supported: export the single frame you want as its own file"
        )
    if photometric not in _GREY_PHOTOMETRIC or samples != 1:
        raise ImageLoadError(
            f"{name}: colour DICOM (PhotometricInterpretation {photometric!r}, SamplesPerPixel {samples}, "
            f"{modality_text}) is not supported: only greyscale MONOCHROME1/MONOCHROME2 DICOM is read; "
            "convert colour images (ultrasound, microscopy, screenshots) to PNG or JPEG"
        )
    rows, columns = _int_or_none(header.Rows), _int_or_none(header.Columns)
    if not rows or not columns or rows < 0 or columns < 0:
        raise ImageLoadError(f"{name}: DICOM Rows/Columns are invalid: {header.Rows!r} x {header.Columns!r}")
    if rows * columns > max_pixels:
        raise ImageLoadError(
            f"{name}: DICOM header declares {columns}x{rows} = {rows * columns} pixels, over "
            f"max_pixels={max_pixels}; not decoded"
        )


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _transfer_syntax(header, name: str):
    """The dataset's transfer syntax UID; for preamble-less data, the encoding pydicom detected."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    file_meta = getattr(header, "file_meta", None)
    transfer_syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if transfer_syntax is not None:
        return transfer_syntax
    is_implicit, is_little = header.original_encoding
    if is_implicit is None:
        raise ImageLoadError(f"{name}: DICOM has no TransferSyntaxUID and its encoding cannot be detected")
    if is_implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if is_little else ExplicitVRBigEndian


def _check_decoder_available(transfer_syntax, name: str) -> None:
    """Raise a clear error naming the transfer syntax and what to install when no decoder plugin is present."""
    from pydicom.pixels import get_decoder

    if not transfer_syntax.is_compressed:
        return
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError as error:
        raise ImageLoadError(
            f"{name}: DICOM transfer syntax {transfer_syntax.name} ({transfer_syntax}) has no pixel decoder in "
            "pydicom"
        ) from error
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise ImageLoadError(
            f"{name}: DICOM pixel data uses the compressed transfer syntax {transfer_syntax.name} "
            f"({transfer_syntax}) and no decoder for it is installed. Install one: {_DICOM_PLUGIN_HINT} "
            f"(pydicom lists: {missing})"
        )


def dicom_to_uint8(stored: np.ndarray, dataset) -> np.ndarray:
    """Map stored DICOM pixel values to an 8-bit display image (bright = dense).

    Applies the modality LUT (rescale or Modality LUT Sequence), then the first VOI LUT or window the dataset
    declares (``pydicom.pixels.apply_voi_lut``; its output range is the VOI's full output range), inverts
    MONOCHROME1, and scales to 0–255. Without any VOI information the image's own min–max range is used.

    Args:
        stored: the decoded stored values, shape [Rows, Columns].
        dataset: the pydicom dataset the values came from.

    Returns:
        uint8 array of shape [Rows, Columns].
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = apply_modality_lut(stored, dataset)
        voi_range = _voi_output_range(dataset)
        if voi_range is not None:
            if "VOILUTSequence" in dataset:
                values = np.rint(values).astype(np.int64)  # a VOI LUT indexes by integer input value
            values = apply_voi_lut(values, dataset, index=0, prefer_lut=True)
            low, high = voi_range
        else:
            low, high = float(np.min(values)), float(np.max(values))
    values = np.asarray(values, dtype=np.float64)
    if high > low:
        unit = np.clip((values - low) / (high - low), 0.0, 1.0)
    else:
        unit = np.zeros_like(values)
    if str(dataset.PhotometricInterpretation).strip().upper() == "MONOCHROME1":
        unit = 1.0 - unit  # MONOCHROME1: the minimum value is displayed white
    return np.rint(unit * 255.0).astype(np.uint8)


def _voi_output_range(dataset) -> tuple[float, float] | None:
    """(low, high) output range of the VOI transform pydicom will apply, or None when the dataset declares none."""
    from pydicom.pixels import apply_voi_lut

    if "VOILUTSequence" in dataset and len(dataset.VOILUTSequence) > 0:
        # Run every input the LUT covers through pydicom's own LUT decoding (LUTData may be US values or
        # packed OW bytes); the output range is the LUT's min..max, even for a non-monotone LUT.
        entries, first_mapped = (int(value) for value in dataset.VOILUTSequence[0].LUTDescriptor[:2])
        covered = np.arange(first_mapped, first_mapped + (entries or 65536), dtype=np.int64)
        output = apply_voi_lut(covered, dataset, index=0, prefer_lut=True)
        return float(np.min(output)), float(np.max(output))
    if "WindowCenter" in dataset and "WindowWidth" in dataset:
        # Push far-out inputs through the same window: they land on its output bounds (exact for LINEAR and
        # LINEAR_EXACT, the asymptotes for SIGMOID).
        probe = apply_voi_lut(np.array([-1e12, 1e12]), dataset, index=0, prefer_lut=True)
        return float(np.min(probe)), float(np.max(probe))
    return None
