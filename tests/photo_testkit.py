"""Real photos for the indexing tests, written to a temporary root: the sample photos (immray.samples)
with mirrored, rescaled and cropped copies so each person appears several times, and bad files (empty,
truncated JPEG, text) that must each fail alone."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

# The suite's servers detect faces in fast mode, not with the server's default (``accurate``): on the test
# photos accurate shows the detector about 5x the pixels, and every module that indexes photos runs on both
# backends. What the modes change is tested through the official SDK in tests/api/test_files_detection_modes.py:
# a server on its default, a dataset in fast mode.
TEST_DETECTOR = "fast"


@dataclass
class PhotoSet:
    root: Path
    good: dict[str, Path] = field(default_factory=dict)
    bad: dict[str, Path] = field(default_factory=dict)
    # name -> the person's sample the photo shows ("group" holds six people)
    person: dict[str, str] = field(default_factory=dict)

    def uri(self, name: str) -> str:
        return (self.good.get(name) or self.bad[name]).as_uri()

    def uris(self, names=None) -> list[str]:
        return [self.uri(name) for name in (names if names is not None else self.good)]


def _jpeg(image: Image.Image, quality: int = 92) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def write_photo_set(root: Path, sample_photo: Callable[[str], Path]) -> PhotoSet:
    """The photos under ``root/photos`` and the bad files under ``root/bad``."""
    photos, bad = root / "photos", root / "bad"
    photos.mkdir(parents=True, exist_ok=True)
    bad.mkdir(parents=True, exist_ok=True)
    found = PhotoSet(root)

    def add(name: str, person: str, data: bytes) -> None:
        path = photos / name
        path.write_bytes(data)
        found.good[name] = path
        found.person[name] = person

    for person, suffix in (("group", ".jpg"), ("portrait", ".png"), ("astronaut", ".png")):
        source = sample_photo(person)
        shutil.copyfile(source, photos / f"{person}{suffix}")
        found.good[f"{person}{suffix}"] = photos / f"{person}{suffix}"
        found.person[f"{person}{suffix}"] = person
        image = ImageOps.exif_transpose(Image.open(source)).convert("RGB")
        add(f"{person}_mirrored.jpg", person, _jpeg(ImageOps.mirror(image)))
        if person == "portrait":  # a 112 px close-up: larger, not smaller
            add(f"{person}_large.jpg", person, _jpeg(image.resize((224, 224), Image.Resampling.LANCZOS)))
        else:
            w, h = image.size
            add(
                f"{person}_small.jpg",
                person,
                _jpeg(image.resize((w * 3 // 4, h * 3 // 4), Image.Resampling.LANCZOS)),
            )
    astronaut = Image.open(sample_photo("astronaut")).convert("RGB")
    add("astronaut_crop.jpg", "astronaut", _jpeg(astronaut.crop((96, 0, 352, 256))))

    group_bytes = sample_photo("group").read_bytes()
    for name, data in (
        ("empty.jpg", b""),
        ("truncated.jpg", group_bytes[: len(group_bytes) // 3]),
        ("notes.jpg", b"These are not the photos you are looking for.\n" * 20),
    ):
        (bad / name).write_bytes(data)
        found.bad[name] = bad / name
    return found
