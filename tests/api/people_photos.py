"""Real photos in which each person appears several times, and who is who in them.

The group photo of the samples (six people) is saved as is and as mirrored, rescaled and cropped copies;
the portrait (one more person) as three enlarged copies. Each copy knows how to map a point back to its
source photo, so a face found in a copy is identified by the source face under its centre: the ground
truth comes from geometry, not from the clustering under test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from immray.samples import sample_path

Point = tuple[float, float]


@dataclass(frozen=True)
class Copy:
    name: str
    source: str  # "group" or "portrait"
    make: Callable[[Image.Image], Image.Image]
    to_source: Callable[[Point, tuple[int, int]], Point]  # (point in the copy, source size) -> source point


def _mirror(point: Point, size: tuple[int, int]) -> Point:
    return (size[0] - point[0], point[1])


def _scaled(factor: float) -> Callable[[Point, tuple[int, int]], Point]:
    return lambda point, size: (point[0] / factor, point[1] / factor)


def _shifted(dx: int) -> Callable[[Point, tuple[int, int]], Point]:
    return lambda point, size: (point[0] + dx, point[1])


def _resize(factor: float) -> Callable[[Image.Image], Image.Image]:
    def make(image: Image.Image) -> Image.Image:
        size = (round(image.width * factor), round(image.height * factor))
        return image.resize(size, Image.Resampling.LANCZOS)

    return make


# Indexed first: every one of the six people of the group appears in four of these.
GROUP = (
    Copy("group.jpg", "group", lambda im: im, lambda p, s: p),
    Copy("group-mirrored.jpg", "group", ImageOps.mirror, _mirror),
    Copy("group-small.jpg", "group", _resize(0.8), _scaled(0.8)),
    Copy("group-left.jpg", "group", lambda im: im.crop((0, 0, im.width // 2 + 40, im.height)), _shifted(0)),
    Copy(
        "group-right.jpg",
        "group",
        lambda im: im.crop((im.width // 2 - 40, 0, im.width, im.height)),
        _shifted(600),
    ),
)
# Indexed later: three more photos of one person nobody has seen yet.
PORTRAITS = (
    Copy("portrait-large.jpg", "portrait", _resize(3.0), _scaled(3.0)),
    Copy(
        "portrait-large-mirrored.jpg",
        "portrait",
        lambda im: ImageOps.mirror(_resize(3.0)(im)),
        lambda p, s: _mirror(_scaled(3.0)(p, s), s),
    ),
    Copy("portrait-medium.jpg", "portrait", _resize(2.5), _scaled(2.5)),
)
# Never indexed: photos to search the people with.
PROBES = (
    Copy("probe-group.jpg", "group", _resize(0.9), _scaled(0.9)),
    Copy("probe-portrait.jpg", "portrait", _resize(2.0), _scaled(2.0)),
)
COPIES = {copy.name: copy for copy in (*GROUP, *PORTRAITS, *PROBES)}


def make_photos(folder: Path, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Write the copies (``names``, default all) into ``folder``; name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = {name: Image.open(sample_path(name)).convert("RGB") for name in ("group", "portrait")}
    assert sources["group"].width == 1280, "the group sample changed; _shifted(600) assumes 1280 px"
    paths = {}
    for copy in COPIES.values() if names is None else [COPIES[name] for name in names]:
        path = folder / copy.name
        copy.make(sources[copy.source]).save(path, quality=92)
        paths[copy.name] = path
    return paths


def source_size(name: str) -> tuple[int, int]:
    with Image.open(sample_path(COPIES[name].source)) as image:
        return image.size


def centre(boundary) -> Point:
    return (boundary.left + boundary.width / 2, boundary.top + boundary.height / 2)


def who(name: str, boundary, faces: Iterable[tuple[str, Point]]) -> str:
    """The person whose face in the source photo lies under this face's centre; ``faces`` are the source
    photo's people with their face centres."""
    copy = COPIES[name]
    x, y = copy.to_source(centre(boundary), source_size(name))
    best, distance = None, float("inf")
    for person, (px, py) in faces:
        d = ((px - x) ** 2 + (py - y) ** 2) ** 0.5
        if d < distance:
            best, distance = person, d
    assert best is not None and distance < 40, f"no source face under the face at {boundary} of {name}"
    return best
