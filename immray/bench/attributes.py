"""How good and how costly the face attributes are: ``python -m immray.bench.attributes DIR``.

``DIR`` holds photos and a manifest (``--manifest``, default ``DIR/attributes.csv``) with the columns
``relative_path,age,gender[,expression]``; empty cells are unknown. A folder with no such manifest but the
eval folders' ``manifest.csv`` (``relative_path,identity``, e.g. ``../shared/eval/dev``, LFW) is labeled from
``PUBLIC_FIGURES``: the most photographed people of ``dev/``, whose gender and birth year are public record;
their age label is 2002 minus the birth year (LFW's news photos date from 2002-2003), so each label may be a
year or two off, and no child is among them. Each photo is analysed (detection
``fast`` unless ``--detector``), its labeled face is the one nearest the centre (as in the eval folders), and
the attributes are compared with the labels: mean absolute age error and gender accuracy overall and by age
group (0-12, 13-19, 20-59, 60+), expression accuracy where labeled (face-api's words or IMM's).

``--calibrate`` fits AgeSD (``immray.faces.age_error``) to the labeled ages: the people (a photo's folder)
are split into ``--folds`` folds by a hash of the name (``quality_folds.fold_of``), the line is fitted on
the other folds and checked on each held-out one (how often the label lies within one and two AgeSD: 0.68
and 0.95 for a calibrated normal error), then fitted on all of them and printed as the ``AGE_ERROR`` to ship.

The CPU cost per face is measured on the crops of the photos analysed: the two attribute networks alone, in
batches of ``--batch`` faces on ``--threads`` torch threads, best of three runs. Without a manifest (or with
``--cost-only``) it only measures the cost, on every photo under DIR.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from immray.bench.quality_folds import fold_of
from immray.faces import AnalyzerConfig, ImageError, age_error, decode_image, get_analyzer
from immray.faces.attributes import IMM_EMOTIONS, get_attribute_estimator
from immray.faces.faceapi import crop_box, face_input

#: LFW identity -> (gender, birth year), for the people with 15 or more photos in ``eval/dev``.
PUBLIC_FIGURES = {
    "Ariel_Sharon": ("male", 1928), "Arnold_Schwarzenegger": ("male", 1947), "Colin_Powell": ("male", 1937),
    "Donald_Rumsfeld": ("male", 1932), "George_W_Bush": ("male", 1946), "Gerhard_Schroeder": ("male", 1944),
    "Gloria_Macapagal_Arroyo": ("female", 1947), "Hugo_Chavez": ("male", 1954), "Jacques_Chirac": ("male", 1932),
    "Jean_Chretien": ("male", 1934), "Jennifer_Capriati": ("female", 1976), "John_Ashcroft": ("male", 1942),
    "Junichiro_Koizumi": ("male", 1942), "Laura_Bush": ("female", 1946), "Lleyton_Hewitt": ("male", 1981),
    "Luiz_Inacio_Lula_da_Silva": ("male", 1945), "Alejandro_Toledo": ("male", 1946), "Hans_Blix": ("male", 1928),
    "Andre_Agassi": ("male", 1970), "Alvaro_Uribe": ("male", 1952), "Megawati_Sukarnoputri": ("female", 1947),
    "Kofi_Annan": ("male", 1938), "David_Beckham": ("male", 1975), "John_Negroponte": ("male", 1939),
    "Guillermo_Coria": ("male", 1982), "Bill_Clinton": ("male", 1946), "Mahmoud_Abbas": ("male", 1935),
    "Jack_Straw": ("male", 1946), "Juan_Carlos_Ferrero": ("male", 1980), "Gray_Davis": ("male", 1942),
    "Atal_Bihari_Vajpayee": ("male", 1924), "Jeremy_Greenstock": ("male", 1943), "Jose_Maria_Aznar": ("male", 1953),
    "George_Robertson": ("male", 1946), "Hamid_Karzai": ("male", 1957), "Lindsay_Davenport": ("female", 1976),
    "Amelie_Mauresmo": ("female", 1979), "Carlos_Menem": ("male", 1930), "Jennifer_Aniston": ("female", 1969),
    "Jennifer_Lopez": ("female", 1969), "Angelina_Jolie": ("female", 1975), "Igor_Ivanov": ("male", 1945),
    "Jiang_Zemin": ("male", 1926), "Michael_Bloomberg": ("male", 1942), "Halle_Berry": ("female", 1966),
    "Meryl_Streep": ("female", 1949), "Hillary_Clinton": ("female", 1947),
}  # fmt: skip
PHOTO_YEAR = 2002
GROUPS = (("0-12", 0, 12), ("13-19", 13, 19), ("20-59", 20, 59), ("60+", 60, 200))
PHOTOS = (".jpg", ".jpeg", ".png", ".webp")


@dataclass
class Row:
    path: str
    age: float | None
    gender: str | None
    expression: str | None


def read_manifest(path: Path) -> list[Row]:
    with path.open(newline="") as fh:
        return [
            Row(
                r["relative_path"],
                float(r["age"]) if (r.get("age") or "").strip() else None,
                (r.get("gender") or "").strip().lower() or None,
                IMM_EMOTIONS.get((r.get("expression") or "").strip(), (r.get("expression") or "").strip())
                or None,
            )
            for r in csv.DictReader(fh)
        ]


def public_figure_rows(manifest: Path) -> list[Row]:
    """Labels for the photos of ``PUBLIC_FIGURES`` in an eval folder's ``manifest.csv``."""
    with manifest.open(newline="") as fh:
        return [
            Row(r["relative_path"], float(PHOTO_YEAR - born), gender, None)
            for r in csv.DictReader(fh)
            if r["identity"] in PUBLIC_FIGURES
            for gender, born in [PUBLIC_FIGURES[r["identity"]]]
        ]


def _central(faces, width: int, height: int):
    return min(
        faces,
        key=lambda f: (
            (f.boundary.left + f.boundary.width / 2 - width / 2) ** 2
            + (f.boundary.top + f.boundary.height / 2 - height / 2) ** 2
        ),
    )


def accuracy(rows: list[Row], found: dict[str, object]) -> None:
    ages, genders, expressions = [], [], []
    for row in rows:
        face = found.get(row.path)
        if face is None:
            continue
        if row.age is not None:
            ages.append((row.age, face.attributes.age))
        if row.gender:
            genders.append((row.age, row.gender == face.attributes.gender))
        if row.expression:
            expressions.append(row.expression == face.attributes.emotion)
    missing = sum(1 for row in rows if found.get(row.path) is None)
    print(f"photos {len(rows)}, no face found in {missing}")
    if ages:
        err = np.abs(np.array([a - b for a, b in ages]))
        print(
            f"age: mean absolute error {err.mean():.2f} years over {len(err)} faces (median {np.median(err):.1f})"
        )
        bias = np.mean([b - a for a, b in ages])
        print(f"age: mean (estimate - label) {bias:+.2f} years")
    if genders:
        print(f"gender: accuracy {np.mean([ok for _, ok in genders]):.3f} over {len(genders)} faces")
    for name, low, high in GROUPS:
        in_group = [(a, b) for a, b in ages if low <= a <= high]
        g = [ok for a, ok in genders if a is not None and low <= a <= high]
        if in_group or g:
            mae = np.mean([abs(a - b) for a, b in in_group]) if in_group else float("nan")
            acc = np.mean(g) if g else float("nan")
            print(
                f"  {name:>6}: {len(in_group):4d} aged faces, MAE {mae:6.2f}; gender accuracy {acc:.3f} ({len(g)})"
            )
    if expressions:
        print(f"expression: accuracy {np.mean(expressions):.3f} over {len(expressions)} faces")


def calibrate(rows: list[Row], found: dict[str, object], folds: int) -> None:
    """Fit AgeSD on the other folds' people, check it on each held-out fold, then fit it on everyone."""
    aged = [(row.path, float(face.attributes.age), row.age) for row in rows
            if row.age is not None and (face := found.get(row.path)) is not None]  # fmt: skip
    if len(aged) < 10 * folds:
        print(f"AgeSD: only {len(aged)} labeled ages, too few to calibrate in {folds} folds")
        return
    fold = np.array([fold_of(str(Path(path).parent), folds) for path, _, _ in aged])
    est = np.array([e for _, e, _ in aged])
    label = np.array([a for _, _, a in aged])
    hits1 = hits2 = total = 0
    for f in range(folds):
        train, test = fold != f, fold == f
        if not test.any() or train.sum() < 10:
            continue
        model = age_error.fit(est[train], label[train])
        c1, c2, n = age_error.coverage(model, est[test].tolist(), label[test].tolist())
        if n:
            print(f"  AgeSD fold {f}: {n} faces, within 1 SD {c1:.3f}, within 2 SD {c2:.3f}")
            hits1, hits2, total = hits1 + c1 * n, hits2 + c2 * n, total + n
    if total:
        print(
            f"AgeSD held out ({folds} folds of people): within 1 SD {hits1 / total:.3f}, "
            f"within 2 SD {hits2 / total:.3f} over {total} faces (calibrated normal: 0.683 / 0.954)"
        )
    model = age_error.fit(est, label)
    sds = [model.sd(e) for e in est]
    given = [s for s in sds if s is not None]
    print(
        f"AgeSD fitted on all {len(est)} faces: AgeError(intercept={model.intercept:.2f}, "
        f"slope={model.slope:.4f}, lowest={model.lowest:.0f}, highest={model.highest:.0f}); "
        f"median AgeSD {np.median(given):.1f} years"
    )


def cost(crops: list[np.ndarray], batch: int, threads: int) -> None:
    torch.set_num_threads(threads)
    estimator = get_attribute_estimator("cpu")
    x = torch.from_numpy(np.stack(crops))
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        with torch.inference_mode():
            for i in range(0, len(x), batch):
                estimator.age_gender(x[i : i + batch])
                estimator.expression(x[i : i + batch])
        best = min(best, time.process_time() - start)
    print(
        f"cost: {1000 * best / len(x):.2f} ms of CPU per face for both networks "
        f"({len(x)} faces, batches of {batch}, {threads} torch thread(s), best of 3)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--manifest", type=Path, help="default: FOLDER/attributes.csv")
    parser.add_argument("--detector", default="fast")
    parser.add_argument("--limit", type=int, default=0, help="at most this many photos (0: all)")
    parser.add_argument("--every", type=int, default=1, help="take every Nth photo of the manifest")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cost-only", action="store_true")
    parser.add_argument("--calibrate", action="store_true", help="fit AgeSD to the labeled ages (see above)")
    parser.add_argument("--folds", type=int, default=5, help="folds of people for --calibrate")
    args = parser.parse_args(argv)
    manifest = args.manifest or args.folder / "attributes.csv"
    if manifest.is_file() and not args.cost_only:
        rows = read_manifest(manifest)
    elif (args.folder / "manifest.csv").is_file() and not args.cost_only:
        rows = public_figure_rows(args.folder / "manifest.csv")
    else:
        rows = [
            Row(str(p.relative_to(args.folder)), None, None, None)
            for p in sorted(args.folder.rglob("*"))
            if p.suffix.lower() in PHOTOS
        ]
    rows = rows[:: args.every]
    if args.limit:
        rows = rows[: args.limit]
    analyzer = get_analyzer(AnalyzerConfig(detector=args.detector))
    found: dict[str, object] = {}
    crops: list[np.ndarray] = []
    for start in range(0, len(rows), 16):  # the analyzer's batches, as an analysis replica runs them
        chunk = rows[start : start + 16]
        decoded, kept = [], []
        for row in chunk:
            try:
                decoded.append(decode_image((args.folder / row.path).read_bytes()))
                kept.append(row)
            except (OSError, ImageError):
                continue
        for row, image, faces in zip(kept, decoded, analyzer.faces_batch(decoded), strict=True):
            if not faces:
                continue
            face = _central(faces, image.width, image.height)
            found[row.path] = face
            b = face.boundary
            box = crop_box((b.left, b.top, b.left + b.width, b.top + b.height), image.width, image.height)
            if box is not None:
                crops.append(face_input(image.pixels, box))
        print(f"{min(start + 16, len(rows))}/{len(rows)} photos analysed", file=sys.stderr, flush=True)
    if any(r.age is not None or r.gender or r.expression for r in rows):
        accuracy(rows, found)
        if args.calibrate:
            calibrate(rows, found, args.folds)
    else:
        ages = [f.attributes.age for f in found.values()]
        males = sum(f.attributes.gender == "male" for f in found.values())
        print(
            f"{len(found)} faces (no labels): ages {np.percentile(ages, [5, 50, 95])} (5/50/95%), {males} male"
        )
    if crops:
        cost(crops, args.batch, args.threads)


if __name__ == "__main__":
    main()
