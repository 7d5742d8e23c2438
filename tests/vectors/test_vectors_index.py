"""MilvusIndex answers like the exact in-memory index, and the engine on it forms the same clusters."""

from __future__ import annotations

import numpy as np
import pytest
from faces_kit import people_faces

from immray.clustering import Change, Engine, NewFace
from immray.clustering.neighbours import ExactIndex, normalise
from immray.vectors import index as milvus_index
from immray.vectors import open_store
from immray.vectors.index import DatasetIndexes


class _Rows:
    """Stands in for a state: rows are face keys + 1000."""

    face_ids = list(range(1000, 1200))


def _bound_index(milvus_settings, dataset_id: int, faces):
    """A store, the Milvus index of ``dataset_id`` over ``_Rows``, and ``faces``' normalised vectors."""
    store = open_store(milvus_settings)
    indexes = DatasetIndexes(store, dataset_id, "test-model")
    indexes.bind(_Rows)
    return store, indexes(128), normalise(faces[0])


def test_search_matches_the_exact_index_despite_faces_it_does_not_hold(milvus_settings):
    store, index, vectors = _bound_index(milvus_settings, 3, people_faces(20, 6, seed=3))
    # Faces of the dataset Milvus holds but the index does not (indexed since the task read its changes):
    store.upsert(index.collection, 3, list(range(1100, 1200)), np.repeat(vectors[:1], 100, axis=0))
    exact = ExactIndex(128)
    rows = np.arange(0, 100)
    index.add(rows, vectors[:100])
    exact.add(rows, vectors[:100])
    index.remove(np.array([5, 6]))
    exact.remove(np.array([5, 6]))
    assert index.ntotal == exact.ntotal == 98
    sims, ids = index.search(vectors, 4)
    esims, eids = exact.search(vectors, 4)
    assert np.array_equal(ids, eids)
    assert np.allclose(sims, esims, atol=1e-5)
    assert np.array_equal(index.vectors(np.array([9, 2])), vectors[[9, 2]])


def _engine_run(engine: Engine, indexes: DatasetIndexes | None, raw: np.ndarray) -> dict[int, str | None]:
    state = engine.new_state("dataset:1")
    if indexes is not None:
        indexes.bind(state)
    half = len(raw) // 2
    for lo, hi in ((0, half), (half, len(raw))):  # a first task, then faces added to it
        faces = [NewFace(i, raw[i], i // 2, 0.9) for i in range(lo, hi)]
        engine.update(state, Change(added=faces), min_faces=2)
    return {i: state.cluster_of(i) for i in range(len(raw))}


def test_the_engine_forms_the_same_clusters_on_milvus_as_in_memory(milvus_settings):
    raw, who = people_faces(15, 8, seed=4)
    in_memory = _engine_run(Engine(), None, raw)
    indexes = DatasetIndexes(open_store(milvus_settings), 1, "test-model")
    on_milvus = _engine_run(Engine(index_factory=indexes), indexes, raw)
    assert on_milvus == in_memory
    assert len({c for c in in_memory.values() if c}) >= 10  # it did cluster


def test_a_cache_smaller_than_the_dataset_forgets_the_oldest_vectors_and_the_clusters_stay_the_same(
    milvus_settings, monkeypatch
):
    raw, _ = people_faces(15, 8, seed=4)
    in_memory = _engine_run(Engine(), None, raw)
    monkeypatch.setattr(milvus_index, "CACHE_ROWS", 25)  # a fifth of the faces: most reads go to Milvus
    indexes = DatasetIndexes(open_store(milvus_settings), 2, "test-model")
    made = []
    engine = Engine(index_factory=lambda dim: made.append(indexes(dim)) or made[-1])
    on_milvus = _engine_run(engine, indexes, raw)
    assert on_milvus == in_memory
    (index,) = made
    assert 0 < len(index._cache) <= 25
    rows = np.arange(len(raw))
    assert np.allclose(index.vectors(rows), normalise(raw), atol=1e-6)  # the forgotten ones read back
    assert len(index._cache) <= 25
    index._cache.clear()
    index.vectors(rows[:25])
    index.vectors(rows[25:30])  # five more: the five read longest ago go
    assert list(index._cache) == index._keys(rows[5:30])


def test_a_bulk_search_reads_the_vectors_from_milvus_and_answers_alike(milvus_settings, monkeypatch):
    store, index, vectors = _bound_index(milvus_settings, 4, people_faces(10, 5, seed=10))
    index.add(np.arange(50), vectors)
    by_milvus = index.search(vectors, 3)
    monkeypatch.setattr(milvus_index, "BULK_QUERIES", 1)  # every search takes the bulk path
    index._cache.clear()  # so the bulk path reads the vectors back from Milvus
    by_bulk = index.search(vectors, 3)
    assert np.array_equal(by_bulk[1], by_milvus[1])
    assert np.allclose(by_bulk[0], by_milvus[0], atol=1e-5)


def test_a_large_bulk_search_goes_through_the_inverted_lists_and_finds_the_same_neighbours(
    milvus_settings, monkeypatch
):
    """Past EXACT_MAX faces the bulk path searches an IVF-Flat index; probing every list it is exact."""
    from immray.vectors import bulk

    store, index, vectors = _bound_index(milvus_settings, 5, people_faces(20, 6, seed=11))
    index.add(np.arange(120), vectors)
    exact = ExactIndex(128)
    exact.add(np.arange(120), vectors)
    monkeypatch.setattr(milvus_index, "BULK_QUERIES", 1)
    monkeypatch.setattr(bulk, "EXACT_MAX", 50)
    monkeypatch.setattr(bulk, "LIST_SIZE", 20)  # 6 lists, all of them probed (NPROBE 12)
    index._cache.clear()
    sims, ids = index.search(vectors, 4)
    assert isinstance(index._bulk, bulk.IvfIndex)
    esims, eids = exact.search(vectors, 4)
    assert np.array_equal(ids, eids)
    assert np.allclose(sims, esims, atol=1e-5)


def test_after_a_bulk_pass_its_index_alone_holds_the_vectors_and_still_answers_them_after_a_change(
    milvus_settings, monkeypatch
):
    store, index, vectors = _bound_index(milvus_settings, 6, people_faces(20, 6, seed=12))
    index.add(np.arange(100), vectors[:100])
    monkeypatch.setattr(milvus_index, "BULK_QUERIES", 1)
    index.search(vectors[:100], 3)  # the bulk pass
    assert len(index._cache) == 0  # one copy of the vectors: the bulk index's
    reads = []
    get_batches = store.get_batches
    monkeypatch.setattr(store, "get_batches", lambda *a, **k: reads.append(a[1]) or get_batches(*a, **k))
    assert np.array_equal(index.vectors(np.arange(100)), vectors[:100])
    assert reads == []  # answered from the bulk index, not Milvus
    # A change of rows retires it from searching; it keeps answering the rows that did not change.
    index.add(np.array([5, 100, 101]), vectors[[110, 100, 101]])  # row 5 re-added with another vector
    assert index._bulk is None
    index._cache.clear()
    reads.clear()  # (the add's check of its faces read them)
    got = index.vectors(np.array([0, 5, 100, 99]))
    assert np.array_equal(got, vectors[[0, 110, 100, 99]])
    assert sorted(k for keys in reads for k in keys) == [1005, 1100]  # only the changed rows from Milvus
    index.remove(np.array([7]))
    with pytest.raises(KeyError):
        index.vectors(np.array([7]))
