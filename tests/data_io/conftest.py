"""Fixtures for image/DICOM loading tests: a DICOM writer and access to pydicom's bundled test files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"


def build_dicom(
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    modality: str = "CR",
    bits_stored: int = 12,
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
    voi_lut: tuple[int, list[int]] | None = None,
    voi_lut_as_ow: bool = False,
    frames: int | None = None,
    samples_per_pixel: int = 1,
    preamble: bool = True,
) -> bytes:
    """Encode ``pixels`` ([rows, cols] uint16 grey, [rows, cols, 3] uint8 colour, or [frames, rows, cols]) as
    DICOM bytes; ``pixels=None`` writes an image header without PixelData.

    ``window`` is (center, width); ``rescale`` is (slope, intercept); ``voi_lut`` is (first mapped value, LUT
    entries; written as US values, or as packed OW words with ``voi_lut_as_ow``). ``preamble=False`` writes a raw dataset (no 128-byte preamble, no file meta, implicit VR).
    """
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = US_IMAGE_STORAGE if modality == "US" else CR_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = modality
    shape = pixels.shape if pixels is not None else (8, 8)
    rows, columns = (shape[-3], shape[-2]) if samples_per_pixel == 3 else (shape[-2], shape[-1])
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = samples_per_pixel
    ds.PhotometricInterpretation = photometric
    if samples_per_pixel == 3:
        ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    if frames is not None:
        ds.NumberOfFrames = frames
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if voi_lut is not None:
        first_mapped, entries = voi_lut
        item = Dataset()
        item.add_new(0x00283002, "US", [len(entries), first_mapped, 16])  # LUTDescriptor
        if voi_lut_as_ow:
            item.add_new(0x00283006, "OW", np.asarray(entries, dtype="<u2").tobytes())  # LUTData
        else:
            item.add_new(0x00283006, "US", entries)  # LUTData
        ds.VOILUTSequence = Sequence([item])
    if pixels is not None:
        dtype = "<u1" if samples_per_pixel == 3 else "<u2"
        ds.PixelData = np.ascontiguousarray(pixels).astype(dtype).tobytes()
    buffer = io.BytesIO()
    if preamble:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(buffer, enforce_file_format=True)
    else:
        ds.save_as(buffer, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return buffer.getvalue()


@pytest.fixture
def make_dicom():
    """The :func:`build_dicom` writer, as a fixture."""
    return build_dicom


def bundled_pydicom_file(name: str) -> Path:
    """Path of a test file bundled in the pydicom wheel; skips the test when this install lacks it.

    ``download=False`` keeps pydicom from fetching its optional external test data (no network in tests).
    """
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not bundled with this pydicom install")
    return Path(path)


def skip_without_decoder(path: Path) -> None:
    """Skip when no installed pydicom plugin decodes the file's transfer syntax (e.g. pylibjpeg missing)."""
    import pydicom
    from pydicom.pixels import get_decoder

    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if syntax.is_compressed and not get_decoder(syntax).is_available:
        pytest.skip(f"no decoder installed for {syntax.name}")


@pytest.fixture
def pydicom_file(request) -> Path:
    """Indirect-parametrised fixture: ``@pytest.mark.parametrize("pydicom_file", [names], indirect=True)``
    turns each bundled pydicom test file into one test case."""
    return bundled_pydicom_file(request.param)


@pytest.fixture
def decodable_pydicom_file(request) -> Path:
    """Like ``pydicom_file`` but also skips when the file's compressed transfer syntax has no decoder here."""
    path = bundled_pydicom_file(request.param)
    skip_without_decoder(path)
    return path
