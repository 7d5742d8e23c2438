"""The held-out folds through the API: each fold of people indexed, clustered and read back as its own dataset.

    mkdir -p /tmp/folds && immray serve --root /tmp/folds &
    python -m immray.bench.api_folds ../shared/eval/dev --out /tmp/folds [--folds 5] [--endpoint HOST:PORT]

``python -m immray.bench.quality --folds 5`` scores the engine on each fold of people (split by a hash of the
name, ``quality_folds.fold_of``) with settings chosen on the other folds. This runs the same folds through the
server as a user would: it copies each fold's photos (and a manifest of them) to ``OUT/fold-K``, indexes
``OUT/fold-K/images`` into the dataset ``folds-K`` with ``immray index``, clusters it with ``immray
cluster``, reads the people back with BatchGetFileMeta (``api_quality.measure``) and prints each fold's
figures, their mean and spread. The server clusters with its shipped settings, which the fold protocol chose
(their evidence is in ``immray/clustering/config.py``), and it also clusters the unlabeled background faces
of the photos, which the engine's figures leave out. Prints figures only.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
from pathlib import Path

from immray.bench.api_quality import ApiScores, measure_or_exit
from immray.bench.dev_faces import read_manifest
from immray.bench.quality_folds import fold_of, spread


def prepare(folder: Path, out: Path, k: int) -> list[Path]:
    """``out/fold-K`` with fold K's photos and manifest (kept when already there)."""
    rows = read_manifest(folder)
    folds = [out / f"fold-{i}" for i in range(k)]
    for i, target in enumerate(folds):
        mine = [(path, who) for path, who in rows if fold_of(who, k) == i]
        manifest = target / "manifest.csv"
        if manifest.is_file():
            continue
        for path, _ in mine:
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / path, target / path)
        with manifest.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["relative_path", "identity"])
            writer.writerows(mine)
    return folds


def _immray(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "immray.cli", *args], check=False)
    if done.returncode:
        sys.exit(f"error: immray {' '.join(args)} exited {done.returncode}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="an evaluation folder with manifest.csv and images/")
    parser.add_argument("--out", type=Path, required=True, help="a folder under one of the server's --root")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--project", default="immray")
    parser.add_argument("--dataset-prefix", default="folds")
    parser.add_argument("--endpoint", help="HOST:PORT (default: the one the saved key is for)")
    parser.add_argument("--data-dir", type=Path, help="where the server saved its key")
    parser.add_argument("--score-only", action="store_true", help="the folds are indexed and clustered")
    args = parser.parse_args()

    common = ["--project", args.project]
    if args.endpoint:
        common += ["--endpoint", args.endpoint]
    if args.data_dir:
        common += ["--data-dir", str(args.data_dir)]
    results: list[ApiScores] = []
    for i, fold in enumerate(prepare(args.folder, args.out.absolute(), args.folds)):
        dataset = f"{args.dataset_prefix}-{i}"
        if not args.score_only:
            _immray("index", str(fold / "images"), "--dataset", dataset, *common)
            _immray("cluster", "--dataset", dataset, *common)
        got = measure_or_exit(fold, args.project, dataset, args.data_dir, args.endpoint, f"fold {i}: ")
        s = got.scores
        print(
            f"fold {i}: {s.n_faces} labeled faces ({got.no_face} photos without a face), {got.people} people; "
            f"pairwise F1 {s.pairwise_f1:.4f}, BCubed F1 {s.bcubed_f1:.4f}, "
            f"one-photo people alone {s.singleton_people_alone:.3f}",
            flush=True,
        )
        results.append(got)
    print(f"{args.folds} held-out folds through the API:")
    print(f"  pairwise F1 {spread([r.scores.pairwise_f1 for r in results])}")
    print(f"  BCubed F1   {spread([r.scores.bcubed_f1 for r in results])}")
    print(f"  one-photo people left alone {spread([r.scores.singleton_people_alone for r in results])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
