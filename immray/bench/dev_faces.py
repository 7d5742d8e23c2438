"""The labeled faces of an evaluation folder, embedded through ``immray.faces`` and cached.

An evaluation folder (e.g. ``../shared/eval/dev``) has ``manifest.csv`` (relative_path, identity, ...) and
one labeled face per photo: where a photo holds several faces, the labeled one is the face nearest the centre.
Photos in which no face is found are left out (and counted). The cache lives in ``immray/bench/.cache/`` under a
name made of the folder, the analyzer config and the embedder's name, so a change to either recomputes it.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CACHE_DIR = Path(__file__).resolve().parent / ".cache"


@dataclass
class LabeledFaces:
    paths: np.ndarray  # (n,) str, relative to the folder
    identities: np.ndarray  # (n,) str
    embeddings: np.ndarray  # (n, d) float32, as the embedder gives them (dlib: not normalised)
    quality: np.ndarray  # (n,) float32, 0-1
    source: str  # what produced the embeddings
    missing: int = 0  # photos of the manifest with no face found

    def __len__(self) -> int:
        return len(self.paths)


def read_manifest(folder: Path) -> list[tuple[str, str]]:
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        sys.exit(f"{folder}: no manifest.csv (expected an evaluation folder such as ../shared/eval/dev)")
    with manifest.open(newline="") as fh:
        return [(row["relative_path"], row["identity"]) for row in csv.DictReader(fh)]


def _central_face(faces, width: int, height: int):
    def off_centre(face):
        b = face.boundary
        return (b.left + b.width / 2 - width / 2) ** 2 + (b.top + b.height / 2 - height / 2) ** 2

    return min(faces, key=off_centre)


def embed_folder(folder: Path, *, detector: str | None = None, refresh: bool = False) -> LabeledFaces:
    """Embed every photo of the manifest with ``immray.faces`` (cached); ``detector`` overrides the
    analyzer's default detector."""
    from tqdm import tqdm

    from immray.faces import AnalyzerConfig, ImageError, get_analyzer

    config = AnalyzerConfig() if detector is None else AnalyzerConfig(detector=detector)
    analyzer = get_analyzer(config)
    rows = read_manifest(folder)
    key = hashlib.sha256(
        repr((str(folder.resolve()), asdict(config), analyzer.embedder.name, rows)).encode()
    ).hexdigest()[:16]
    cache = CACHE_DIR / f"{folder.name}-faces-{analyzer.embedder.name}-{key}.npz"
    source = f"immray.faces ({analyzer.embedder.name}, {config})"
    if cache.is_file() and not refresh:
        data = np.load(cache, allow_pickle=False)
        return LabeledFaces(
            data["paths"],
            data["identities"],
            data["embeddings"],
            data["quality"],
            source,
            int(data["missing"]),
        )
    paths, identities, embeddings, quality = [], [], [], []
    missing = 0
    for rel, identity in tqdm(rows, desc=f"embedding {folder.name}", unit="photo"):
        try:
            image = analyzer.analyze((folder / rel).read_bytes())
        except ImageError:
            image = None
        if image is None or not image.faces:
            missing += 1
            continue
        face = _central_face(image.faces, image.width, image.height)
        paths.append(rel)
        identities.append(identity)
        embeddings.append(np.asarray(face.embedding, np.float32))
        quality.append(face.quality)
    out = LabeledFaces(
        np.array(paths),
        np.array(identities),
        np.stack(embeddings),
        np.array(quality, np.float32),
        source,
        missing,
    )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(
        cache,
        paths=out.paths,
        identities=out.identities,
        embeddings=out.embeddings,
        quality=out.quality,
        missing=missing,
    )
    return out


def load_npz(path: Path) -> LabeledFaces:
    """A precomputed set (e.g. the provisional raw-dlib cache): paths, identities, embeddings[, quality]."""
    data = np.load(path, allow_pickle=False)
    n = len(data["paths"])
    quality = data["quality"] if "quality" in data else np.ones(n, np.float32)
    return LabeledFaces(
        data["paths"], data["identities"], data["embeddings"].astype(np.float32), quality, f"file {path}"
    )


def load_faces(folder: Path | None, embeddings: Path | None, detector: str | None = None) -> LabeledFaces:
    if embeddings is not None:
        return load_npz(embeddings)
    if folder is None:
        sys.exit("give an evaluation folder (or --embeddings FILE)")
    return embed_folder(folder, detector=detector)
