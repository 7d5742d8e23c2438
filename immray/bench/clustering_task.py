"""What a clustering task costs on a big dataset, phase by phase, through the real service and store.

    nice python -m immray.bench.clustering_task [--faces 100000] [--add 1000] [--rounds 3] \
        [--database-url postgresql+psycopg://.../scratch]

A dataset of ``--faces`` synthetic faces (`python -m immray.bench.synthetic`'s model, fitted on LFW by `python -m immray.bench.scale` and
cached in immray/bench/.cache/synthetic-model.npz) is written to a fresh SQLite file (or the given, empty,
scratch database), clustered by ``services.clustering_task.run_clustering`` (the function the task's job
calls), then ``--add`` new faces are indexed and clustered ``--rounds`` times. Each run prints its phases:
reading the change (and only the change's embeddings), loading the saved state, the engine, serialising
the state, and the one transaction that writes everything. The point to check: an incremental task's read
and write follow the size of the change, not of the dataset; only the state blob grows with it.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from immray.bench.synthetic import DescriptorModel
from immray.services.clustering_task import run_clustering
from immray.services.database import Database
from immray.store import ClusteringState, Dataset, Figure, File, Project, next_change_seq
from immray.store.types import utcnow

HERE = Path(__file__).resolve().parent

MODEL = HERE / ".cache" / "synthetic-model.npz"
PHASES = {1: "start", 10: "read change", 20: "load state", 60: "engine", 70: "engine (rest)", 80: "serialise"}


class TimedRun:
    """Stands in for the job context and notes when each progress step is reached."""

    task_id = None

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []

    def progress(self, percent: float) -> None:
        self.marks.append((PHASES.get(int(percent), str(percent)), time.perf_counter()))

    def finish(self, session, result=None) -> None:
        self.marks.append(("write", time.perf_counter()))

    def report(self, end: float) -> str:
        parts = []
        for (_, at), (name, then) in zip(self.marks, self.marks[1:], strict=False):
            parts.append(f"{name} {then - at:.2f}s")
        parts.append(f"commit {end - self.marks[-1][1]:.2f}s")
        parts.append(f"total {end - self.marks[0][1]:.2f}s")
        return ", ".join(parts)


def load_model() -> DescriptorModel:
    if not MODEL.is_file():
        sys.exit(
            f"{MODEL} is missing: run `python -m immray.bench.scale` ../shared/eval/dev once (it fits the model)"
        )
    data = np.load(MODEL)
    return DescriptorModel(
        data["mean"], data["between"], data["within"], data["sizes"], float(data["person_spread"])
    )


def add_faces(
    db: Database, dataset_id: int, vectors: np.ndarray, rng: np.random.Generator, first: int
) -> None:
    """Index ``vectors`` as one photo each, the way indexing stores them (one change number per batch)."""
    now = utcnow()
    for lo in range(0, len(vectors), 10_000):
        chunk = vectors[lo : lo + 10_000]
        with db.write() as session:
            seq = next_change_seq(session, dataset_id)
            files = [
                {
                    "dataset_id": dataset_id,
                    "uri": f"file:///bench/{first + lo + i}.jpg",
                    "object_id": f"bench{first + lo + i:012d}",
                    "object_status": "Indexed",
                    "figure_count": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(len(chunk))
            ]
            ids = session.scalars(insert(File).returning(File.id, sort_by_parameter_order=True), files).all()
            quality = rng.uniform(0.55, 1.0, len(chunk))
            session.execute(
                insert(Figure),
                [
                    {
                        "figure_id": f"f{first + lo + i:012d}",
                        "dataset_id": dataset_id,
                        "file_id": ids[i],
                        "left": 0,
                        "top": 0,
                        "width": 100,
                        "height": 100,
                        "quality": float(quality[i]),
                        "embedding": chunk[i].astype("<f4").tobytes(),
                        "embedding_model": "dlib-resnet-v1",
                        "embedding_dim": chunk.shape[1],
                        "cluster_state": "unavailable",
                        "change_seq": seq,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(len(chunk))
                ],
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--add", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="an EMPTY scratch database (default: a new SQLite file)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    vectors, _ = load_model().sample(args.faces + args.add * args.rounds, rng)
    vectors *= 1.42  # dlib's raw descriptors have norms near 1.42; the engine normalises them
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        db = Database.connect(url, migrate=True)
        with db.write() as session:
            dataset = Dataset(project=Project(name="bench"), name="faces", workflow_parameters=[])
            session.add(dataset)
            session.flush()
            dataset_id = dataset.id
        started = time.perf_counter()
        add_faces(db, dataset_id, vectors[: args.faces], rng, 0)
        print(f"{db.engine.dialect.name}: {args.faces} faces written in {time.perf_counter() - started:.1f}s")
        runs = [("first task", args.faces)] + [(f"+{args.add} faces", args.add)] * args.rounds
        offset = args.faces
        for number, (label, _) in enumerate(runs):
            if number:
                add_faces(db, dataset_id, vectors[offset : offset + args.add], rng, offset)
                offset += args.add
            run = TimedRun()
            result = run_clustering(db, run, dataset_id)
            end = time.perf_counter()
            with db.read() as session:
                blob = session.get(ClusteringState, dataset_id).state
            print(
                f"{label}: {run.report(end)}; created {result['ClustersCreated']}, "
                f"assigned {result['FacesAssigned']}; state {len(blob) / 2**20:.1f} MiB"
            )
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
