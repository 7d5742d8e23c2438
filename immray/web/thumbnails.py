"""Face crops and photo previews as small JPEGs, made once and kept on disk next to the database.

A crop is named by a hash of (project, dataset, figure id, size, crop version): a face's box never changes
(a changed photo is re-analysed into new faces with new ids), so a file once written stays right and is served with a
strong ETag and a long private Cache-Control. Files are written to a temporary name and renamed, so two
requests making the same crop at once never serve half a file.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from immray.faces.decode import decode_image

FACE_PX = 160
PHOTO_PX = 1280
MARGIN = 0.35  # room around the detected box, so a crop shows the head, not just the features
CROP_VERSION = 2  # 2: the square stays inside the photo (no black band at the photo's edge)


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    width: int
    height: int


class ThumbnailCache:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_of(self, project: str, dataset: str, key: str, size: int) -> Path:
        name = f"{project}\0{dataset}\0{key}\0{size}\0{CROP_VERSION}"
        digest = hashlib.sha256(name.encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest[2:]}.jpg"

    @staticmethod
    def etag_of(path: Path) -> str:
        return f'"{path.stem[:32]}"'

    def store(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def face_crop(photo: bytes, box: Box, size: int = FACE_PX) -> bytes:
    """A square JPEG of the face in ``box`` (pixels of the photo as displayed, after EXIF rotation).

    The square is centred on the face where it can be; near the photo's edge it slides (and, in a photo
    narrower than the square, shrinks) to stay inside, so a crop never shows a black band beyond the photo.
    """
    image = decode_image(photo).image
    side = round(max(box.width, box.height) * (1 + 2 * MARGIN))
    side = max(1, min(side, image.width, image.height))
    cx, cy = box.left + box.width / 2, box.top + box.height / 2
    left = min(max(round(cx - side / 2), 0), image.width - side)
    top = min(max(round(cy - side / 2), 0), image.height - side)
    crop = image.crop((left, top, left + side, top + side))
    crop = crop.resize((size, size), Image.Resampling.LANCZOS)
    return _jpeg(crop)


def photo_preview(photo: bytes, size: int = PHOTO_PX) -> bytes:
    image = decode_image(photo).image
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return _jpeg(image)


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue()
