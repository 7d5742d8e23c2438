"""The faiss baseline index (immray.bench.faiss_index): exact below the IVF threshold, inverted lists above it; ids, vectors and bytes survive."""

from __future__ import annotations

import numpy as np
import pytest

from immray.bench.faiss_index import FaceIndex


def _unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("ivf_min_faces", [10_000, 500])
def test_search_finds_each_face_and_survives_bytes(ivf_min_faces):
    rng = np.random.default_rng(0)
    x = _unit(rng, 3000)
    ids = np.arange(100, 3100)
    index = FaceIndex(16, ivf_min_faces=ivf_min_faces, nprobe=8)
    index.add(ids[:2000], x[:2000])
    index.add(ids[2000:], x[2000:])  # crosses the threshold for the IVF case: lists are trained then
    assert index.is_ivf == (ivf_min_faces < 3000) and index.ntotal == 3000
    sims, found = index.search(x[:200], 3)
    assert (found[:, 0] == ids[:200]).all() and np.allclose(sims[:, 0], 1.0, atol=1e-5)

    loaded = FaceIndex.from_bytes(index.to_bytes())
    assert loaded.to_bytes() == index.to_bytes()
    assert np.array_equal(loaded.vectors(ids[::7]), x[::7])
    assert np.array_equal(loaded.search(x[:50], 5)[1], index.search(x[:50], 5)[1])


def test_removed_faces_are_no_longer_found():
    rng = np.random.default_rng(1)
    x = _unit(rng, 1200)
    index = FaceIndex(16, ivf_min_faces=500)
    index.add(np.arange(1200), x)
    index.remove(np.arange(0, 1200, 2))
    assert index.ntotal == 600
    _, found = index.search(x[:100], 5)
    assert not np.isin(found, np.arange(0, 1200, 2)).any()
    assert np.array_equal(index.all_ids(), np.arange(1, 1200, 2))


def test_bad_index_bytes_are_refused():
    with pytest.raises(ValueError):
        FaceIndex.from_bytes(b"short")
    with pytest.raises(ValueError, match="dimension"):
        FaceIndex(0)


def test_damaged_index_bytes_give_a_value_error():
    index = FaceIndex(16)
    index.add(np.arange(10), _unit(np.random.default_rng(2), 10))
    blob = index.to_bytes()
    with pytest.raises(ValueError):
        FaceIndex.from_bytes(blob[:32] + b"\x00" * 40)
