"""Face detection recall by face size, false detections and CPU seconds per photo, per detection mode.

    python -m immray.bench.detection /work/shared/eval/wider-dev [--halves] [--config accurate --config fast]
        [--config "accurate:threshold=0.4,budget_px=800000"] [--limit N] [--subset tune|check|all]

The folder holds ``images/`` and ``boxes.csv`` (WIDER FACE style: relative_path, x, y, w, h, ..., invalid):
every face of every photo boxed. Boxes marked invalid are ignored: they neither count as faces to find nor
make a detection on them false. Each configuration is immray's own detection strategy
(``make_strategy(AnalyzerConfig(detector=NAME, key=value, ...))``); keys may also be fields of
``DetectorPlan``, to try other values of a mode's knobs. Default: both modes.

- recall: boxes matched one-to-one by a detection at IoU >= 0.4 (greedy, best IoU first), by the box's
  shorter side: < 16, 16-32, 32-64 and >= 64 px.
- false/photo: detections that overlap no box at all (IoU < 0.1 with every box, valid, invalid or tiny):
  things that are not faces; ``kept`` counts only those at least ``min_face_px`` on their shorter side
  (the faces the product keeps), ``all`` every box the strategy returned. unmatched/photo is stricter:
  every detection not matched to a valid box at IoU >= 0.4 nor lying on an invalid one (IoU >= 0.4), so
  duplicates and badly placed boxes count too.
- s/photo: decoding plus detection, one photo at a time, as CPU time of this process and as wall time, on
  ONE torch thread (``--threads``) so the figures are per core; run it under ``nice`` on a shared machine.
  The load average is printed before and after: on a busy machine wall time grows, CPU time much less.

``--quality`` also runs the rest of the pipeline (alignment, descriptor, quality) for the first
configuration and prints, by the detected face's shorter side, how many faces are "good" (FaceQuality at
least the clustering engine's ``min_good_quality``): the faces that may found a new person.

``--misses`` lists, for the first configuration, every valid face of 64 px or more it missed, with its WIDER
flags (occluded, atypical pose, heavy blur).

``--subset tune`` / ``check`` split the photos in two halves by a hash of their path, so a strategy tuned on
one half can be checked on photos it was not tuned on; ``--halves`` prints both halves of a run on all.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

BANDS = ((0, 16, "<16"), (16, 32, "16-32"), (32, 64, "32-64"), (64, None, ">=64"))
MATCH_IOU = 0.4
OVERLAP_IOU = 0.1


@dataclass
class Photo:
    path: str
    faces: np.ndarray  # (n, 4) valid boxes, left top right bottom
    ignored: np.ndarray  # (m, 4) boxes marked invalid


@dataclass
class Tally:
    found: np.ndarray
    total: np.ndarray
    false: int = 0
    false_kept: int = 0
    unmatched: int = 0
    detections: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    photos: int = 0
    errors: int = 0


def read_photos(folder: Path) -> list[Photo]:
    boxes_csv = folder / "boxes.csv"
    if not boxes_csv.is_file():
        sys.exit(f"{folder}: no boxes.csv (expected a folder such as /work/shared/eval/wider-dev)")
    valid: dict[str, list] = defaultdict(list)
    ignored: dict[str, list] = defaultdict(list)
    with boxes_csv.open(newline="") as fh:
        for row in csv.DictReader(fh):
            path = row["relative_path"]
            valid.setdefault(path, [])
            x, y, w, h = (float(row[k]) for k in ("x", "y", "w", "h"))
            box = (x, y, x + w, y + h)
            bad = row.get("invalid", "0").strip() not in ("", "0") or w <= 0 or h <= 0
            (ignored if bad else valid)[path].append(box)
    paths = set(valid)
    manifest = folder / "manifest.csv"
    if manifest.is_file():  # photos without any face are listed only there
        with manifest.open(newline="") as fh:
            paths.update(row["relative_path"] for row in csv.DictReader(fh))
    return [
        Photo(p, np.array(valid.get(p, []), float).reshape(-1, 4), np.array(ignored[p], float).reshape(-1, 4))
        for p in sorted(paths)
    ]


def in_subset(path: str, subset: str) -> bool:
    if subset == "all":
        return True
    half = int(hashlib.sha256(path.encode()).hexdigest(), 16) % 2
    return half == (0 if subset == "tune" else 1)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of boxes given as left, top, right, bottom."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(-1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def match(faces: np.ndarray, detections: np.ndarray) -> tuple[set[int], set[int]]:
    """One-to-one greedy matching at IoU >= MATCH_IOU: (matched face indices, matched detection indices)."""
    overlaps = iou(faces, detections)
    pairs = np.argwhere(overlaps >= MATCH_IOU)
    order = np.argsort(-overlaps[pairs[:, 0], pairs[:, 1]], kind="stable") if len(pairs) else []
    faces_hit: set[int] = set()
    detections_hit: set[int] = set()
    for i, j in pairs[order] if len(pairs) else []:
        if i not in faces_hit and j not in detections_hit:
            faces_hit.add(int(i))
            detections_hit.add(int(j))
    return faces_hit, detections_hit


def band_of(side: float) -> int:
    for k, (low, high, _) in enumerate(BANDS):
        if side >= low and (high is None or side < high):
            return k
    raise AssertionError(side)


def score_photo(photo: Photo, detections: np.ndarray, tally: Tally, min_face_px: float) -> None:
    faces_hit, detections_hit = match(photo.faces, detections)
    for i, (left, top, right, bottom) in enumerate(photo.faces):
        k = band_of(min(right - left, bottom - top))
        tally.total[k] += 1
        tally.found[k] += i in faces_hit
    every_box = np.vstack([photo.faces, photo.ignored])
    overlaps = iou(detections, every_box)
    on_ignored = iou(detections, photo.ignored)
    for j, (left, top, right, bottom) in enumerate(detections):
        if j in detections_hit:
            continue
        if overlaps.shape[1] == 0 or overlaps[j].max() < OVERLAP_IOU:
            tally.false += 1
            tally.false_kept += min(right - left, bottom - top) >= min_face_px
        if on_ignored.shape[1] == 0 or on_ignored[j].max() < MATCH_IOU:
            tally.unmatched += 1
    tally.detections += len(detections)


def parse_config(spec: str):
    """``NAME[:key=value,...]`` -> (AnalyzerConfig, the detection strategy for it). Keys are fields of
    ``AnalyzerConfig`` or of ``DetectorPlan`` (the mode's knobs, to try other values of them)."""
    from immray.faces.config import AnalyzerConfig, canonical_detector
    from immray.faces.strategy import PLANS, CenterFaceStrategy, DetectorPlan

    name, _, rest = spec.partition(":")
    config_types = {f.name: f.type for f in fields(AnalyzerConfig)}
    plan_types = {f.name: f.type for f in fields(DetectorPlan)}
    config_args: dict[str, object] = {"detector": name}
    plan_args: dict[str, object] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        kind = config_types.get(key) or plan_types.get(key)
        if not sep or kind is None:
            raise ValueError(
                f"{item!r}: expected key=value, key one of {', '.join(config_types | plan_types)}"
            )
        kind = kind if isinstance(kind, str) else kind.__name__
        parse = {"int": int, "float": float, "bool": lambda v: v.lower() in ("1", "true", "yes")}.get(
            kind, str
        )
        (config_args if key in config_types else plan_args)[key] = parse(value)
    config = AnalyzerConfig(**config_args)
    plan = replace(PLANS[canonical_detector(config.detector)], **plan_args)
    return config, CenterFaceStrategy(config, plan)


@dataclass
class Outcome:
    photo: Photo
    boxes: np.ndarray  # (n, 4) detections, left top right bottom
    cpu: float
    wall: float
    error: bool


def as_boxes(detections) -> np.ndarray:
    """Detections as an (n, 4) array of left, top, right, bottom."""
    return np.array([(d.left, d.top, d.right, d.bottom) for d in detections], float).reshape(-1, 4)


def run(folder: Path, photos: list[Photo], spec: str) -> list[Outcome]:
    from PIL import Image
    from tqdm import tqdm

    from immray.faces.decode import decode_image
    from immray.faces.errors import ImageError

    config, strategy = parse_config(spec)
    strategy.detect(Image.new("RGB", (640, 480)))  # load and warm up outside the timing
    outcomes = []
    for photo in tqdm(photos, desc=spec, unit="photo", leave=False):
        data = (folder / photo.path).read_bytes()
        cpu, wall = time.process_time(), time.perf_counter()
        error = False
        try:
            decoded = decode_image(data, max_pixels=config.max_image_pixels)
            found = strategy.detect(decoded.image)
        except ImageError:
            error, found = True, []
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        outcomes.append(Outcome(photo, as_boxes(found), cpu, wall, error))
    return outcomes


def tally(outcomes: list[Outcome], min_face_px: float) -> Tally:
    total = Tally(np.zeros(len(BANDS)), np.zeros(len(BANDS)))
    for outcome in outcomes:
        score_photo(outcome.photo, outcome.boxes, total, min_face_px)
        total.cpu += outcome.cpu
        total.wall += outcome.wall
        total.photos += 1
        total.errors += outcome.error
    return total


QUALITY_BANDS = (0, 32, 40, 48, 64, 75, 100, None)


def quality_by_size(folder: Path, photos: list[Photo], spec: str) -> None:
    """Share of "good" faces by detected size, for the clustering engine's default quality bar."""
    from tqdm import tqdm

    from immray.clustering import ClusteringConfig
    from immray.faces import Analyzer, ImageError

    bar = ClusteringConfig().min_good_quality
    config, strategy = parse_config(spec)
    analyzer = Analyzer(config, detector=strategy)
    by_band: dict[int, list[float]] = defaultdict(list)
    for photo in tqdm(photos, desc=f"{spec} quality", unit="photo", leave=False):
        try:
            faces = analyzer.analyze((folder / photo.path).read_bytes()).faces
        except ImageError:
            continue
        for face in faces:
            side = min(face.boundary.width, face.boundary.height)
            band = max(k for k, low in enumerate(QUALITY_BANDS[:-1]) if side >= low)
            by_band[band].append(face.quality)
    print(f"\nFaceQuality of the faces {spec} finds, by their shorter side (good = quality >= {bar}):")
    print(f"{'side px':>9} {'faces':>6} {'good':>6} {'share':>6} {'median':>7} {'p90':>6}")
    for k in sorted(by_band):
        low, high = QUALITY_BANDS[k], QUALITY_BANDS[k + 1]
        values = np.array(by_band[k])
        label = f"{low}-{high}" if high else f">={low}"
        good = int((values >= bar).sum())
        print(
            f"{label:>9} {len(values):6d} {good:6d} {good / len(values):6.3f} "
            f"{np.median(values):7.3f} {np.percentile(values, 90):6.3f}"
        )


def wider_flags(folder: Path) -> dict[tuple[str, tuple[float, ...]], str]:
    """(photo, box) -> the face's WIDER flags in words ("occluded", "pose", "blur"; "" for a clear face)."""
    flags = {}
    with (folder / "boxes.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            x, y, w, h = (float(row[k]) for k in ("x", "y", "w", "h"))
            words = [
                word
                for word, hard in (
                    ("occluded", row.get("occlusion", "0") not in ("", "0")),
                    ("pose", row.get("pose", "0") not in ("", "0")),
                    ("blur", row.get("blur", "0") == "2"),
                )
                if hard
            ]
            flags[(row["relative_path"], (x, y, x + w, y + h))] = ",".join(words)
    return flags


def misses(folder: Path, outcomes: list[Outcome]) -> None:
    """The missed faces of >= 64 px, with their WIDER flags."""
    flags = wider_flags(folder)
    print("\nmissed faces of >= 64 px:")
    total = 0
    for outcome in outcomes:
        hit, _ = match(outcome.photo.faces, outcome.boxes)
        for i, face in enumerate(outcome.photo.faces):
            left, top, right, bottom = face
            if min(right - left, bottom - top) < 64 or i in hit:
                continue
            total += 1
            words = flags.get((outcome.photo.path, tuple(float(v) for v in face)), "")
            print(
                f"  {outcome.photo.path}  {round(min(right - left, bottom - top)):4d} px  {words or 'clear'}"
            )
    print(f"{total} missed faces of >= 64 px")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="folder with images/ and boxes.csv")
    parser.add_argument(
        "--config",
        action="append",
        metavar="NAME[:key=value,...]",
        help="detection mode, AnalyzerConfig and DetectorPlan fields; repeatable (default: accurate, fast)",
    )
    parser.add_argument("--limit", type=int, help="use the first N photos (sorted by path)")
    parser.add_argument("--subset", choices=("all", "tune", "check"), default="all")
    parser.add_argument("--halves", action="store_true", help="also print the tune and check halves")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: per core)")
    parser.add_argument("--quality", action="store_true", help="FaceQuality by face size, first config")
    parser.add_argument("--misses", action="store_true", help="the first config's missed faces >= 64 px")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    specs = args.config or ["accurate", "fast"]
    configs = {}
    for spec in specs:
        try:
            configs[spec] = parse_config(spec)[0]
        except (ValueError, TypeError, KeyError) as exc:
            parser.error(f"--config {spec}: {exc}")
    photos = [p for p in read_photos(args.folder) if in_subset(p.path, args.subset)][: args.limit]
    if not photos:
        parser.error(f"no photos in {args.folder} (subset {args.subset})")

    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"{len(photos)} photos of {args.folder} (subset {args.subset}); torch {torch.__version__}, "
        f"{args.threads} thread(s), {os.cpu_count()} cores, load average {load}"
    )
    results = {spec: run(args.folder, photos, spec) for spec in specs}
    rows: list[tuple[str, Tally]] = []
    for spec, outcomes in results.items():
        min_face_px = configs[spec].min_face_px
        rows.append((spec, tally(outcomes, min_face_px)))
        if args.subset == "all" and args.halves:
            for half in ("tune", "check"):
                chosen = [o for o in outcomes if in_subset(o.photo.path, half)]
                rows.append((f"  {half} half", tally(chosen, min_face_px)))
    counts = "  ".join(f"{label} {int(n)}" for (_, _, label), n in zip(BANDS, rows[0][1].total, strict=True))
    print(f"valid faces by shorter side: {counts}; recall at IoU >= {MATCH_IOU}\n")
    width = max(24, *(len(s) for s in specs))
    head = " ".join(f"{label:>6}" for _, _, label in BANDS)
    print(
        f"{'config':<{width}} {head} {'false/ph':>8} {'kept':>6} {'unmatch/ph':>10} {'dets/ph':>7} "
        f"{'cpu s/ph':>8} {'wall s/ph':>9}"
    )
    for name, t in rows:
        recall = " ".join(f"{f / max(1, n):6.3f}" for f, n in zip(t.found, t.total, strict=True))
        print(
            f"{name:<{width}} {recall} {t.false / t.photos:8.3f} {t.false_kept / t.photos:6.3f} "
            f"{t.unmatched / t.photos:10.3f} {t.detections / t.photos:7.2f} {t.cpu / t.photos:8.3f} "
            f"{t.wall / t.photos:9.3f}" + (f"  ({t.errors} unreadable)" if t.errors else "")
        )
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.misses:
        misses(args.folder, results[specs[0]])
    if args.quality:
        quality_by_size(args.folder, photos, specs[0])


if __name__ == "__main__":
    main()
