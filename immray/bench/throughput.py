"""Face analysis throughput on torch: photos/s and faces/s of the whole pipeline at several batch sizes, the
embedder alone (descriptors/s), and JPEG decoding alone (the ceiling a GPU node reaches).

    python -m immray.bench.throughput /work/shared/eval/dev/images --limit 200 [--batch 1 8 32]
        [--threads 1] [--detector accurate] [--device cpu|cuda]
    python -m immray.bench.throughput --api /work/shared/eval/dev --limit 200   # see throughput_api.py

Photos are read into memory first, so the figures are the models' and immray's own work (decode with EXIF
and limits, detection, alignment, descriptors, quality). On the CPU the figures per core are photos (faces)
per CPU-second of this process: on a shared machine that is the figure to trust, wall time is printed too.
The reference is the last measure of the dlib pipeline this replaced (dlib 20 built against OpenBLAS, one
thread: about 57 descriptors/s and 5.5 LFW photos/s per core, `--reference-*` to change it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".gif", ".bmp", ".tif", ".tiff"}


def find_images(directory: Path, limit: int) -> list[Path]:
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return files[:limit]


class Clock:
    """Wall and CPU seconds of this process (CPU includes every torch thread), and on CUDA a synchronise
    before reading, so queued kernels are counted."""

    def __init__(self, cuda: bool) -> None:
        self._cuda = cuda

    def __enter__(self) -> Clock:
        self._sync()
        self.start, self.start_cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.wall = time.perf_counter() - self.start
        self.cpu = time.process_time() - self.start_cpu

    def _sync(self) -> None:
        if self._cuda:
            import torch

            torch.cuda.synchronize()


def pipeline_rows(analyzer, photos: list[bytes], batches: list[int], cuda: bool) -> list[tuple]:
    from immray.faces import ImageError

    analyzer.analyze_batch(photos[: max(batches)])  # warm-up: lazy allocations, cuDNN's algorithm choice
    rows = []
    for batch in batches:
        faces = failed = 0
        with Clock(cuda) as clock:
            for lo in range(0, len(photos), batch):
                for outcome in analyzer.analyze_batch(photos[lo : lo + batch]):
                    if isinstance(outcome, ImageError):
                        failed += 1
                    else:
                        faces += len(outcome.faces)
        rows.append((batch, len(photos), faces, failed, clock.wall, clock.cpu))
    return rows


def chips_of(analyzer, photos: list[bytes], wanted: int) -> np.ndarray:
    """Aligned chips of the first faces found, for the embedder alone."""
    from immray.faces import ImageError, decode_image

    chips: list[np.ndarray] = []
    for data in photos:
        try:
            decoded = decode_image(data)
        except ImageError:
            continue
        found = analyzer.detect(decoded)
        if found:
            chips.extend(analyzer.aligner.align(decoded.pixels, found)[1])
        if len(chips) >= wanted:
            break
    return np.stack(chips[:wanted]) if chips else np.zeros((0, 150, 150, 3), np.uint8)


def embedder_rows(embedder, chips: np.ndarray, batches: list[int], cuda: bool) -> list[tuple]:
    embedder.embed(chips[: max(batches)])
    rows = []
    for batch in batches:
        with Clock(cuda) as clock:
            for lo in range(0, len(chips), batch):
                embedder.embed(chips[lo : lo + batch])
        rows.append((batch, len(chips), clock.wall, clock.cpu))
    return rows


def decode_rate(photos: list[bytes]) -> tuple[float, float]:
    from immray.faces import ImageError, decode_image

    with Clock(False) as clock:
        for data in photos:
            with contextlib.suppress(ImageError):
                decode_image(data)
    return len(photos) / clock.wall, len(photos) / max(clock.cpu, 1e-9)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--api"]:  # the whole service through the API: throughput_api.py
        from immray.bench.throughput_api import main as through_the_api

        through_the_api(argv[1:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path, help="folder of photos, searched recursively")
    parser.add_argument("--limit", type=int, default=200, help="use the first N photos (sorted by path)")
    parser.add_argument("--batch", type=int, nargs="+", default=None, help="batch sizes (CPU: 1 8 32)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (figures are per core)")
    parser.add_argument("--detector", default="accurate", help="accurate | fast")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--reference-descriptors", type=float, default=57.0, help="per core, dlib OpenBLAS")
    parser.add_argument("--reference-photos", type=float, default=5.5, help="per core, dlib OpenBLAS")
    args = parser.parse_args(argv)

    import torch

    from immray.faces import AnalyzerConfig, get_analyzer

    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    batches = args.batch or ([64, 128, 256] if cuda else [1, 8, 32])
    files = find_images(args.directory, args.limit)
    if not files:
        parser.error(f"no images under {args.directory}")
    photos = [f.read_bytes() for f in files]
    analyzer = get_analyzer(AnalyzerConfig(detector=args.detector, mirror=args.mirror, device=args.device))
    gpu = torch.cuda.get_device_name() if cuda else None
    print(
        f"{len(photos)} photos from {args.directory}, detector {args.detector}, mirror {args.mirror}, device "
        f"{args.device}{f' ({gpu})' if gpu else ''}, torch {torch.__version__}, {args.threads} CPU thread(s), "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}\n"
    )

    print("whole pipeline (decode, detect, align, embed, quality)")
    print(f"{'batch':>5} {'photos':>6} {'faces':>6} {'failed':>6} {'wall s':>7} {'photos/s':>9} {'faces/s':>8} "
          f"{'photos/cpu-s':>12} {'faces/cpu-s':>11}")  # fmt: skip
    best = 0.0
    for batch, n, faces, failed, wall, cpu in pipeline_rows(analyzer, photos, batches, cuda):
        print(f"{batch:>5} {n:>6} {faces:>6} {failed:>6} {wall:>7.2f} {n / wall:>9.2f} {faces / wall:>8.1f} "
              f"{n / cpu:>12.2f} {faces / cpu:>11.1f}")  # fmt: skip
        best = max(best, n / cpu)
    if not cuda:
        print(f"best photos per CPU-second: {best:.2f} = {best / args.reference_photos:.2f}x the dlib pipeline's "
              f"{args.reference_photos} per core")  # fmt: skip

    chips = chips_of(analyzer, photos, 256)
    embedder = analyzer.embedder
    print(
        f"\nembedder alone ({embedder.name}, {len(chips)} chips; a mirrored descriptor is two forward passes)"
    )
    print(f"{'batch':>5} {'faces':>6} {'wall s':>7} {'faces/s':>8} {'faces/cpu-s':>11}")
    best = 0.0
    for batch, n, wall, cpu in embedder_rows(embedder, chips, batches, cuda):
        print(f"{batch:>5} {n:>6} {wall:>7.2f} {n / wall:>8.1f} {n / cpu:>11.1f}")
        best = max(best, n / cpu)
    if not cuda:
        per_view = best * (2 if args.mirror else 1)
        print(f"best descriptors (one view) per CPU-second: {per_view:.1f} = "
              f"{per_view / args.reference_descriptors:.2f}x dlib's {args.reference_descriptors} per core")  # fmt: skip

    wall_rate, cpu_rate = decode_rate(photos)
    print(f"\nJPEG decoding alone: {wall_rate:.1f} photos/s ({cpu_rate:.1f} per CPU-second, one core)")


if __name__ == "__main__":
    main()
