"""The clustering engine as the services use it: one config, IMM-shaped cluster ids, one salt per dataset.

Cluster ObjectIds look like IMM's (``Cluster-<uuid4>``) yet are derived, not drawn: the engine asks its id
factory for (dataset salt, clusters created so far, founding face), and the same question always gets the
same id. A task that crashed between the engine and its commit therefore gives, when it runs again on the
same state, the very same ids; an id, once committed, stays with its person for good.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from immray.clustering import ClusteringConfig, ClusterState, Engine
from immray.clustering.types import FaceId


def cluster_object_id(salt: str, serial: int, founder: FaceId) -> str:
    """``Cluster-<uuid4>`` from a digest of (salt, serial, founder): random-looking, unique, repeatable."""
    kind = "i" if isinstance(founder, int) else "s"
    digest = hashlib.sha256("\x1f".join((salt, str(serial), f"{kind}:{founder}")).encode()).digest()
    return f"Cluster-{uuid.UUID(bytes=digest[:16], version=4)}"


def dataset_salt(dataset_id: int, created_at: datetime) -> str:
    """Seeds a dataset's cluster ids. The creation time keeps a re-used row id (SQLite) from re-using ids."""
    return f"dataset:{dataset_id}:{created_at.isoformat()}"


def clustering_engine() -> Engine:
    """The engine every clustering and merging task runs (MinFaces comes per dataset, per call)."""
    return Engine(ClusteringConfig(), id_factory=cluster_object_id)


def load_state(engine: Engine, blob: bytes | None, salt: str) -> ClusterState:
    """The dataset's saved state, or a new one when it has none yet."""
    if blob is None:
        return engine.new_state(salt)
    return ClusterState.from_bytes(blob)
