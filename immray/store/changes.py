"""Change sequence numbers: how a clustering task knows which faces changed since the last one.

Every transaction that adds, moves or removes faces of a dataset takes one number from the dataset's
counter and stamps it on those figures. Taking the number locks the dataset row (PostgreSQL) or the
database (SQLite) until commit, so numbers become visible in order: once a reader sees the counter at S,
every change numbered S or lower is committed. A task therefore processes exactly the figures with
``clustered_seq < change_seq <= S`` and records S as its new ``clustered_seq``.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from immray.store.models import Dataset


def next_change_seq(session: Session, dataset_id: int) -> int:
    """Take the next change number of a dataset (1, 2, 3, ... per dataset) inside the caller's transaction."""
    seq = session.execute(
        update(Dataset)
        .where(Dataset.id == dataset_id)
        # Keep UpdateTime: it tells when the dataset's own metadata changed, not its content.
        .values(change_seq=Dataset.change_seq + 1, updated_at=Dataset.updated_at)
        .returning(Dataset.change_seq),
        execution_options={"synchronize_session": False},
    ).scalar_one_or_none()
    if seq is None:
        raise LookupError(f"no dataset with id {dataset_id}")
    return seq


def current_change_seq(session: Session, dataset_id: int) -> int:
    """The last change number handed out for a dataset (0 before any change)."""
    seq = session.scalar(select(Dataset.change_seq).where(Dataset.id == dataset_id))
    if seq is None:
        raise LookupError(f"no dataset with id {dataset_id}")
    return seq
