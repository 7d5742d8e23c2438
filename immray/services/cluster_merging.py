"""CreateFigureClustersMergingTask: the user says clusters From/Froms are the person of cluster To.

The request checks the clusters and records a ``FigureClustersMerging`` task in the dataset's serial line,
so it never runs beside a clustering task of the same dataset. The run hands the merge to the engine, which
moves the sources' faces to the target, forgets the sources and remembers the merge as a constraint (faces
the user had taken out of a source stay out of the target). The sources' rows go, the target's counts and
cover are counted again, and the user's names, ids and labels of the sources carry over where the target
has none -- all in one transaction with the task's end and its notification.

The merge runs on the dataset's state as a clustering task does: the one the dataset actor holds in memory
when it is current, else the saved one with its index on the dataset's vectors in Milvus (in memory for a
bare run), and the state it leaves is held for the next task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select

from immray.clustering import Change, ClusteringInputError, Merge
from immray.protocol.errors import ImmError
from immray.services.cluster_writes import Outcome, write_outcome
from immray.services.clustering_engine import clustering_engine, load_state
from immray.services.clustering_task import StateCache, TaskRun, same_store, save_state, task_vectors
from immray.services.database import Database
from immray.services.datasets import find_dataset
from immray.services.tasks import NewTask, TaskRecord, create_task, dataset_serial_key, submit_task
from immray.store import ClusteringState, FigureCluster
from immray.vectors.index import DatasetIndexes

TASK_TYPE = "FigureClustersMerging"
JOB_NAME = "figure-clusters-merging"
MAX_SOURCES = 100


def create_merging_task(
    db: Database,
    project: str,
    dataset: str,
    *,
    to: str,
    froms: Sequence[str],
    tags: Mapping[str, Any] | None = None,
    user_data: str | None = None,
    notification: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    request_definition: Mapping[str, Any] | None = None,
) -> TaskRecord:
    """Check the clusters and record the merge of ``froms`` into ``to``."""
    sources = list(dict.fromkeys(froms))
    if not sources:
        raise ImmError.invalid_argument("Give the clusters to merge in From or Froms.")
    if len(sources) > MAX_SOURCES:
        raise ImmError.limit_exceeded(
            f"Froms holds {len(sources)} clusters; at most {MAX_SOURCES} are allowed."
        )
    if to in sources:
        raise ImmError.invalid_argument(f"The cluster {to} cannot be merged into itself.")
    with db.write() as session:
        row = find_dataset(session, project, dataset)
        found = set(
            session.scalars(
                select(FigureCluster.object_id).where(
                    FigureCluster.dataset_id == row.id, FigureCluster.object_id.in_([to, *sources])
                )
            )
        )
        for cid in [to, *sources]:
            if cid not in found:
                raise ImmError.resource_not_found("figure cluster", cid)
        record = create_task(
            session,
            NewTask(
                project_name=project,
                dataset_name=dataset,
                task_type=TASK_TYPE,
                job_name=JOB_NAME,
                job_payload={"dataset_id": row.id, "to": to, "froms": sources},
                tags=tags,
                user_data=user_data,
                notification=notification,
                request_definition=request_definition,
                request_id=request_id,
                serial_key=dataset_serial_key(row.id),
            ),
        )
    submit_task(record)
    return record


def run_merging(db: Database, run: TaskRun, dataset_id: int, to: str, froms: Sequence[str]) -> dict[str, int]:
    """Merge ``froms`` into ``to`` through the engine and commit it with the end of ``run``'s task."""
    run.progress(1)
    store = task_vectors(db, run)
    cache: StateCache | None = getattr(run, "state_cache", None)
    with db.read() as session:
        saved = session.get(ClusteringState, dataset_id)
        if saved is None:
            raise ImmError.resource_not_found("figure cluster", to)
        version, clustered_seq, model = saved.version, saved.clustered_seq, saved.embedding_model
        indexes = DatasetIndexes(store, dataset_id, model) if store is not None and model else None
        engine = clustering_engine(indexes)
        state = cache.take(dataset_id, version) if cache is not None else None
        if state is not None and indexes is not None and not same_store(state, store):
            state = None  # held from a run without Milvus (or another one): load it again
        if state is None:  # the salt only seeds new clusters' ids, which a merge never makes
            state = load_state(engine, saved.state, "", session, indexes)
    for cid in [to, *froms]:
        if cid not in state.code_of:  # gone since the request (emptied by a clustering task)
            raise ImmError.resource_not_found("figure cluster", cid)
    run.progress(30)
    outcome = Outcome.starting_from(state)
    try:
        outcome.add(engine.update(state, Change(merged=[Merge(to, tuple(froms))])))
    except ClusteringInputError as exc:
        raise ImmError.invalid_argument(f"The clusters cannot be merged: {exc}.") from None
    outcome.settle(state)
    run.progress(60)
    new_blob = state.to_bytes()
    result = outcome.counts()
    with db.write() as session:
        save_state(session, dataset_id, version, new_blob, clustered_seq, model, state.dim)
        write_outcome(session, dataset_id, outcome, ())
        run.finish(session, result)
    if cache is not None:
        cache.keep(dataset_id, (version or 0) + 1, state)
    return result
