"""Cluster ids that are new yet deterministic.

IMM cluster ids look like ``Cluster-<uuid4>``. The engine must give the same ids for the same input, so the
default factory derives a UUID (version 5, SHA-1 based) from the state's salt (the dataset), the number of
clusters that state has created so far, and the cluster's founding face (its smallest face id). The salt keeps
two datasets apart; the counter means an id is never handed out twice within a dataset, even when a founding
face comes back. A caller may pass any other ``IdFactory`` (e.g. one that draws random uuid4s, if it does not
need replays to give equal ids).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from immray.clustering.types import FaceId

IdFactory = Callable[[str, int, FaceId], str]
_NAMESPACE = uuid.UUID("6b1f3a52-6d0e-4f8c-9a57-0c2d3e1f9b10")


def default_cluster_id(salt: str, serial: int, founder: FaceId) -> str:
    """``Cluster-<uuid>`` from (dataset salt, how many clusters came before, founding face)."""
    kind = "i" if isinstance(founder, int) else "s"
    key = "\x1f".join((salt, str(serial), f"{kind}:{founder}"))
    return f"Cluster-{uuid.uuid5(_NAMESPACE, key)}"
