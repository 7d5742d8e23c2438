"""Indexing photos: accept an IndexFileMeta/BatchIndexFileMeta request, analyse each file in a job, and
announce the request's end.

The request (``accept``): every URI is judged first (``sources.check``); one refused URI fails the whole
request with InvalidArgument naming it and nothing is written. Then, in one transaction, each file is
recorded ``Pending`` under the request's EventId (with the request's Notification kept on the row), and
after the commit one ``index-file`` job per file is submitted. The files table is the durable queue: a
job lost with its process is submitted again at the next start (``requeue_pending``), and a file whose
analysis was cut short ``max_attempts`` times fails instead of looping.

An analysis claims its file with a lease (``analysis_lease_expires_at``, taken under the row's lock): a
second job for the same file (every ingress replica re-submits the Pending files when it starts) finds the
lease held and does nothing, so each photo is analysed once and its attempts count real runs. A lease that
expired belongs to an analysis that died with its process; ``requeue_expired`` submits those files again.

The job (``analyze_file``) is idempotent: it acts only on a file still Pending under its EventId, and
writes in one transaction that checks this again, so a photo analysed twice stores its faces once. An
unchanged file (same fingerprint as when it was last indexed) is a no-op; a changed one gets new faces and
its old ones become tombstones. A file that cannot be read or decoded fails alone, with a Reason.

When the last file of a request is done, the same transaction writes the request's notification to the
outbox: ``{ProjectName, DatasetName, RequestId, StartTime, EndTime, Success, Message, Files: [{URI,
Error}]}`` as IMM sends it (plus UserData and EventId).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from immray import vectors
from immray.faces import AnalyzedImage, ImageError
from immray.jobs.submission import submit
from immray.notify import enqueue, envelope, notification_topics
from immray.protocol.errors import ImmError
from immray.protocol.times import format_time
from immray.services import workflow_parameters
from immray.services.analysis import analysis_mode
from immray.services.database import Database
from immray.services.datasets import find_dataset
from immray.services.files import tombstone_figures
from immray.services.input_files import INDEX_REQUEST_KEY, InputFile
from immray.services.tasks import new_event_id
from immray.sources import SourceInfo, SourceObject, SourceRefused, Sources, SourceUnreadable
from immray.store import Dataset, Figure, File, ObjectStatus, next_change_seq, utcnow
from immray.vectors.sync import FaceVector, write_faces

log = logging.getLogger("immray.indexing")

INDEX_JOB = "index-file"
MAX_BATCH = 100
# Failures that say nothing about the file itself: its faces from the last analysis are kept.
KEEP_FACES_ON = ("[SourceUnavailable]", "[InternalError]")


@dataclass(frozen=True)
class IndexRequest:
    project_name: str
    dataset_name: str
    files: Sequence[InputFile]
    action: str  # IndexFileMeta | BatchIndexFileMeta: the notification's type
    notification: Mapping[str, Any] | None = None  # checked by notify.validate_notification
    user_data: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Accepted:
    event_id: str
    file_ids: list[int]


# --- the request --------------------------------------------------------------------------------


def accept(db: Database, sources: Sources, request: IndexRequest) -> Accepted:
    """Record the request's files as Pending and submit their analysis; returns the EventId."""
    accepted = record_pending(db, sources, request)
    submit_analysis(accepted.event_id, accepted.file_ids)
    return accepted


def record_pending(db: Database, sources: Sources, request: IndexRequest) -> Accepted:
    """The recording half of :func:`accept`: the files Pending under a new EventId, nothing submitted
    (a bulk backfill analyses them itself, with :func:`analyze_files`)."""
    uris = [given.uri for given in request.files]
    seen: set[str] = set()
    for uri in uris:
        if uri in seen:
            raise ImmError.invalid_argument(f"The URI {uri[:512]} is given twice in one request.")
        seen.add(uri)
        try:
            sources.check(uri)
        except SourceRefused as exc:
            raise ImmError.invalid_argument(f"The URI {uri[:512]} is refused: {exc.message}.") from None
    event_id = new_event_id()
    index_request = {
        "EventId": event_id,
        "Action": request.action,
        "RequestId": request.request_id or "",
        "StartTime": format_time(utcnow()),
        "UserData": request.user_data or "",
        "Notification": dict(request.notification) if request.notification else None,
    }
    with db.write() as session:
        dataset = find_dataset(session, request.project_name, request.dataset_name, for_update=True)
        existing = {
            row.uri: row
            for row in session.scalars(select(File).where(File.dataset_id == dataset.id, File.uri.in_(uris)))
        }
        _check_file_limit(session, dataset, len(set(uris) - set(existing)))
        rows = []
        for given in request.files:
            row = existing.get(given.uri)
            if row is None:
                row = File(dataset_id=dataset.id, uri=given.uri, media_type="image", attributes={})
                session.add(row)
            given.apply_metadata(row)
            row.object_status = ObjectStatus.PENDING
            row.reason = None
            row.event_id = event_id
            row.attempts = 0
            row.analysis_lease_expires_at = None  # a running analysis of an older request is void
            row.attributes = {**(row.attributes or {}), INDEX_REQUEST_KEY: index_request}
            rows.append(row)
        session.flush()
        file_ids = [row.id for row in rows]
    return Accepted(event_id, file_ids)


def _check_file_limit(session: Session, dataset: Dataset, adding: int) -> None:
    limit = dataset.dataset_max_file_count
    if limit is None or adding == 0:
        return
    count = session.scalar(select(func.count(File.id)).where(File.dataset_id == dataset.id)) or 0
    if count + adding > limit:
        raise ImmError.limit_exceeded(
            f"The dataset {dataset.name} holds {count} files; {adding} more would pass its "
            f"DatasetMaxFileCount of {limit}."
        )


def submit_analysis(event_id: str, file_ids: Sequence[int]) -> None:
    """One ``index-file`` job per file. Without a running backend the files wait, Pending, for the next
    start (``requeue_pending``)."""
    for file_id in file_ids:
        try:
            submit(INDEX_JOB, {"file_id": file_id, "event_id": event_id})
        except RuntimeError:
            log.warning(
                "no job backend runs: %d file(s) of %s wait for the next start", len(file_ids), event_id
            )
            return


def requeue_pending(db: Database) -> int:
    """Submit again the analysis of every Pending file that no live analysis holds (their jobs died with
    an earlier process, or wait in another replica's queue: a duplicate job finds the file taken)."""
    return _requeue(db, _lease_free(utcnow()))


def requeue_expired(db: Database) -> int:
    """Submit again the analysis of the Pending files whose analysis lease expired: the analysis that
    claimed them died (its replica's node was lost) before it stored an outcome."""
    return _requeue(db, File.analysis_lease_expires_at < utcnow())


def _lease_free(now):
    return or_(File.analysis_lease_expires_at.is_(None), File.analysis_lease_expires_at < now)


def _requeue(db: Database, condition) -> int:
    with db.read() as session:
        pending = session.execute(
            select(File.id, File.event_id)
            .where(File.object_status == ObjectStatus.PENDING, condition)
            .order_by(File.id)
        ).all()
    for file_id, event_id in pending:
        submit(INDEX_JOB, {"file_id": file_id, "event_id": event_id or ""})
    return len(pending)


# --- the job ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claimed:
    uri: str
    fingerprint: str | None


def detection_mode(db: Database, file_id: int) -> str:
    """The ``FaceDetectionMode`` in force in the dataset of file ``file_id`` (``default`` if it is gone),
    with its ``FaceAttributes`` folded in (``services.analysis.analysis_mode``)."""
    with db.read() as session:
        parameters = session.scalar(
            select(Dataset.workflow_parameters)
            .join(File, File.dataset_id == Dataset.id)
            .where(File.id == file_id)
        )
    return analysis_mode(
        workflow_parameters.setting(parameters, workflow_parameters.FACE_DETECTION_MODE.name),
        workflow_parameters.setting(parameters, workflow_parameters.FACE_ATTRIBUTES.name),
    )


def analyze_file(
    db: Database,
    sources: Sources,
    analyze: Callable[[bytes], AnalyzedImage],
    embedding_model: str,
    file_id: int,
    event_id: str,
    *,
    max_attempts: int = 3,
    lease_seconds: float = 60.0,
) -> str | None:
    """Analyse one Pending file of request ``event_id`` and store the outcome; returns the file's new
    ObjectStatus, or None when there was nothing to do (done already, re-queued by a later request,
    deleted, or another analysis holds it)."""
    claimed = _claim(db, file_id, event_id, max_attempts, lease_seconds)
    if claimed is None:
        return None
    try:
        location = sources.check(claimed.uri)
        info = sources.stat(location)
        if claimed.fingerprint is not None and info.fingerprint == claimed.fingerprint:
            return _finish(db, file_id, event_id, unchanged=True)
        source = sources.read(location)
        analyzed = analyze(source.data)
    except (SourceRefused, SourceUnreadable) as exc:
        reason = exc.reason if isinstance(exc, SourceUnreadable) else f"[InvalidArgument] {exc.message}"
        return _finish(db, file_id, event_id, reason=reason)
    except ImageError as exc:
        return _finish(db, file_id, event_id, reason=exc.reason, info=source.info)
    except Exception as exc:  # a bug or a model failure must not leave the file Pending forever
        log.exception("analysing %s failed", claimed.uri)
        return _finish(
            db, file_id, event_id, reason=f"[InternalError] analysis failed ({type(exc).__name__})"
        )
    return _finish(
        db,
        file_id,
        event_id,
        info=source.info,
        analyzed=analyzed,
        embedding_model=embedding_model,
    )


def analyze_files(
    db: Database,
    sources: Sources,
    analyze_batch: Callable[[list[bytes]], Sequence[AnalyzedImage | Exception]],
    embedding_model: str,
    files: Sequence[tuple[int, str]],
    *,
    max_attempts: int = 3,
    lease_seconds: float = 60.0,
) -> list[tuple[str | None, int]]:
    """:func:`analyze_file` for a batch of ``(file_id, event_id)``: the same claims, reads and stored
    outcomes, with one ``analyze_batch`` call (one outcome per photo: its faces or the exception that
    photo alone fails with), the claims in one transaction and the outcomes in another, their vectors in
    one write. Returns each file's (new ObjectStatus or None as :func:`analyze_file`, faces stored)."""
    with db.write() as session:
        claims = _claim_all_in(session, files, max_attempts, lease_seconds)
    outcomes: dict[int, dict[str, Any]] = {}  # slot -> _finish_in's keyword arguments
    to_analyze: list[tuple[int, _Claimed, SourceObject]] = []
    for slot, claimed in enumerate(claims):
        if claimed is None:
            continue
        try:
            location = sources.check(claimed.uri)
            info = sources.stat(location)
            if claimed.fingerprint is not None and info.fingerprint == claimed.fingerprint:
                outcomes[slot] = {"unchanged": True}
                continue
            to_analyze.append((slot, claimed, sources.read(location)))
        except (SourceRefused, SourceUnreadable) as exc:
            reason = exc.reason if isinstance(exc, SourceUnreadable) else f"[InvalidArgument] {exc.message}"
            outcomes[slot] = {"reason": reason}
        except Exception as exc:  # a bug must not leave the file Pending forever
            log.exception("reading %s failed", claimed.uri)
            outcomes[slot] = {"reason": f"[InternalError] analysis failed ({type(exc).__name__})"}
    if to_analyze:
        try:
            analyzed = list(analyze_batch([source.data for _, _, source in to_analyze]))
        except Exception as exc:  # the whole batch failed: each photo fails alone, as analyze_file's would
            log.exception("analysing a batch of %d photos failed", len(to_analyze))
            analyzed = [exc] * len(to_analyze)
        for (slot, claimed, source), result in zip(to_analyze, analyzed, strict=True):
            if isinstance(result, ImageError):
                outcomes[slot] = {"reason": result.reason, "info": source.info}
            elif isinstance(result, Exception):
                log.error("analysing %s failed: %r", claimed.uri, result)
                outcomes[slot] = {"reason": f"[InternalError] analysis failed ({type(result).__name__})"}
            else:
                outcomes[slot] = {"info": source.info, "analyzed": result, "embedding_model": embedding_model}
    results: list[tuple[str | None, int]] = [(None, 0)] * len(files)
    new_vectors: list[FaceVector] = []
    slots = sorted(outcomes)
    with db.write() as session:
        finished = _finish_all_in(session, [(*files[slot], outcomes[slot]) for slot in slots])
        for slot, (status, stored) in zip(slots, finished, strict=True):
            results[slot] = (status, len(stored))
            new_vectors += [FaceVector(f.id, f.dataset_id, f.embedding_model, f.vector) for f in stored]
    if new_vectors:  # after the commit, as _finish writes them
        write_faces(vectors.for_db(db), new_vectors)
    return results


def _claim(
    db: Database, file_id: int, event_id: str, max_attempts: int, lease_seconds: float
) -> _Claimed | None:
    with db.write() as session:
        return _claim_in(session, file_id, event_id, max_attempts, lease_seconds)


def _claim_in(
    session: Session, file_id: int, event_id: str, max_attempts: int, lease_seconds: float
) -> _Claimed | None:
    """Take the analysis lease of Pending file ``file_id`` of request ``event_id``; None when there is
    nothing to do: the file is gone, done, queued again by a later request, or leased to a live analysis
    (the row's lock makes two claims of one file take turns, so only one of them gets it)."""
    return _claim_row(
        session, session.get(File, file_id, with_for_update=True), event_id, max_attempts, lease_seconds
    )


def _claim_all_in(
    session: Session, files: Sequence[tuple[int, str]], max_attempts: int, lease_seconds: float
) -> list[_Claimed | None]:
    """:func:`_claim_in` for each ``(file_id, event_id)``, the rows read and locked in one statement (in id
    order, as any two batches lock them)."""
    ids = sorted({file_id for file_id, _ in files})
    rows = {
        row.id: row
        for row in session.scalars(select(File).where(File.id.in_(ids)).order_by(File.id).with_for_update())
    }
    return [
        _claim_row(session, rows.get(file_id), event_id, max_attempts, lease_seconds)
        for file_id, event_id in files
    ]


def _claim_row(
    session: Session, row: File | None, event_id: str, max_attempts: int, lease_seconds: float
) -> _Claimed | None:
    if row is None or row.object_status != ObjectStatus.PENDING or (row.event_id or "") != event_id:
        return None
    now = utcnow()
    if row.analysis_lease_expires_at is not None and row.analysis_lease_expires_at > now:
        return None
    row.analysis_lease_expires_at = now + timedelta(seconds=lease_seconds)
    row.attempts += 1
    if row.attempts > max_attempts:
        _mark_failed(row, f"[InternalError] the analysis was cut short {max_attempts} times")
        complete_events(session, session.get(Dataset, row.dataset_id), {row.event_id})
        return None
    return _Claimed(row.uri, row.fingerprint)


def _finish(db: Database, file_id: int, event_id: str, **outcome: Any) -> str | None:
    """:func:`_finish_in` in a transaction of its own (``outcome``: its keyword arguments), then the
    stored faces' vectors."""
    with db.write() as session:
        status, stored = _finish_in(session, file_id, event_id, **outcome)
        new_vectors = [FaceVector(f.id, f.dataset_id, f.embedding_model, f.vector) for f in stored]
    # After the commit: the faces are the record; their vectors follow (a crash here is repaired by the
    # next clustering task, which upserts what Milvus lacks).
    if new_vectors:
        write_faces(vectors.for_db(db), new_vectors)
    return status


def _finish_in(
    session: Session, file_id: int, event_id: str, **outcome: Any
) -> tuple[str | None, list[Figure]]:
    """Store one file's outcome in ``session`` (``outcome``: :func:`_apply_outcome`'s keyword arguments);
    returns its new status (None: nothing to do) and the faces stored (flushed: their ids are known)."""
    return _finish_all_in(session, [(file_id, event_id, outcome)])[0]


def _finish_all_in(
    session: Session, items: Sequence[tuple[int, str, dict[str, Any]]]
) -> list[tuple[str | None, list[Figure]]]:
    """:func:`_finish_in` for each ``(file_id, event_id, outcome)`` in one pass: the rows read in one
    statement, each dataset locked once, the old faces tombstoned together, one change number for the
    new faces of a dataset, each finished request noticed once."""
    results: list[tuple[str | None, list[Figure]]] = [(None, [])] * len(items)
    ids = sorted({file_id for file_id, _, _ in items})
    rows = {row.id: row for row in session.scalars(select(File).where(File.id.in_(ids)).order_by(File.id))}
    live: list[tuple[int, File, dict[str, Any]]] = []
    for slot, (file_id, event_id, outcome) in enumerate(items):
        row = rows.pop(file_id, None)  # a file given twice is finished once, as one at a time would
        if row is None or row.object_status != ObjectStatus.PENDING or (row.event_id or "") != event_id:
            continue  # deleted or re-queued meanwhile: the newer request decides
        live.append((slot, row, outcome))
    if not live:
        return results
    # One finisher at a time per dataset, so exactly one sees its request complete.
    datasets = {
        dataset_id: session.scalar(select(Dataset).where(Dataset.id == dataset_id).with_for_update())
        for dataset_id in sorted({row.dataset_id for _, row, _ in live})
    }
    for dataset_id in datasets:
        old_faces = [
            row.id for _, row, outcome in live if row.dataset_id == dataset_id and _drops_faces(**outcome)
        ]
        if old_faces:
            tombstone_figures(session, dataset_id, old_faces)
    seqs: dict[int, int] = {}  # dataset id -> the change number of its new faces, taken when one comes

    def new_faces_seq(dataset_id: int) -> int:
        if dataset_id not in seqs:
            seqs[dataset_id] = next_change_seq(session, dataset_id)
        return seqs[dataset_id]

    for slot, row, outcome in live:
        stored = _apply_outcome(session, row, new_faces_seq, **outcome)
        results[slot] = (row.object_status, stored)
    for dataset_id, dataset in datasets.items():
        complete_events(
            session, dataset, {row.event_id for _, row, _ in live if row.dataset_id == dataset_id}
        )
    session.flush()
    return results


def _drops_faces(
    *, unchanged: bool = False, reason: str | None = None, analyzed: Any = None, **_: Any
) -> bool:
    """Whether an outcome replaces the file's faces: new ones analysed, or a failure that makes the old
    ones not the file's any more (the file is unchanged, or the source could not be reached: they stay)."""
    if unchanged:
        return False
    if reason is not None:
        return not reason.startswith(KEEP_FACES_ON)
    return analyzed is not None


def _apply_outcome(
    session: Session,
    row: File,
    new_faces_seq: Callable[[int], int],
    *,
    unchanged: bool = False,
    reason: str | None = None,
    info: SourceInfo | None = None,
    analyzed: AnalyzedImage | None = None,
    embedding_model: str = "",
) -> list[Figure]:
    """One Pending file's outcome on its row (its old faces already tombstoned where the outcome drops
    them); returns the new face rows."""
    stored: list[Figure] = []
    row.analysis_lease_expires_at = None
    if info is not None:
        _source_fields(row, info)
    if unchanged:
        row.object_status = ObjectStatus.INDEXED
        row.reason = None
    elif reason is not None:
        _mark_failed(row, reason)
        if not reason.startswith(KEEP_FACES_ON):
            row.figure_count = None
    else:
        assert analyzed is not None and info is not None
        stored = _store_faces(session, row, analyzed, embedding_model, new_faces_seq)
        row.fingerprint = info.fingerprint
    return stored


def _source_fields(row: File, info: SourceInfo) -> None:
    row.size = info.size
    row.etag = info.etag
    row.filename = info.filename
    row.file_modified_at = info.modified_at
    if info.content_type and not row.content_type:
        row.content_type = info.content_type


def _mark_failed(row: File, reason: str) -> None:
    row.object_status = ObjectStatus.FAILED
    row.analysis_lease_expires_at = None
    row.reason = reason
    row.fingerprint = None  # re-indexing a failed file always tries again


def _store_faces(
    session: Session,
    row: File,
    analyzed: AnalyzedImage,
    embedding_model: str,
    new_faces_seq: Callable[[int], int],
) -> list[Figure]:
    """Add the analysed faces as the file's (its old ones are tombstoned already); returns the new rows."""
    stored = []
    if analyzed.faces:
        seq = new_faces_seq(row.dataset_id)
        for face in analyzed.faces:
            figure = Figure(
                figure_id=str(uuid.uuid4()),
                dataset_id=row.dataset_id,
                file_id=row.id,
                figure_type="face",
                left=face.boundary.left,
                top=face.boundary.top,
                width=face.boundary.width,
                height=face.boundary.height,
                confidence=face.confidence,
                quality=face.quality,
                sharpness=face.sharpness,
                yaw=face.head_pose.yaw,
                pitch=face.head_pose.pitch,
                roll=face.head_pose.roll,
                # Age, Gender, Emotion (+ confidences) as IMM names them; None when attributes were off
                attributes=face.attributes.to_imm() if face.attributes is not None else None,
                change_seq=seq,
            )
            figure.set_vector(face.embedding, embedding_model)
            session.add(figure)
            stored.append(figure)
    row.content_type = analyzed.content_type
    row.image_width = analyzed.width
    row.image_height = analyzed.height
    row.figure_count = len(analyzed.faces)
    row.object_status = ObjectStatus.INDEXED
    row.reason = None
    return stored


# --- the end of a request -----------------------------------------------------------------------


def complete_events(session: Session, dataset: Dataset | None, event_ids: set[str | None]) -> None:
    """For each request of ``event_ids`` with no Pending file left, write its notification (if it asked
    for one) in the caller's transaction. Callers hold the dataset's lock, so one of them sees the end."""
    if dataset is None:
        return
    for event_id in sorted(e for e in event_ids if e):
        of_event = (File.dataset_id == dataset.id, File.event_id == event_id)
        # Most calls come before the request's end: one indexed probe, not its files and their JSON.
        if session.scalar(
            select(File.id).where(*of_event, File.object_status == ObjectStatus.PENDING).limit(1)
        ):
            continue
        files = session.execute(
            select(File.uri, File.object_status, File.reason, File.attributes)
            .where(*of_event)
            .order_by(File.id)
        ).all()
        request = next(
            (attrs[INDEX_REQUEST_KEY] for *_, attrs in files if attrs and INDEX_REQUEST_KEY in attrs), None
        )
        if not request or not request.get("Notification"):
            continue
        project_name = dataset.project.name
        now = utcnow()
        content = {
            "ProjectName": project_name,
            "DatasetName": dataset.name,
            "RequestId": request.get("RequestId", ""),
            "StartTime": request.get("StartTime", ""),
            "EndTime": format_time(now),
            "Success": True,
            "Message": "",
            "UserData": request.get("UserData", ""),
            "EventId": event_id,
            "Files": [
                {"URI": uri, "Error": (reason or "") if status == ObjectStatus.FAILED else ""}
                for uri, status, reason, _ in files
            ],
        }
        message = envelope(
            message_id=str(uuid.uuid4()),
            event_type=f"imm:Task:{request.get('Action') or 'IndexFileMeta'}",
            project_name=project_name,
            content=content,
            at=now,
        )
        for topic in notification_topics(request["Notification"]):
            enqueue(session, topic=topic, message=message)
