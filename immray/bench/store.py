"""Store throughput: what the indexing and clustering paths ask of the database, on SQLite or PostgreSQL.

    python -m immray.bench.store                                  # a temporary SQLite file
    python -m immray.bench.store --url postgresql://postgres@127.0.0.1:5432/scratch --figures 50000

Measures: saving faces (files + figures with 128-d embeddings, one transaction per batch), loading every
embedding of a dataset into one float32 matrix (what a clustering task starts with), a deep keyset page of
clusters sorted by FaceCount, and small read-then-write transactions from several threads at once (the
shape of indexing requests). On PostgreSQL, give the URL of a scratch database: its tables are dropped.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select

from immray.store import (
    Base,
    Dataset,
    Figure,
    FigureCluster,
    File,
    Project,
    SortKey,
    keyset_page,
    make_engine,
    next_change_seq,
    session_factory,
    upgrade,
)

DIM = 128


def reset(engine) -> None:
    with engine.begin() as connection:
        Base.metadata.drop_all(connection)
        connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    upgrade(engine)


def save_faces(sessions, dataset_id: int, figures: int, batch: int) -> float:
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for start in range(0, figures, batch):
        with sessions.begin() as session:
            seq = next_change_seq(session, dataset_id)
            for i in range(start, min(start + batch, figures)):
                file = File(dataset_id=dataset_id, uri=f"oss://bench/{i:08d}.jpg", object_status="Indexed")
                figure = Figure(
                    dataset_id=dataset_id, file=file, left=0, top=0, width=90, height=90, change_seq=seq
                )
                figure.set_vector(rng.standard_normal(DIM), model="bench")
                session.add(figure)
    return time.perf_counter() - started


def load_embeddings(sessions, dataset_id: int) -> tuple[float, tuple[int, int]]:
    started = time.perf_counter()
    with sessions() as session:
        blobs = session.scalars(select(Figure.embedding).where(Figure.dataset_id == dataset_id)).all()
    matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), DIM)
    return time.perf_counter() - started, matrix.shape


def deep_page(sessions, dataset_id: int, clusters: int, repeats: int) -> float:
    with sessions.begin() as session:
        for i in range(clusters):
            session.add(FigureCluster(dataset_id=dataset_id, face_count=i % 97, image_count=i % 13))
    key = SortKey("FaceCount", FigureCluster.face_count, FigureCluster.object_id, descending=True)
    stmt = select(FigureCluster).where(FigureCluster.dataset_id == dataset_id)
    with sessions() as session:  # walk to the middle, then time the next page
        token = ""
        for _ in range(clusters // 200):
            token = keyset_page(session, stmt, key, limit=100, token=token).next_token
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            keyset_page(session, stmt, key, limit=100, token=token)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def concurrent_writes(sessions, dataset_id: int, threads: int, per_thread: int) -> float:
    def work(worker: int) -> None:
        for i in range(per_thread):
            with sessions.begin() as session:
                session.get(Dataset, dataset_id)
                seq = next_change_seq(session, dataset_id)
                session.add(
                    File(dataset_id=dataset_id, uri=f"oss://bench/w{worker}/{i}", fingerprint=str(seq))
                )

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--figures", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="figures per transaction")
    parser.add_argument("--clusters", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--writes", type=int, default=200, help="transactions per thread")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = make_engine(url)
        reset(engine)
        sessions = session_factory(engine)
        with sessions.begin() as session:
            dataset = Dataset(project=Project(name="bench"), name="bench")
            session.add(dataset)
            session.flush()
            dataset_id = dataset.id
        print(f"backend: {engine.dialect.name} ({engine.url.render_as_string(hide_password=True)})")

        seconds = save_faces(sessions, dataset_id, args.figures, args.batch)
        print(
            f"save faces:        {args.figures / seconds:9.0f} faces/s  ({args.figures} in {seconds:.2f} s)"
        )
        seconds, shape = load_embeddings(sessions, dataset_id)
        print(
            f"load embeddings:   {shape[0] / seconds:9.0f} faces/s  ({shape[0]}x{shape[1]} in {seconds:.3f} s)"
        )
        seconds = deep_page(sessions, dataset_id, args.clusters, repeats=20)
        print(
            f"deep cluster page: {seconds * 1000:9.2f} ms       (100 of {args.clusters}, sorted by FaceCount)"
        )
        total = args.threads * args.writes
        seconds = concurrent_writes(sessions, dataset_id, args.threads, args.writes)
        print(
            f"small writes:      {total / seconds:9.0f} txn/s    ({args.threads} threads, {total} in {seconds:.2f} s)"
        )
        if args.url:
            reset(engine)
        engine.dispose()


if __name__ == "__main__":
    main()
