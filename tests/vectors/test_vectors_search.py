"""SearchImageFigureCluster's lookup goes through Milvus: the nearest faces come from Milvus, the distances
from the store's embeddings, and the answer is the one the whole dataset read from the store gives."""

from __future__ import annotations

import numpy as np
import pytest
from dataset_kit import MODEL, DatasetKit
from faces_kit import people_faces

from immray.services.database import Database
from immray.services.datasets import find_dataset
from immray.services.face_search import clustered_faces, nearest_cluster, nearest_clusters
from immray.vectors import attach, open_store, sync


@pytest.fixture
def db(milvus_settings) -> Database:
    milvus_settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database.connect(milvus_settings.resolved_database_url, migrate=True)
    attach(database, milvus_settings)
    yield database
    database.close()


def _clustered_kit(db, settings, seed: int) -> tuple[DatasetKit, np.ndarray, list[int]]:
    kit = DatasetKit(db, settings)
    raw, who = people_faces(8, 6, seed=seed)
    for lo in range(0, len(raw), 3):
        kit.add_photo(raw[lo : lo + 3])
    kit.cluster()
    return kit, raw, who


def _whole_dataset_answers(db, kit: DatasetKit, queries: np.ndarray) -> list[tuple[str, float] | None]:
    with db.read() as session:
        gallery = clustered_faces(session, find_dataset(session, kit.project, kit.name), MODEL)
    out = []
    for query in queries:
        best = nearest_cluster(gallery, query)
        out.append(None if best is None else (gallery.ids[best[0]], best[1]))
    return out


def _queries(raw: np.ndarray, seed: int) -> np.ndarray:
    """New faces of the dataset's people (noisy copies of stored ones) and two strangers."""
    rng = np.random.default_rng(seed)
    near = raw[::5] + rng.standard_normal((len(raw[::5]), raw.shape[1])).astype(np.float32) * 0.05
    strangers = rng.standard_normal((2, raw.shape[1])).astype(np.float32) * 3.0
    return np.concatenate([near, strangers]).astype(np.float32)


@pytest.mark.parametrize("candidates", [2, 64])
def test_the_milvus_lookup_answers_what_the_whole_dataset_answers(db, milvus_settings, candidates):
    kit, raw, _ = _clustered_kit(db, milvus_settings, seed=21)
    queries = _queries(raw, seed=22)
    expected = _whole_dataset_answers(db, kit, queries)
    assert sum(e is not None for e in expected) == len(queries)  # every query has a nearest cluster
    got = nearest_clusters(db, kit.project, kit.name, MODEL, list(queries), candidates=candidates)
    assert [g[0] for g in got] == [e[0] for e in expected]
    np.testing.assert_allclose([g[1] for g in got], [e[1] for e in expected], rtol=1e-5)


def test_the_lookup_reads_milvus_not_a_copy(db, milvus_settings):
    """A person whose vectors are gone from Milvus is not found by the lookup (drift), until ``rebuild``
    restores them from the store."""
    store = open_store(milvus_settings)
    kit, raw, who = _clustered_kit(db, milvus_settings, seed=23)
    query = raw[0] + np.float32(0.01)
    ((person, _),) = nearest_clusters(db, kit.project, kit.name, MODEL, [query])
    assignments = kit.assignments()
    theirs = [face for face, cluster in assignments.items() if cluster == person]
    store.delete_keys(theirs)
    ((other, _),) = nearest_clusters(db, kit.project, kit.name, MODEL, [query])
    assert other != person

    sync.rebuild(db, store, kit.dataset_id)
    assert nearest_clusters(db, kit.project, kit.name, MODEL, [query])[0][0] == person
