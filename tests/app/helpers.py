"""Helpers shared by the demo tests: a test scan, a minimal DICOM writer and the UI's settings argument order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

RANDOM_KEY = "random-init (test)"


def phantom(size: int = 64, seed: int = 0) -> Image.Image:
    """A small grey test scan with a bright disc (content depends on `seed`)."""
    image = Image.new("L", (size, size), 30)
    draw = ImageDraw.Draw(image)
    x = 8 + seed % (size // 2)
    draw.ellipse((x, size // 4, x + size // 4, size // 2), fill=220)
    return image


def write_dicom(path: Path, size: int = 48) -> Path:
    """A minimal single-frame MONOCHROME2 DICOM file (explicit VR little endian) with a gradient."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.Modality = "CR"
    dataset.Rows = dataset.Columns = size
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 0
    pixels = (np.add.outer(np.arange(size), np.arange(size)) * 20).astype(np.uint16)
    dataset.PixelData = pixels.tobytes()
    pydicom.dcmwrite(path, dataset, enforce_file_format=True)
    return path


def settings_args(
    steps: int = 6,
    seed: int = 7,
    samples: int = 1,
    temperature: float = 1.0,
    guidance: float = 0.0,
    schedule: str = "arccos",
) -> list:
    """Positional settings in the order of the UI: steps, temperature, guidance, schedule, seed, random, samples."""
    return [steps, temperature, guidance, schedule, seed, False, samples]
