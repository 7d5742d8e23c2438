"""ExactIndex, the in-memory NeighbourIndex: exact top-k against a brute-force sort, ties to the lower row, in
blocks as in one piece, and clear errors; the faiss baseline answers the same protocol."""

from __future__ import annotations

import numpy as np
import pytest

from immray.bench.faiss_index import FaceIndex
from immray.clustering import neighbours
from immray.clustering.neighbours import BadEmbedding, ExactIndex, NeighbourIndex, normalise


def _unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(held_rows: np.ndarray, held: np.ndarray, queries: np.ndarray, k: int):
    sims = queries @ held.T
    out_s = np.full((len(queries), k), -np.inf, np.float32)
    out_r = np.full((len(queries), k), -1, np.int64)
    for q in range(len(queries)):
        order = np.lexsort((held_rows, -sims[q]))[:k]
        out_s[q, : len(order)], out_r[q, : len(order)] = sims[q, order], held_rows[order]
    return out_s, out_r


@pytest.mark.parametrize("blocks", [None, (5, 7)])
def test_search_is_the_exact_top_k_in_blocks_or_not(blocks, monkeypatch):
    if blocks:  # tiny blocks: results are merged across many query and row blocks
        monkeypatch.setattr(neighbours, "_QUERY_BLOCK", blocks[0])
        monkeypatch.setattr(neighbours, "_ROW_BLOCK", blocks[1])
    rng = np.random.default_rng(0)
    x = _unit(rng, 300)
    x[51] = x[41]  # a tie: the lower row comes first
    rows = np.arange(300) * 3 + 2  # sparse rows
    index = ExactIndex(16)
    index.add(rows[:200], x[:200])
    index.add(rows[200:], x[200:])
    index.remove(rows[::4])
    keep = np.ones(300, bool)
    keep[::4] = False
    sims, found = index.search(x[:60], 6)
    want_s, want_r = _brute(rows[keep], x[keep], x[:60], 6)
    assert np.array_equal(found, want_r) and np.allclose(sims, want_s, atol=1e-6)
    assert found[41, :2].tolist() == [rows[41], rows[51]] and found[51, :2].tolist() == [rows[41], rows[51]]
    assert index.ntotal == 225 and isinstance(index, NeighbourIndex)
    assert np.array_equal(index.rows(), rows[keep])


def test_fewer_rows_than_k_are_padded_and_an_empty_index_finds_nothing():
    index = ExactIndex(4)
    sims, found = index.search(np.eye(4, dtype=np.float32)[:2], 3)
    assert (found == -1).all() and np.isneginf(sims).all()
    index.add(np.array([9, 1]), np.eye(4, dtype=np.float32)[:2])
    sims, found = index.search(np.eye(4, dtype=np.float32)[:1], 3)
    assert found.tolist() == [[9, 1, -1]] and sims[0, :2].tolist() == [1.0, 0.0]


def test_vectors_come_back_in_order_and_adding_a_row_again_replaces_it():
    rng = np.random.default_rng(1)
    x = _unit(rng, 10)
    index = ExactIndex(16)
    index.add(np.arange(10), x)
    assert np.array_equal(index.vectors(np.array([7, 2, 7])), x[[7, 2, 7]])
    index.add(np.array([2]), x[3:4])
    assert index.ntotal == 10 and np.array_equal(index.vectors(np.array([2])), x[3:4])
    index.remove(np.array([2, 2, 500]))  # repeated and unknown rows are ignored
    assert index.ntotal == 9
    with pytest.raises(KeyError):
        index.vectors(np.array([2]))
    with pytest.raises(KeyError):
        index.vectors(np.array([10_000]))


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="dimension"):
        ExactIndex(0)
    index = ExactIndex(4)
    with pytest.raises(ValueError, match="shape"):
        index.add(np.arange(2), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="negative"):
        index.add(np.array([-1]), np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="distinct"):
        index.add(np.array([1, 1]), np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="finite"):
        index.add(np.array([1]), np.full((1, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="shape"):
        index.search(np.zeros((1, 5), np.float32), 2)
    with pytest.raises(ValueError, match="k must"):
        index.search(np.zeros((1, 4), np.float32), 0)


def test_normalise_matches_unit_length_and_names_a_bad_row():
    x = np.array([[3.0, 4.0], [0.0, 2.0]], np.float32)
    assert np.allclose(normalise(x), [[0.6, 0.8], [0.0, 1.0]]) and x[0, 0] == 3.0
    with pytest.raises(BadEmbedding) as err:
        normalise(np.array([[1.0, 0.0], [0.0, 0.0]], np.float32))
    assert err.value.row == 1


def test_the_faiss_baseline_agrees_with_exact_search_while_flat():
    rng = np.random.default_rng(2)
    x = _unit(rng, 500)
    exact, flat = ExactIndex(16), FaceIndex(16)
    for index in (exact, flat):
        index.add(np.arange(500), x)
        index.remove(np.arange(0, 500, 5))
    assert isinstance(flat, NeighbourIndex) and flat.ntotal == exact.ntotal == 400
    (s1, r1), (s2, r2) = exact.search(x[:80], 8), flat.search(x[:80], 8)
    assert np.array_equal(r1, r2) and np.allclose(s1, s2, atol=1e-5)
    assert flat.search(x[:2], 1000)[1].shape == (2, 1000)  # padded to k like ExactIndex
