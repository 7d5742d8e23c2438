"""Do mirrored-face descriptors pay for their cost? The clustering engine at its defaults on the same faces
with plain descriptors and with the mirror average (as ``AnalyzerConfig(mirror=True)`` computes it).

    python -m immray.bench.mirror_quality /work/shared/eval/dev [--detector hog] [--increments 10]

Every labeled photo is analysed once; for its labeled face (the one nearest the centre) both the plain
descriptor and the mirrored chip's are kept, so every variant clusters exactly the same faces:

- ``plain``: dlib's descriptor, what immray stores without ``mirror``;
- ``mirror``: the average of the two, as ``MirroredEmbedder`` gives it;
- ``mirror, renormalised``: that average rescaled to the mean norm of the two (dlib's scale, for users of
  its customary Euclidean cuts). The engine compares cosines, so only the Euclidean baselines can tell it
  from ``mirror``.

It prints the engine's pairwise and BCubed scores (batch and in increments, MinFaces 2 and 3) and the
baselines of `python -m immray.bench.quality` on each variant, and the descriptor time per face with and without mirroring.
The engine's thresholds were tuned on plain descriptors; ``--join-thresholds`` also clusters each variant
(batch) at other values of ``join_threshold`` (with ``merge_threshold`` kept 0.01 above it), to compare them
each at its best.
Embeddings are cached in immray/bench/.cache/ per folder, detector and embedder.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from immray.bench.dev_faces import CACHE_DIR, LabeledFaces, read_manifest
from immray.bench.quality import HEADER, baselines, batch, incremental, row
from immray.clustering import ClusteringConfig  # noqa: E402
from immray.clustering.metrics import score  # noqa: E402


class BothViews:
    """An Embedder for the bench: the plain and the mirrored chip's descriptors side by side (2 x 128)."""

    def __init__(self) -> None:
        from immray.faces import DlibResNetEmbedder

        self.inner = DlibResNetEmbedder()
        self.name = f"{self.inner.name}|mirrored"
        self.dimension = 2 * self.inner.dimension
        self.chip_size, self.chip_padding = self.inner.chip_size, self.inner.chip_padding

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        plain = self.inner.embed(chips)
        mirrored = self.inner.embed([np.ascontiguousarray(c[:, ::-1]) for c in chips])
        return np.hstack([plain, mirrored])


def central(faces, width: int, height: int):
    def off_centre(face):
        b = face.boundary
        return (b.left + b.width / 2 - width / 2) ** 2 + (b.top + b.height / 2 - height / 2) ** 2

    return min(faces, key=off_centre)


def embed_both(folder: Path, detector: str) -> dict[str, np.ndarray]:
    from tqdm import tqdm

    from immray.faces import Analyzer, AnalyzerConfig, ImageError

    rows = read_manifest(folder)
    config = AnalyzerConfig(detector=detector)
    key = hashlib.sha256(repr((str(folder.resolve()), config, rows)).encode()).hexdigest()[:16]
    cache = CACHE_DIR / f"{folder.name}-mirror-both-{detector}-{key}.npz"
    if cache.is_file():
        return dict(np.load(cache, allow_pickle=False))
    analyzer = Analyzer(config, embedder=BothViews())
    out: dict[str, list] = {"paths": [], "identities": [], "both": [], "quality": []}
    missing = 0
    for rel, identity in tqdm(rows, desc=f"embedding {folder.name} both ways", unit="photo"):
        try:
            image = analyzer.analyze((folder / rel).read_bytes())
        except ImageError:
            image = None
        if image is None or not image.faces:
            missing += 1
            continue
        face = central(image.faces, image.width, image.height)
        out["paths"].append(rel)
        out["identities"].append(identity)
        out["both"].append(face.embedding)
        out["quality"].append(face.quality)
    arrays = {k: np.array(v) for k, v in out.items()}
    arrays["both"] = arrays["both"].astype(np.float32)
    arrays["quality"] = arrays["quality"].astype(np.float32)
    arrays["missing"] = np.array(missing)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)
    return arrays


def variants(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    plain, mirrored = np.split(data["both"], 2, axis=1)
    average = (plain + mirrored) / 2
    norm = (np.linalg.norm(plain, axis=1) + np.linalg.norm(mirrored, axis=1)) / 2
    rescaled = average * (norm / np.linalg.norm(average, axis=1))[:, None]
    return {"plain": plain, "mirror": average, "mirror, renormalised": rescaled.astype(np.float32)}


def descriptor_seconds(folder: Path, paths: np.ndarray, count: int = 100) -> tuple[float, float]:
    """CPU seconds per face of the plain and the mirrored embedder, on the chips of ``count`` photos."""
    from immray.faces import AnalyzerConfig, DlibResNetEmbedder, decode_image, get_analyzer
    from immray.faces.embed import MirroredEmbedder

    analyzer = get_analyzer(AnalyzerConfig(detector="fast"))
    chips = []
    for rel in paths[:count]:
        decoded = decode_image((folder / str(rel)).read_bytes())
        found = analyzer.detect(decoded)[:1]
        if found:
            chips += list(analyzer.aligner.align(decoded.pixels, found)[1])
    times = []
    for embedder in (DlibResNetEmbedder(), MirroredEmbedder(DlibResNetEmbedder())):
        embedder.embed(chips[:2])  # warm up
        start = time.process_time()
        for chip in chips:
            embedder.embed([chip])
        times.append((time.process_time() - start) / len(chips))
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="evaluation folder with manifest.csv (../shared/eval/dev)")
    parser.add_argument("--detector", default="hog", help="detector mode for finding the labeled faces")
    parser.add_argument("--increments", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-faces", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--join-thresholds", type=float, nargs="*", default=[], metavar="T")
    args = parser.parse_args()

    data = embed_both(args.folder, args.detector)
    truth = data["identities"].tolist()
    config = ClusteringConfig()
    print(
        f"{len(truth)} faces of {len(set(truth))} people from {args.folder} (detector {args.detector}; "
        f"{int(data['missing'])} photos without a face); engine defaults: {config}"
    )
    plain_s, mirror_s = descriptor_seconds(args.folder, data["paths"])
    print(f"descriptor CPU time per face: plain {1000 * plain_s:.1f} ms, mirror {1000 * mirror_s:.1f} ms\n")
    print(HEADER)
    for name, embeddings in variants(data).items():
        faces = LabeledFaces(data["paths"], data["identities"], embeddings, data["quality"], name)
        for m in args.min_faces:
            labels, secs = batch(faces, m, config)
            print(row(f"{name}: MinFaces={m} batch", score(truth, labels), secs))
            labels, secs, _ = incremental(faces, m, config, args.increments, args.seed)
            print(row(f"{name}: MinFaces={m} {args.increments} increments", score(truth, labels), secs))
        if not args.no_baselines:
            for base, (labels, secs) in baselines(embeddings).items():
                alone = [None if lab == -1 else lab for lab in labels]
                print(row(f"{name}: {base}", score(truth, alone), secs))
        for threshold in args.join_thresholds:
            swept = replace(
                config,
                join_threshold=threshold,
                merge_threshold=max(config.merge_bar, min(1.0, threshold + 0.01)),
            )
            for m in args.min_faces:
                labels, secs = batch(faces, m, swept)
                print(row(f"{name}: join {threshold:.3f} MinFaces={m} batch", score(truth, labels), secs))
        print()


if __name__ == "__main__":
    main()
