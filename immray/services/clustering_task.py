"""CreateFigureClusteringTask: cluster the faces of a dataset that changed since its last clustering task.

The request records a ``FaceClustering`` task and returns. A worker then runs :func:`run_clustering`:

1. read the dataset's saved engine state and the faces changed since it (read-only, beside the writers);
2. run the engine (no transaction open: it may take a while) with the dataset's MinFaces;
3. in ONE transaction: save the new state (refused if another run saved first), write the assignments,
   the cluster rows, counts and covers, drop the tombstones, end the task and queue its notification.

The engine's neighbour index is the dataset's vectors in Milvus (``immray.vectors``) when the process has a
vector store (a job context's settings: the dataset actor's); the index upserts the vectors of the faces it
takes that Milvus lacks (a write lost between an indexing commit and Milvus), and the vectors of the
tombstones leave Milvus once the engine is done with them. A bare run (benchmarks) keeps them in memory.

Tasks of one dataset share a serial key, so they run one after the other, oldest first. A run cut short
before step 3 commits nothing; the next run starts from the same saved state and, the engine being
deterministic, gives the same clusters with the same ids.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from immray import vectors
from immray.clustering import ClusterState
from immray.services.cluster_writes import Outcome, write_outcome
from immray.services.clustering_change import _first_model as first_model
from immray.services.clustering_change import later_moves, plan_changes, read_pending
from immray.services.clustering_engine import clustering_engine, dataset_salt, load_state
from immray.services.database import Database
from immray.services.datasets import find_dataset
from immray.services.tasks import NewTask, TaskRecord, create_task, dataset_serial_key, submit_task
from immray.store import ClusteringState
from immray.vectors.index import DatasetIndexes, MilvusIndex
from immray.vectors.store import FaceVectors

log = logging.getLogger("immray.clustering")

TASK_TYPE = "FaceClustering"
JOB_NAME = "face-clustering"


class TaskRun(Protocol):
    """What a running task offers its service (``immray.jobs.context.JobContext`` is one)."""

    task_id: str | None

    def progress(self, percent: float) -> None: ...

    def finish(self, session: Session, result: Mapping[str, Any] | None = None) -> None: ...


class StateCache:
    """The last committed clustering state of the datasets one runner clustered, by dataset and state
    version: the dataset actor keeps it between tasks, so a task whose dataset nobody else clustered
    meanwhile starts from memory instead of unpickling the saved state. A version mismatch (or a cache
    lost with a restart) falls back to the store, which stays the record."""

    def __init__(self) -> None:
        self._states: dict[int, tuple[int, ClusterState]] = {}

    def take(self, dataset_id: int, version: int | None) -> ClusterState | None:
        """The state saved as ``version``, if held; it leaves the cache (the run mutates it)."""
        held = self._states.pop(dataset_id, None)
        if held is None or version is None or held[0] != version:
            return None
        return held[1]

    def keep(self, dataset_id: int, version: int, state: ClusterState) -> None:
        self._states[dataset_id] = (version, state)


class StateConflict(RuntimeError):
    """Another run saved the dataset's state after this one read it; this run's work is void."""


def create_clustering_task(
    db: Database,
    project: str,
    dataset: str,
    *,
    tags: Mapping[str, Any] | None = None,
    user_data: str | None = None,
    notification: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    request_definition: Mapping[str, Any] | None = None,
) -> TaskRecord:
    """Record a clustering task of ``project/dataset`` and hand it to the workers."""
    with db.write() as session:
        row = find_dataset(session, project, dataset)
        record = create_task(
            session,
            NewTask(
                project_name=project,
                dataset_name=dataset,
                task_type=TASK_TYPE,
                job_name=JOB_NAME,
                job_payload={"dataset_id": row.id},
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


def run_clustering(db: Database, run: TaskRun, dataset_id: int) -> dict[str, int]:
    """Cluster what changed in dataset ``dataset_id`` and commit it with the end of ``run``'s task."""
    run.progress(1)
    store = task_vectors(db, run)
    cache: StateCache | None = getattr(run, "state_cache", None)
    with db.read() as session:
        pending = read_pending(session, dataset_id)
        run.progress(10)
        model = pending.embedding_model or first_model(pending.figures)
        indexes = DatasetIndexes(store, dataset_id, model) if store is not None and model else None
        engine = clustering_engine(indexes)
        state = cache.take(dataset_id, pending.state_version) if cache is not None else None
        if state is not None and indexes is not None and not same_store(state, store):
            state = None  # held from a run without Milvus (or another one): load it again
        if state is None:  # the saved state, its index restored in the same read (one snapshot)
            salt = dataset_salt(dataset_id, pending.created_at)
            state = load_state(engine, pending.state_blob, salt, session, indexes)
        elif indexes is not None and state.index is None:  # held before it had faces: they go to Milvus
            state.index_factory = indexes
            indexes.bind(state)
    run.progress(20)
    plan = plan_changes(state, pending)
    outcome = Outcome.starting_from(state)
    outcome.add(engine.update(state, plan.first, min_faces=pending.min_faces))
    run.progress(60)
    if plan.readded is not None:
        outcome.add(engine.update(state, plan.readded, min_faces=pending.min_faces))
    moves = later_moves(state, plan.later_moves)
    if moves is not None:
        outcome.add(engine.update(state, moves, min_faces=pending.min_faces))
    outcome.settle(state)
    if store is not None and pending.tombstones:
        # The deleted faces' vectors leave Milvus now that the engine, which reads them to take the faces
        # out, is done; before the commit, so a cut run finds its tombstones again and deletes them again
        # (its restored state gets their vectors back from the store).
        store.delete_keys(pending.tombstones)
    run.progress(70)
    blob = state.to_bytes()
    run.progress(80)
    result = outcome.counts()
    if plan.skipped:
        log.warning(
            "dataset %s: %d face(s) embedded by another model than %s were left unclustered",
            dataset_id,
            plan.skipped,
            plan.model,
        )
    with db.write() as session:
        save_state(session, dataset_id, pending.state_version, blob, pending.upto, plan.model, state.dim)
        write_outcome(session, dataset_id, outcome, pending.tombstones)
        run.finish(session, result)
    if cache is not None:
        cache.keep(dataset_id, (pending.state_version or 0) + 1, state)
    log.info("dataset %s clustered up to change %s: %s", dataset_id, pending.upto, result)
    return result


def task_vectors(db: Database, run: TaskRun) -> FaceVectors | None:
    """The vector store a task's engine keeps its vectors in: the one attached to ``db`` in this process,
    else the one of the task's settings (a job context's); None (in memory) for a bare run."""
    store = vectors.for_db(db)
    settings = getattr(run, "settings", None)
    if store is None and settings is not None:
        vectors.attach(db, settings)
        store = vectors.for_db(db)
    return store


def same_store(state: ClusterState, store: FaceVectors) -> bool:
    """Whether a held state's index lives in ``store`` (or it has none yet)."""
    return state.index is None or (isinstance(state.index, MilvusIndex) and state.index.store is store)


def save_state(
    session: Session,
    dataset_id: int,
    loaded_version: int | None,
    blob: bytes,
    clustered_seq: int,
    model: str | None,
    dim: int | None,
) -> None:
    """Store the state over the version this run loaded (or as the first one); StateConflict otherwise."""
    if loaded_version is None:
        exists = session.get(ClusteringState, dataset_id)
        if exists is not None:
            raise StateConflict(f"dataset {dataset_id}: a state was saved while this task ran")
        session.execute(
            insert(ClusteringState).values(
                dataset_id=dataset_id,
                state=blob,
                version=1,
                clustered_seq=clustered_seq,
                embedding_model=model or "",
                embedding_dim=dim or 0,
            )
        )
        return
    saved = session.execute(
        update(ClusteringState)
        .where(ClusteringState.dataset_id == dataset_id, ClusteringState.version == loaded_version)
        .values(
            state=blob,
            version=loaded_version + 1,
            clustered_seq=clustered_seq,
            embedding_model=model or "",
            embedding_dim=dim or 0,
        )
        .returning(ClusteringState.dataset_id),
        execution_options={"synchronize_session": False},
    ).first()
    if saved is None:
        raise StateConflict(f"dataset {dataset_id}: its state changed while this task ran")
