"""Real sample photos that package registries ship, for the tests and the quick start (`deploy/local/run.sh`).

- ``group``: a group photo of six people (``insightface/data/images/t1.jpg``),
- ``portrait``: a 112x112 close-up of one face (``insightface/data/images/Tom_Hanks_54745.png``),
  both read out of the ``insightface==2.1`` wheel, which is downloaded with pip and unpacked, never installed;
- ``astronaut``: scikit-image's ``data.astronaut()`` (Eileen Collins), saved as PNG (scikit-image is a test
  extra, imported only when asked for);
- ``children``: five young children, cut out on a transparent background
  (``realesrgan-0.3.0/inputs/children-alpha.png`` of the ``realesrgan==0.3.0`` source distribution, BSD-3;
  only its sdist carries it: downloaded, never built or installed).

Files land in ``<repo>/.cache/samples`` when run from a checkout, else ``~/.cache/immray/samples``, and
are fetched once: later calls return the cached path. ``python -m immray.samples group`` prints a path.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

# name -> (pip requirement, "wheel" or "sdist", path inside the archive, cached file name)
_PACKAGED = {
    "group": ("insightface==2.1", "wheel", "insightface/data/images/t1.jpg", "t1.jpg"),
    "portrait": ("insightface==2.1", "wheel", "insightface/data/images/Tom_Hanks_54745.png", "Tom_Hanks_54745.png"),
    "children": ("realesrgan==0.3.0", "sdist", "realesrgan-0.3.0/inputs/children-alpha.png", "children-alpha.png"),
}  # fmt: skip
# The exact photos the tests were written against: a changed package must fail loudly, not shift the tests.
_SHA256 = {
    "t1.jpg": "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
    "Tom_Hanks_54745.png": "8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083",
    "children-alpha.png": "17323c91483660079e2e95fce438485b8f144bbaee50b2e7b10a9c343c628589",
}
NAMES = ("group", "portrait", "astronaut", "children")


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
    if name not in _PACKAGED:
        raise ValueError(f"unknown sample {name!r}; choose from {', '.join(NAMES)}")
    requirement, kind, _, filename = _PACKAGED[name]
    target = cache_dir() / filename
    if not target.is_file():
        _unpack_samples(requirement, kind)
    return target


def _unpack_samples(requirement: str, kind: str) -> None:
    """Every sample ``requirement``'s archive holds, checked and cached."""
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {member: filename for req, _, member, filename in _PACKAGED.values() if req == requirement}
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        archive = _download(requirement, kind, Path(tmp))
        for member, filename in wanted.items():
            data = _read_member(archive, member)
            _check_digest(requirement, filename, data)
            staged = Path(tmp) / filename
            staged.write_bytes(data)
            staged.replace(directory / filename)  # atomic: a reader never sees half a file


def _read_member(archive: Path, member: str) -> bytes:
    try:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as opened:
                return opened.read(member)
        with tarfile.open(archive) as opened:
            extracted = opened.extractfile(member)
            if extracted is None:
                raise KeyError(member)
            return extracted.read()
    except KeyError:
        raise SampleUnavailable(f"{archive.name} has no {member}") from None


def _download(requirement: str, kind: str, into: Path) -> Path:
    """The wheel or source distribution of ``requirement``, downloaded by pip (an sdist's metadata is
    read with this environment's setuptools; nothing is built or installed)."""
    how = ["--only-binary=:all:"] if kind == "wheel" else ["--no-binary=:all:", "--no-build-isolation"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *how, requirement, "-d", str(into)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    project = requirement.split("==")[0]
    found = sorted(into.glob(f"{project}-*.whl" if kind == "wheel" else f"{project}-*.tar.gz"))
    if result.returncode != 0 or not found:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SampleUnavailable(f"could not download {requirement} with pip: {detail[0]}")
    return found[0]


def _check_digest(requirement: str, filename: str, data: bytes) -> None:
    expected = _SHA256[filename]
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise SampleUnavailable(f"{filename} from {requirement} has sha256 {actual}, expected {expected}")


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
