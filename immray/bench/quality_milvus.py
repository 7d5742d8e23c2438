"""Does Milvus cost accuracy? The engine on the same real faces with its vectors in memory, in milvus-lite
and (with ``IMMRAY_MILVUS_URI``) in a Milvus server, side by side. Prints figures only.

    python -m immray.bench.quality_milvus ../shared/eval/dev [--min-faces 3] [--increments 10]

Each backend clusters every face in one update ("batch"), then again from scratch in ``--increments``
random increments (seed 0), the way a dataset actor's tasks take a growing dataset. Printed: BCubed and
pairwise F1, clusters, and how many faces land in another cluster than in memory (the partition compared
up to the naming of clusters, so 0 means the same people).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from immray.bench.dev_faces import LabeledFaces, load_faces
from immray.clustering import Change, Engine, NewFace
from immray.clustering.metrics import score


def _faces(faces: LabeledFaces, rows: np.ndarray) -> list[NewFace]:
    return [
        NewFace(int(i), faces.embeddings[i], str(faces.paths[i]), float(faces.quality[i]))
        for i in rows.tolist()
    ]


def _store(backend: str, tag: str):
    from pymilvus import MilvusClient

    from immray.vectors.store import FaceVectors

    if backend == "milvus":
        return FaceVectors(
            MilvusClient(os.environ["IMMRAY_MILVUS_URI"]), prefix=f"qb_{tag}", backend="server"
        )
    path = Path(tempfile.mkdtemp(prefix="immray-quality-")) / "faces.db"
    return FaceVectors(MilvusClient(str(path)), prefix=f"qb_{tag}", backend="lite")


def run(faces: LabeledFaces, backend: str, min_faces: int, parts: int) -> tuple[list, float]:
    """Labels of every face after feeding them in ``parts`` random increments, and the seconds it took."""
    store = None
    if backend == "memory":
        engine = Engine()
        state = engine.new_state("bench")
    else:
        from immray.vectors.index import DatasetIndexes

        store = _store(backend, f"{parts}_{os.getpid()}")
        indexes = DatasetIndexes(store, 1, "bench")
        engine = Engine(index_factory=indexes)
        state = engine.new_state("bench")
        indexes.bind(state)
    order = np.random.default_rng(0).permutation(len(faces)) if parts > 1 else np.arange(len(faces))
    start = time.perf_counter()
    for part in np.array_split(order, parts):
        engine.update(state, Change(added=_faces(faces, part)), min_faces=min_faces)
    elapsed = time.perf_counter() - start
    labels = [state.cluster_of(i) for i in range(len(faces))]
    if store is not None:
        for name in store.collections():
            store.client.drop_collection(name)
    return labels, elapsed


def moved(labels: list, reference: list) -> int:
    """Faces whose cluster differs from the reference's, up to cluster names (each cluster is matched to
    the reference cluster most of its faces are in)."""
    pairs: dict = {}
    for mine, theirs in zip(labels, reference, strict=True):
        pairs.setdefault(mine, {}).setdefault(theirs, 0)
        pairs[mine][theirs] += 1
    best = {mine: max(counts, key=counts.get) for mine, counts in pairs.items() if mine is not None}
    return sum(
        (mine is None) != (theirs is None) or (mine is not None and best[mine] != theirs)
        for mine, theirs in zip(labels, reference, strict=True)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, nargs="?")
    ap.add_argument("--embeddings", type=Path)
    ap.add_argument("--min-faces", type=int, default=3)
    ap.add_argument("--increments", type=int, default=10)
    args = ap.parse_args()
    faces = load_faces(args.folder, args.embeddings)
    backends = ["memory", "milvus-lite"] + (["milvus"] if os.environ.get("IMMRAY_MILVUS_URI") else [])
    print(f"{len(faces)} faces ({faces.source}); MinFaces {args.min_faces}; backends: {', '.join(backends)}")
    print(
        f"{'backend':12s} {'run':>14s} {'BC-F1':>7s} {'PW-F1':>7s} {'clusters':>8s} {'moved':>6s} {'secs':>7s}"
    )
    for parts in (1, args.increments):
        reference = None
        for backend in backends:
            labels, secs = run(faces, backend, args.min_faces, parts)
            s = score(faces.identities.tolist(), labels)
            reference = labels if reference is None else reference
            name = "batch" if parts == 1 else f"{parts} increments"
            print(
                f"{backend:12s} {name:>14s} {s.bcubed_f1:7.4f} {s.pairwise_f1:7.4f} {s.n_clusters:8d} "
                f"{moved(labels, reference):6d} {secs:7.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
