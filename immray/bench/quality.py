"""How well immray groups real faces, beside the usual open-source baselines. Prints figures only.

    python -m immray.bench.quality ../shared/eval/dev [--embeddings FILE] [--increments 10] [--orders 3]
        [--split a|b|both] [--folds 5]

Embeddings come from ``immray.faces`` (cached in immray/bench/.cache/); ``--embeddings`` takes a precomputed npz
instead. For MinFaces 2 and 3 it prints immray clustering everything in one update ("batch") and the same
faces fed in 10 random increments, for a few random orders (seeds 0, 1, ...), with the gap to batch and the
stability of cluster ids: at each increment, every face clustered before it is checked, and a check fails
if its cluster id changed other than by a merge (following merge survivors). Then the baselines on
the same embeddings: Chinese whispers (0.5, as dlib runs it), DBSCAN (eps 0.5, min_samples 3), HDBSCAN
(min_cluster_size 2) and average linkage cut at 0.55, all on the raw embeddings as those tools use them.
Faces left independent (or labelled noise) count as clusters of their own.

``--split`` guards against tuning to this one set: it splits the people (not the photos) in two halves by a
hash of the identity name (sha256, even/odd first byte: fixed, independent of order and of the set's size) and
runs everything on each half alone ("a", "b", or "both" one after the other). Tune on one half, confirm on
the other.

``--folds K`` is the figure to quote (``quality_folds``): the people are split into K folds by a hash of the
name; each method (the engine and the baselines) chooses its settings from a small grid on K-1 folds and is
scored on the held-out fold, for every fold, in one batch and (the engine) in ``--increments`` parts; it prints
the mean and spread over the held-out folds, the mixed and split clusters, and how often faces of low and high
FigureClusterConfidence are wrongly placed.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np

from immray.bench.dev_faces import LabeledFaces, load_faces
from immray.clustering import Change, ClusteringConfig, Engine, NewFace  # noqa: E402
from immray.clustering.metrics import ClusteringScores, score  # noqa: E402


def new_faces(faces: LabeledFaces, indices: np.ndarray) -> list[NewFace]:
    return [
        NewFace(int(i), faces.embeddings[i], str(faces.paths[i]), float(faces.quality[i]))
        for i in indices.tolist()
    ]


def half_of(identity: str) -> str:
    """Which half of the people an identity falls in: "a" or "b", by a hash of its name."""
    return "ab"[hashlib.sha256(identity.encode()).digest()[0] & 1]


def subset(faces: LabeledFaces, keep: np.ndarray) -> LabeledFaces:
    return LabeledFaces(
        faces.paths[keep],
        faces.identities[keep],
        faces.embeddings[keep],
        faces.quality[keep],
        faces.source,
        faces.missing,
    )


def labels_of(state, n: int) -> list[str | None]:
    return [state.cluster_of(i) for i in range(n)]


def batch(faces: LabeledFaces, min_faces: int, config: ClusteringConfig) -> tuple[list, float]:
    engine = Engine(config)
    state = engine.new_state("bench")
    start = time.perf_counter()
    engine.update(state, Change(added=new_faces(faces, np.arange(len(faces)))), min_faces=min_faces)
    return labels_of(state, len(faces)), time.perf_counter() - start


def incremental(faces: LabeledFaces, min_faces: int, config: ClusteringConfig, increments: int, seed: int):
    """Feed the faces in random increments; also count cluster-id changes that were not merges."""
    engine = Engine(config)
    state = engine.new_state("bench")
    order = np.random.default_rng(seed).permutation(len(faces))
    known: dict[int, str] = {}  # face -> cluster id after the previous increment
    checked = changed = merges = 0
    elapsed = 0.0
    seen: list[int] = []
    for part in np.array_split(order, increments):
        seen.extend(part.tolist())
        start = time.perf_counter()
        result = engine.update(state, Change(added=new_faces(faces, part)), min_faces=min_faces)
        elapsed += time.perf_counter() - start
        survivor = {gone: m.survivor for m in result.merged for gone in m.absorbed}
        merges += sum(len(m.absorbed) for m in result.merged)
        for face, cid in known.items():
            while cid in survivor:
                cid = survivor[cid]
            checked += 1
            changed += state.cluster_of(face) != cid
        for i in seen:
            if (cid := state.cluster_of(i)) is not None:
                known[i] = cid
    stability = {"checked": checked, "changed": changed, "share": changed / max(1, checked), "merges": merges}
    return labels_of(state, len(faces)), elapsed, stability


def baselines(x: np.ndarray) -> dict[str, tuple[list, float]]:
    import hdbscan
    from sklearn.cluster import DBSCAN, AgglomerativeClustering

    from immray.bench.chinese_whispers import chinese_whispers

    runs = {
        "Chinese whispers 0.5": lambda: chinese_whispers(x, 0.5),
        "DBSCAN eps 0.5 min_samples 3": lambda: DBSCAN(eps=0.5, min_samples=3).fit_predict(x).tolist(),
        "HDBSCAN min_cluster_size 2": lambda: hdbscan.HDBSCAN(min_cluster_size=2).fit_predict(x).tolist(),
        "average linkage cut 0.55": lambda: (
            AgglomerativeClustering(n_clusters=None, linkage="average", distance_threshold=0.55)
            .fit_predict(x)
            .tolist()
        ),
    }
    out = {}
    for name, run in runs.items():
        start = time.perf_counter()
        labels = run()
        out[name] = (labels, time.perf_counter() - start)
    return out


HEADER = f"{'method':44s} {'BC-P':>6s} {'BC-R':>6s} {'BC-F1':>6s} {'PW-P':>6s} {'PW-R':>6s} {'PW-F1':>6s} {'clusters':>8s} {'alone1':>6s} {'secs':>6s}"


def row(name: str, s: ClusteringScores, secs: float) -> str:
    return (
        f"{name:44s} {s.bcubed_precision:6.4f} {s.bcubed_recall:6.4f} {s.bcubed_f1:6.4f} "
        f"{s.pairwise_precision:6.4f} {s.pairwise_recall:6.4f} {s.pairwise_f1:6.4f} "
        f"{s.n_clusters:8d} {s.singleton_people_alone:6.3f} {secs:6.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, nargs="?", help="evaluation folder with manifest.csv")
    ap.add_argument("--detector", help="immray.faces detector (default: the analyzer's default)")
    ap.add_argument("--embeddings", type=Path, help="precomputed npz instead of immray.faces")
    ap.add_argument("--increments", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="order of the first incremental run")
    ap.add_argument(
        "--orders", type=int, default=3, help="random orders to average the incremental runs over"
    )
    ap.add_argument("--min-faces", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument(
        "--split",
        choices=["a", "b", "both"],
        help="run on one half of the people (by a hash of the name), or on each half in turn",
    )
    ap.add_argument(
        "--folds", type=int, help="cross-validate over K folds of people (settings chosen on the other folds)"
    )
    args = ap.parse_args()
    if args.folds is not None and args.folds < 2:
        ap.error("--folds needs at least 2")

    faces = load_faces(args.folder, args.embeddings, args.detector)
    run = report if args.folds is None else folds_report
    if args.split is None:
        run(faces, args)
        return
    halves = np.array([half_of(str(i)) for i in faces.identities])
    for half in ["a", "b"] if args.split == "both" else [args.split]:
        print(f"=== half {half} of the people (--split {half}) ===")
        run(subset(faces, halves == half), args)
        print()


def folds_report(faces: LabeledFaces, args: argparse.Namespace) -> None:
    from immray.bench import quality_folds, quality_methods

    people, counts = np.unique(faces.identities, return_counts=True)
    print(f"faces: {len(faces)} of {len(people)} people ({int((counts == 1).sum())} seen once)")
    print(f"embeddings: {faces.source}; photos without a face: {faces.missing}")
    methods = [quality_methods.engine_method(ClusteringConfig(), quality_methods.ENGINE_GRID)]
    if not args.no_baselines:
        methods += quality_methods.baseline_methods()
    start = time.perf_counter()
    for m in args.min_faces:
        print()
        quality_folds.report(methods, faces, args.folds, m, args.increments, args.orders)
    print(f"\nprotocol took {time.perf_counter() - start:.0f} s")


def report(faces: LabeledFaces, args: argparse.Namespace) -> None:
    truth = faces.identities.tolist()
    people, counts = np.unique(faces.identities, return_counts=True)
    config = ClusteringConfig()
    print(f"faces: {len(faces)} of {len(people)} people ({int((counts == 1).sum())} seen once)")
    print(f"embeddings: {faces.source}; photos without a face: {faces.missing}")
    good = float((faces.quality >= config.min_good_quality).mean())
    print(f"good faces (quality >= {config.min_good_quality}): {good:.3f}; config: {config}")
    print()
    print(HEADER)
    for m in args.min_faces:
        labels, secs = batch(faces, m, config)
        print(row(f"immray MinFaces={m} batch", score(truth, labels), secs))
        batch_scores = score(truth, labels)
        runs = []
        for k in range(args.orders):
            labels, secs, stab = incremental(faces, m, config, args.increments, args.seed + k)
            s = score(truth, labels)
            runs.append((s, stab))
            print(row(f"immray MinFaces={m} {args.increments} increments #{k + 1}", s, secs))
        bc = np.array([s.bcubed_f1 for s, _ in runs])
        pw = np.array([s.pairwise_f1 for s, _ in runs])
        print(
            f"{'':4s}increments vs batch over {args.orders} orders: BCubed F1 mean {bc.mean():.4f} "
            f"(gap {batch_scores.bcubed_f1 - bc.mean():+.4f}, worst {batch_scores.bcubed_f1 - bc.min():+.4f}); "
            f"pairwise F1 mean {pw.mean():.4f} (gap {batch_scores.pairwise_f1 - pw.mean():+.4f}, "
            f"worst {batch_scores.pairwise_f1 - pw.min():+.4f})"
        )
        changed = sum(st["changed"] for _, st in runs)
        checked = sum(st["checked"] for _, st in runs)
        merges = [st["merges"] for _, st in runs]
        print(
            f"{'':4s}stability: {changed} of {checked} already-clustered face-checks changed id other than by a "
            f"merge (share {changed / max(1, checked):.4f}); automatic merges per run: {merges}"
        )
    if not args.no_baselines:
        for name, (labels, secs) in baselines(faces.embeddings).items():
            alone = [None if lab == -1 else lab for lab in labels]
            print(row(name, score(truth, alone), secs))


if __name__ == "__main__":
    main()
