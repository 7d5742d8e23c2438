"""VectorCache: the index's vectors by face key in one slab, the oldest forgotten first."""

from __future__ import annotations

import numpy as np
import pytest

from immray.vectors.cache import VectorCache


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


def test_it_answers_what_was_put_in_any_order_of_keys():
    cache, v = VectorCache(4), _vectors(3000)
    cache.put(list(range(3000)), v)  # past its first slab: it grows
    assert len(cache) == 3000
    assert np.array_equal(cache.get([2999, 0, 1500, 0]), v[[2999, 0, 1500, 0]])


def test_a_key_put_again_is_overwritten_and_becomes_the_newest():
    cache, v = VectorCache(4), _vectors(6)
    cache.put([1, 2, 3], v[:3])
    cache.put([1], v[5:6])
    assert list(cache) == [2, 3, 1]
    assert np.array_equal(cache.get([1]), v[5:6])
    cache.trim(2)
    assert list(cache) == [3, 1]


def test_trim_forgets_the_oldest_and_their_rows_are_reused():
    cache, v = VectorCache(4), _vectors(2000)
    cache.put(list(range(1000)), v[:1000])
    rows = len(cache._slab)
    cache.trim(400)
    assert list(cache) == list(range(600, 1000))
    assert 5 not in cache and 600 in cache
    cache.put(list(range(1000, 1600)), v[1000:1600])  # fits in the freed rows: no growth
    assert len(cache._slab) == rows
    assert np.array_equal(cache.get(range(600, 1600)), v[600:1600])
    with pytest.raises(KeyError):
        cache.get([5])


def test_discard_and_clear_forget_keys():
    cache, v = VectorCache(4), _vectors(3)
    cache.put([7, 8, 9], v)
    cache.discard(8)
    cache.discard(42)  # not held: nothing happens
    assert list(cache) == [7, 9]
    assert np.array_equal(cache.get([9]), v[2:3])
    cache.clear()
    assert len(cache) == 0 and 7 not in cache


def test_put_checks_the_shape_of_what_it_is_given():
    with pytest.raises(ValueError, match="shape"):
        VectorCache(4).put([1, 2], _vectors(3))
