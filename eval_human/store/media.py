"""Media files of a study: content-addressed, normalised so that no file reveals where its pair came from."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

from PIL import Image

from eval_human.store.errors import StudyError

# Every item's image is stored, and served, as a MEDIA_SIDE x MEDIA_SIDE RGB PNG without compression or metadata:
# all media files then have the same bytes count and header, so neither the file size (a generated 64 px image
# compresses better than a 128 px scan) nor its mode or encoder settings can tell a rater where a pair came from.
MEDIA_SIDE = 256


class MediaFiles:
    """Images stored as ``<media_dir>/<sha256>.png`` (needs ``self.media_dir``)."""

    def put_image(self, image: Image.Image) -> str:
        """Store ``image`` as the study's normalised media file (see ``MEDIA_SIDE``) named by its SHA-256; returns
        the hex digest."""
        if not isinstance(image, Image.Image):
            raise StudyError(f"expected a PIL image, got {type(image).__name__}")
        clean = image.convert("RGB")
        if clean.size != (MEDIA_SIDE, MEDIA_SIDE):
            clean = clean.resize((MEDIA_SIDE, MEDIA_SIDE), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        # no pnginfo, no compression: nothing but pixels leaves the source, in a file of fixed length
        clean.save(buffer, format="PNG", compress_level=0)
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        path = self.image_path(digest)
        if not path.exists():
            self.media_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Write-then-rename so a concurrent reader never sees half a file.
            fd, tmp = tempfile.mkstemp(dir=self.media_dir, suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        return digest

    def image_path(self, sha256: str) -> Path:
        """Path of a stored image by digest."""
        return self.media_dir / f"{sha256}.png"
