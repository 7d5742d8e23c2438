"""The small query helpers that pin down API semantics: keyset paging, URI prefixes, nonces."""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from immray.store import (
    DatabaseNonceStore,
    FigureCluster,
    File,
    InvalidPageToken,
    SignatureNonce,
    SortKey,
    keyset_page,
    make_engine,
    prune_nonces,
    remember_nonce,
    session_factory,
    starts_with,
)
from immray.store.paging import encode_page_token

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

BY_FACES = SortKey("FaceCount", FigureCluster.face_count, FigureCluster.object_id, descending=True)
BY_NAME = SortKey("Name", FigureCluster.name, FigureCluster.object_id)
BY_CREATED = SortKey("CreateTime", FigureCluster.created_at, FigureCluster.object_id)


def add_clusters(sessions: sessionmaker[Session], dataset_id: int, count: int, start: int = 0) -> None:
    with sessions.begin() as session:
        for i in range(start, start + count):
            session.add(
                FigureCluster(
                    dataset_id=dataset_id,
                    object_id=f"Cluster-{i:03d}",
                    face_count=i % 4,  # many ties, so the tiebreak matters
                    name=["Bob", "alice", "", "Émile"][i % 4],
                    created_at=T0 + timedelta(seconds=i // 3, microseconds=i % 3),
                )
            )


def read_all(
    sessions: sessionmaker[Session], dataset_id: int, key: SortKey, limit: int
) -> tuple[list[str], int]:
    seen, token, pages = [], "", 0
    while True:
        with sessions() as session:
            stmt = select(FigureCluster).where(FigureCluster.dataset_id == dataset_id)
            page = keyset_page(session, stmt, key, limit=limit, token=token)
        seen += [cluster.object_id for cluster in page.items]
        pages += 1
        if not page.next_token:
            return seen, pages
        token = page.next_token


def expected_order(sessions: sessionmaker[Session], dataset_id: int, key: SortKey) -> list[str]:
    direction = (lambda c: c.desc()) if key.descending else (lambda c: c.asc())
    with sessions() as session:
        stmt = (
            select(FigureCluster.object_id)
            .where(FigureCluster.dataset_id == dataset_id)
            .order_by(direction(key.column), direction(key.tiebreak))
        )
        return list(session.scalars(stmt))


@pytest.mark.parametrize("key", [BY_FACES, BY_NAME, BY_CREATED], ids=lambda key: key.name)
def test_keyset_pages_visit_every_row_once_in_order(
    sessions: sessionmaker[Session], seed, key: SortKey
) -> None:
    dataset_id = seed.dataset()
    add_clusters(sessions, dataset_id, 23)
    add_clusters(sessions, seed.dataset("proj", "other"), 5, start=100)  # another dataset stays out
    seen, pages = read_all(sessions, dataset_id, key, limit=5)
    assert pages == 5
    assert seen == expected_order(sessions, dataset_id, key)
    assert sorted(seen) == [f"Cluster-{i:03d}" for i in range(23)]


def test_the_last_full_page_has_no_token(sessions: sessionmaker[Session], seed) -> None:
    dataset_id = seed.dataset()
    add_clusters(sessions, dataset_id, 10)
    assert read_all(sessions, dataset_id, BY_FACES, limit=5)[1] == 2
    assert read_all(sessions, dataset_id, BY_FACES, limit=10)[1] == 1


def test_rows_changing_between_pages_are_not_skipped_or_repeated(
    sessions: sessionmaker[Session], seed
) -> None:
    dataset_id = seed.dataset()
    add_clusters(sessions, dataset_id, 8)
    with sessions() as session:
        stmt = select(FigureCluster).where(FigureCluster.dataset_id == dataset_id)
        first = keyset_page(session, stmt, BY_CREATED, limit=4)
    with sessions.begin() as session:  # one row before the cursor goes, one after it arrives
        session.delete(
            session.scalars(select(FigureCluster).filter_by(object_id=first.items[0].object_id)).one()
        )
    add_clusters(sessions, dataset_id, 1, start=50)
    with sessions() as session:
        stmt = select(FigureCluster).where(FigureCluster.dataset_id == dataset_id)
        second = keyset_page(session, stmt, BY_CREATED, limit=100, token=first.next_token)
    rest = [cluster.object_id for cluster in second.items]
    assert rest == [f"Cluster-{i:03d}" for i in (4, 5, 6, 7, 50)]


def test_bad_page_tokens_are_refused_clearly(sessions: sessionmaker[Session], seed) -> None:
    dataset_id = seed.dataset()
    add_clusters(sessions, dataset_id, 6)
    with sessions() as session:
        stmt = select(FigureCluster).where(FigureCluster.dataset_id == dataset_id)
        token = keyset_page(session, stmt, BY_FACES, limit=2).next_token
        forged = encode_page_token(BY_FACES, "not a number", "Cluster-001")
        naive = base64.urlsafe_b64encode(b'{"s":"CreateTime","k":[{"t":"2026-01-01T00:00:00"},"x"]}').decode()
        for bad, why in [
            (token, "sorted by FaceCount, not Name"),
            ("%%%", "malformed"),
            ("e30", "malformed"),  # {}
            (base64.urlsafe_b64encode(b"[1,2]").decode(), "malformed"),
            (forged, "does not fit"),
        ]:
            key = BY_NAME if bad == token else BY_FACES
            with pytest.raises(InvalidPageToken, match=why):
                keyset_page(session, stmt, key, limit=2, token=bad)
        with pytest.raises(InvalidPageToken, match="without zone"):
            keyset_page(session, stmt, BY_CREATED, limit=2, token=naive)
        with pytest.raises(ValueError, match="at least one"):
            keyset_page(session, stmt, BY_FACES, limit=0)


URIS = [
    "oss://bucket/a",
    "oss://bucket/a/1.jpg",
    "oss://bucket/a%/2.jpg",
    "oss://bucket/a_/3.jpg",
    "oss://bucket/A/4.jpg",
    "oss://bucket/a-b/5.jpg",
    "oss://bucket/ab/6.jpg",
    "oss://bucket/b/7.jpg",
    "oss://bucket/é/8.jpg",
    "oss://bucket/\U0010ffff/9.jpg",
    "oss://bucket/\ud7ff/10.jpg",
    "oss://bucket/\ue000/11.jpg",
]


@pytest.mark.parametrize(
    "prefix",
    [
        "oss://bucket/a",
        "oss://bucket/a/",
        "oss://bucket/a%",
        "oss://bucket/a_",
        "oss://bucket/A",
        "oss://bucket/é",
        "oss://bucket/\U0010ffff",
        "oss://bucket/\ud7ff",
        "oss://",
        "",
        "nothing",
    ],
)
def test_starts_with_is_exact_and_case_sensitive(sessions: sessionmaker[Session], seed, prefix: str) -> None:
    dataset_id = seed.dataset()
    with sessions.begin() as session:
        session.add_all(File(dataset_id=dataset_id, uri=uri) for uri in URIS)
    with sessions() as session:
        found = session.scalars(
            select(File.uri).where(File.dataset_id == dataset_id, starts_with(File.uri, prefix))
        ).all()
    assert sorted(found) == sorted(uri for uri in URIS if uri.startswith(prefix))


def test_a_nonce_is_accepted_once(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        assert remember_nonce(session, "n1", T0 + timedelta(minutes=15), now=T0) is True
        assert remember_nonce(session, "n2", T0 + timedelta(minutes=15), now=T0) is True
    with sessions.begin() as session:
        assert (
            remember_nonce(session, "n1", T0 + timedelta(minutes=16), now=T0 + timedelta(minutes=1)) is False
        )


def test_an_expired_nonce_may_come_back_and_is_pruned(sessions: sessionmaker[Session]) -> None:
    later = T0 + timedelta(minutes=20)
    with sessions.begin() as session:
        remember_nonce(session, "old", T0 + timedelta(minutes=15), now=T0)
        remember_nonce(session, "fresh", later + timedelta(minutes=15), now=later)
    with sessions.begin() as session:
        assert remember_nonce(session, "old", later + timedelta(minutes=15), now=later) is True
        assert remember_nonce(session, "old", later + timedelta(minutes=15), now=later) is False
    with sessions.begin() as session:
        assert prune_nonces(session, now=later + timedelta(minutes=15)) == 2
        assert session.scalar(select(func.count()).select_from(SignatureNonce)) == 0


def test_replays_are_caught_across_processes(database_url: str, engine: Engine) -> None:
    """Two API processes (two engines) racing with one nonce: exactly one accepts it."""
    clock = lambda: T0  # noqa: E731
    other = make_engine(database_url)
    stores = [
        DatabaseNonceStore(session_factory(engine), clock),
        DatabaseNonceStore(session_factory(other), clock),
    ]
    try:
        for round_ in range(20):
            barrier = threading.Barrier(len(stores))
            outcomes: list[bool] = []

            def check(
                store: DatabaseNonceStore, nonce: str = f"race-{round_}", barrier=barrier, outcomes=outcomes
            ):
                barrier.wait()
                outcomes.append(store.seen_before(nonce, T0 + timedelta(minutes=15)))

            threads = [threading.Thread(target=check, args=(store,)) for store in stores]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(outcomes) == [False, True]
        assert stores[1].seen_before("race-0", T0 + timedelta(minutes=15)) is True
    finally:
        other.dispose()
