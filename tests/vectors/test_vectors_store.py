"""The face vector store on both backends: idempotent upserts, reads, filtered batched search, deletes."""

from __future__ import annotations

import numpy as np
from faces_kit import people_faces

from immray.clustering.neighbours import ExactIndex, normalise
from immray.vectors import open_store


def test_upserts_are_idempotent_and_read_back_bit_for_bit(milvus_settings):
    store = open_store(milvus_settings)
    raw, _ = people_faces(5, 4)
    vectors = normalise(raw)
    coll = store.collection("test-model", 128)
    keys = list(range(100, 120))
    store.upsert(coll, 1, keys, vectors)
    store.upsert(coll, 1, keys, vectors)  # a retry: same keys, no duplicates
    assert store.count(1) == 20
    got = store.get(coll, keys)
    assert all(np.array_equal(got[k], vectors[i]) for i, k in enumerate(keys))
    assert store.ensure(coll, 1, keys, vectors) == 0  # nothing missing or stale
    changed = vectors.copy()
    changed[3] = vectors[4]
    assert store.ensure(coll, 1, keys, changed) == 1  # only the stale one is written
    assert np.array_equal(store.get(coll, [103])[103], vectors[4])


def test_ensure_counts_a_key_held_under_another_dataset_as_missing(milvus_settings):
    store = open_store(milvus_settings)
    raw, _ = people_faces(5, 4, seed=2)
    vectors = normalise(raw)
    coll = store.collection("test-model", 128)
    keys = list(range(200, 220))
    store.upsert(coll, 1, keys[:15], vectors[:15])
    store.upsert(coll, 2, keys[15:], vectors[15:])  # the same keys held under another dataset: not ours
    changed = vectors.copy()
    changed[3] = vectors[4]
    assert store.ensure(coll, 1, keys, changed) == 6  # one stale, five missing from this dataset
    assert store.ensure(coll, 1, keys, changed) == 0
    assert np.array_equal(store.get(coll, [203])[203], vectors[4])
    assert store.count(1) == 20


def test_search_is_filtered_to_one_dataset_and_exact(milvus_settings):
    store = open_store(milvus_settings)
    raw, _ = people_faces(10, 5, seed=1)
    vectors = normalise(raw)
    coll = store.collection("test-model", 128)
    store.upsert(coll, 1, list(range(0, 25)), vectors[:25])
    store.upsert(coll, 2, list(range(25, 50)), vectors[25:])
    hits = store.search(coll, 1, vectors, limit=5)  # 50 queries in one call
    exact = ExactIndex(128)
    exact.add(np.arange(25), vectors[:25])
    sims, rows = exact.search(vectors, 5)
    for q, found in enumerate(hits):
        assert [key for key, _ in found] == rows[q].tolist()
        assert np.allclose([s for _, s in found], sims[q], atol=1e-5)


def test_deleting_keys_and_datasets_leaves_nothing_behind(milvus_settings):
    store = open_store(milvus_settings)
    raw, _ = people_faces(4, 5, seed=2)
    vectors = normalise(raw)
    store.upsert(store.collection("model-a", 128), 7, list(range(10)), vectors[:10])
    store.upsert(store.collection("model-b", 128), 7, list(range(10, 20)), vectors[10:])
    store.upsert(store.collection("model-a", 128), 8, [50, 51], vectors[:2])
    assert (store.count(7), store.count(8)) == (20, 2)
    store.delete_keys([0, 1, 15])
    assert store.count(7) == 17
    store.delete_dataset(7)
    assert (store.count(7), store.count(8)) == (0, 2)
    assert store.keys(8) == {
        store.collection("model-a", 128): {50, 51},
        store.collection("model-b", 128): set(),
    }
