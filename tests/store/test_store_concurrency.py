"""Several writers at once: no "database is locked" on SQLite, no duplicate change numbers anywhere."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import InternalError
from sqlalchemy.orm import Session, sessionmaker

from immray.store import Dataset, File, Project, make_engine, next_change_seq, session_factory, upgrade
from immray.store.changes import current_change_seq

WRITES_PER_WORKER = 40


def write_files(url: str, dataset_id: int, worker: str, count: int) -> list[int]:
    """Read-then-write transactions, the shape every indexing request has; returns the numbers taken."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    taken = []
    try:
        for i in range(count):
            with sessions.begin() as session:
                dataset = session.get(Dataset, dataset_id)  # read first ...
                seq = next_change_seq(session, dataset.id)  # ... then write
                session.add(
                    File(dataset_id=dataset.id, uri=f"oss://b/{worker}/{i}.jpg", fingerprint=str(seq))
                )
                taken.append(seq)
    finally:
        engine.dispose()
    return taken


def _process_main(url: str, dataset_id: int, worker: str, count: int, results) -> None:
    results.put((worker, write_files(url, dataset_id, worker, count)))


def make_dataset(sessions: sessionmaker[Session], name: str = "ds") -> int:
    with sessions.begin() as session:
        dataset = Dataset(project=Project(name=f"p-{name}"), name=name)
        session.add(dataset)
        session.flush()
        return dataset.id


def test_change_numbers_count_up_per_dataset(sessions: sessionmaker[Session]) -> None:
    first, second = make_dataset(sessions, "a"), make_dataset(sessions, "b")
    with sessions.begin() as session:
        assert [next_change_seq(session, first) for _ in range(3)] == [1, 2, 3]
        assert next_change_seq(session, second) == 1
    with sessions.begin() as session:
        assert next_change_seq(session, first) == 4
        updated_at = session.get(Dataset, first).updated_at
    with sessions() as session:
        assert current_change_seq(session, first) == 4
        assert session.get(Dataset, first).updated_at == updated_at  # content changes keep UpdateTime


def test_a_rolled_back_change_number_is_handed_out_again(sessions: sessionmaker[Session]) -> None:
    dataset_id = make_dataset(sessions)
    with sessions() as session:
        assert next_change_seq(session, dataset_id) == 1
        session.rollback()
    with sessions.begin() as session:
        assert next_change_seq(session, dataset_id) == 1


def test_change_numbers_of_a_missing_dataset_are_refused(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        for ask in (next_change_seq, current_change_seq):
            with pytest.raises(LookupError, match="999"):
                ask(session, 999)


def test_two_threads_writing_at_once(
    database_url: str, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    dataset_id = make_dataset(sessions)
    results: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def run(worker: str) -> None:
        try:
            results[worker] = write_files(database_url, dataset_id, worker, WRITES_PER_WORKER)
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("t1", "t2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert_all_written(sessions, dataset_id, results, 2 * WRITES_PER_WORKER)


def test_two_processes_writing_one_sqlite_file(tmp_path) -> None:
    """Separate processes (the local worker pool) share the file through SQLite's own locking."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    dataset_id = make_dataset(sessions)

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [
        context.Process(target=_process_main, args=(url, dataset_id, name, WRITES_PER_WORKER, queue))
        for name in ("p1", "p2")
    ]
    for process in processes:
        process.start()
    results = dict(queue.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0]
    assert_all_written(sessions, dataset_id, results, 2 * WRITES_PER_WORKER)
    engine.dispose()


def test_a_read_only_session_reads_beside_an_open_writer(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    """On SQLite writers take the lock at BEGIN; readers must still get through (WAL, deferred begin)."""
    dataset_id = make_dataset(sessions)
    readers = session_factory(engine, read_only=True)
    with sessions.begin() as writer:
        next_change_seq(writer, dataset_id)  # holds the write lock until the block ends
        with readers() as reader:
            assert reader.scalar(select(Dataset.change_seq).where(Dataset.id == dataset_id)) == 0
    with readers() as reader:
        assert reader.scalar(select(Dataset.change_seq).where(Dataset.id == dataset_id)) == 1


def test_a_read_only_session_cannot_write_on_postgresql(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no read-only transactions; there read_only means a deferred BEGIN")
    with session_factory(engine, read_only=True)() as session:
        session.add(Project(name="nope"))
        with pytest.raises(InternalError, match="read-only"):
            session.commit()


def assert_all_written(
    sessions: sessionmaker[Session], dataset_id: int, results: dict[str, list[int]], expected: int
) -> None:
    taken = sorted(seq for seqs in results.values() for seq in seqs)
    assert taken == list(range(1, expected + 1))  # every number once, none lost
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(File)) == expected
        assert current_change_seq(session, dataset_id) == expected
