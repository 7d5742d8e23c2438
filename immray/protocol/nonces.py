"""Replay protection: remember each signature nonce until its request could no longer be accepted.

A signed request stays valid while its date is within the allowed clock skew, so its nonce must be
remembered exactly that long. ``NonceStore`` is the one-method interface the verifier needs; the in-memory
store serves a single process and tests, a database-backed one (shared by every API process) plugs in later.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol


class NonceStore(Protocol):
    def seen_before(self, nonce: str, expires_at: datetime) -> bool:
        """Record ``nonce`` until ``expires_at``; True if it was already recorded and has not expired.

        Must be atomic: of two concurrent calls with the same nonce exactly one returns False.
        """
        ...


class MemoryNonceStore:
    """Nonces of this process, forgotten once expired (checked lazily on every call).

    ``clock`` is the time expiry is judged by; give the verifier's clock when that one is not the real time.
    """

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._expiry: dict[str, datetime] = {}
        self._queue: list[tuple[datetime, str]] = []
        self._lock = threading.Lock()

    def seen_before(self, nonce: str, expires_at: datetime) -> bool:
        now = self._clock()
        with self._lock:
            self._forget_expired(now)
            known = self._expiry.get(nonce)
            if known is not None and known > now:
                return True
            self._expiry[nonce] = expires_at
            heapq.heappush(self._queue, (expires_at, nonce))
            return False

    def count(self) -> int:
        """How many nonces are remembered (not ``__len__``: an empty store must stay truthy)."""
        with self._lock:
            return len(self._expiry)

    def _forget_expired(self, now: datetime) -> None:
        while self._queue and self._queue[0][0] <= now:
            expires_at, nonce = heapq.heappop(self._queue)
            if self._expiry.get(nonce) == expires_at:
                del self._expiry[nonce]
