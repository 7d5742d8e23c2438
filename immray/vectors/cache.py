"""Vectors read from (or written to) Milvus, kept by face key in one float32 slab, oldest forgotten first.

A dict of one numpy array per face costs ~220 bytes of Python objects beside each 512-byte vector (a
million faces: ~730 MB instead of 512 MB), and a bulk pass stacked them into one more copy. Here the
vectors lie in rows of one array, a dict says which row is whose, and rows freed by ``trim`` are reused.
Age is the order keys were put or read in (a re-put key becomes the newest); reads do not refresh it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

_GROWTH = 1.5  # the slab grows by half when full: a bounded copy, amortised over the puts


class VectorCache:
    """Face key -> vector, in one slab; ``trim(limit)`` forgets the oldest beyond ``limit``."""

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)
        self._slab = np.empty((0, self.dim), np.float32)
        self._slot: dict[int, int] = {}  # key -> slab row, oldest first
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, key: object) -> bool:
        return key in self._slot

    def __iter__(self) -> Iterator[int]:
        """The keys held, oldest first."""
        return iter(self._slot)

    def clear(self) -> None:
        self._slab = np.empty((0, self.dim), np.float32)
        self._slot.clear()
        self._free.clear()

    def put(self, keys: Sequence[int], vectors: np.ndarray) -> None:
        """Hold ``vectors`` ((n, dim)) under ``keys``, as the newest; a key held already is overwritten."""
        vectors = np.asarray(vectors, np.float32)
        if vectors.shape != (len(keys), self.dim):
            raise ValueError(f"expected vectors of shape ({len(keys)}, {self.dim}), got {vectors.shape}")
        keys = [int(k) for k in keys]
        self._reserve(len(set(keys).difference(self._slot)))
        slots = np.empty(len(keys), np.int64)
        for i, key in enumerate(keys):
            slot = self._slot.pop(key, None)
            self._slot[key] = slots[i] = self._free.pop() if slot is None else slot
        self._slab[slots] = vectors

    def put_each(self, found: dict[int, np.ndarray]) -> None:
        """``put`` of a key -> vector mapping (as ``FaceVectors.get`` answers)."""
        if found:
            keys = list(found)
            self.put(keys, np.stack([found[k] for k in keys]))

    def get(self, keys: Iterable[int]) -> np.ndarray:
        """The vectors of ``keys`` (all held), as a new (n, dim) array."""
        slots = np.fromiter((self._slot[int(k)] for k in keys), np.int64)
        return self._slab[slots]

    def discard(self, key: int) -> None:
        slot = self._slot.pop(int(key), None)
        if slot is not None:
            self._free.append(slot)

    def trim(self, limit: int) -> None:
        """Forget the oldest keys until at most ``limit`` are held (their rows are reused by later puts)."""
        excess = len(self._slot) - int(limit)
        if excess > 0:
            for key in list(itertools.islice(self._slot, excess)):
                self._free.append(self._slot.pop(key))

    def _reserve(self, wanted: int) -> None:
        """Make ``wanted`` free rows, growing the slab once (by half at least) when there are fewer."""
        short = wanted - len(self._free)
        if short <= 0:
            return
        used = len(self._slab)
        bigger = used + max(short, int(used * (_GROWTH - 1)), 1024)
        slab = np.empty((bigger, self.dim), np.float32)
        slab[:used] = self._slab
        self._slab = slab
        self._free[:0] = range(bigger - 1, used - 1, -1)  # popped from the end: the old free rows first
