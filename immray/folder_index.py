"""`immray index DIR`: every photo under a folder into a dataset of a running server, then wait.

A client of the API like any other (``immray.client``): the server reads the files itself, so DIR must
lie under one of its allowed roots (`immray serve --root`). The project and dataset are created when
missing; photos go in BatchIndexFileMeta requests of at most 100; then the files are polled with
BatchGetFileMeta until each is Indexed or Failed. Progress is reported through callbacks, so the CLI
draws the bars and this module stays testable without a terminal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from immray.client import ApiError, ImmClient

PHOTO_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".heic", ".heif", ".avif", ".webp", ".gif", ".tif", ".tiff", ".bmp"}
)
MAX_BATCH = 100
STATUS_FIELDS = ["URI", "ObjectStatus", "Reason", "FigureCount"]

Progress = Callable[[int], None]  # called with how many more items are done


@dataclass
class IndexSummary:
    photos: int = 0
    indexed: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # URI -> Reason
    pending: int = 0  # still Pending when the wait ended (timeout)
    faces: int = 0
    event_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0


def find_photos(folder: Path) -> list[Path]:
    """The photos under ``folder`` (by suffix, any depth, through symlinked folders once each, hidden
    files and folders skipped), sorted."""
    found: list[Path] = []
    seen: set[str] = set()
    for directory, subdirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:  # a symlink loop, or a folder reached twice
            subdirs.clear()
            continue
        seen.add(real)
        subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
        found += [
            Path(directory) / name
            for name in names
            if not name.startswith(".") and Path(name).suffix.lower() in PHOTO_SUFFIXES
        ]
    return sorted(path for path in found if path.is_file())


def ensure_dataset(client: ImmClient, project: str, dataset: str) -> None:
    """Create the project and the dataset unless they exist."""
    for action, params in (
        ("CreateProject", {"ProjectName": project}),
        ("CreateDataset", {"ProjectName": project, "DatasetName": dataset}),
    ):
        try:
            client.call(action, params)
        except ApiError as exc:
            if exc.code != "ResourceAlreadyExists":
                raise


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def submit(
    client: ImmClient, project: str, dataset: str, uris: list[str], *, batch_size: int, sent: Progress
) -> list[str]:
    """BatchIndexFileMeta in batches; returns the requests' EventIds."""
    events = []
    for batch in _batches(uris, batch_size):
        body = client.call(
            "BatchIndexFileMeta",
            {"ProjectName": project, "DatasetName": dataset, "Files": [{"URI": uri} for uri in batch]},
        )
        events.append(str(body.get("EventId", "")))
        sent(len(batch))
    return events


def wait(
    client: ImmClient,
    project: str,
    dataset: str,
    uris: list[str],
    summary: IndexSummary,
    *,
    done: Progress,
    poll_seconds: float = 1.0,
    timeout: float | None = None,
) -> None:
    """Poll until every file is Indexed or Failed (or ``timeout`` seconds passed); fills ``summary``."""
    pending = list(uris)
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        still = []
        for batch in _batches(pending, MAX_BATCH):
            body = client.call(
                "BatchGetFileMeta",
                {"ProjectName": project, "DatasetName": dataset, "URIs": batch, "WithFields": STATUS_FIELDS},
            )
            found = {item.get("URI"): item for item in body.get("Files") or []}
            finished = 0
            for uri in batch:
                item = found.get(uri)
                status = item.get("ObjectStatus") if item else "Failed"
                if status == "Indexed":
                    summary.indexed += 1
                    summary.faces += int(item.get("FigureCount") or 0)
                elif status == "Failed":
                    summary.failed[uri] = (item or {}).get("Reason") or "deleted while it was indexed"
                else:
                    still.append(uri)
                    continue
                finished += 1
            if finished:
                done(finished)
        pending = still
        if pending:
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(poll_seconds)
    summary.pending = len(pending)


def index_folder(
    client: ImmClient,
    folder: Path,
    project: str,
    dataset: str,
    *,
    batch_size: int = MAX_BATCH,
    on_found: Callable[[int], tuple[Progress, Progress]] = lambda count: (lambda n: None, lambda n: None),
    wait_for_analysis: bool = True,
    timeout: float | None = None,
    poll_seconds: float = 1.0,
) -> IndexSummary:
    """Index every photo under ``folder``; ``on_found(count)`` returns the (sent, done) progress callbacks."""
    started = time.monotonic()
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch size must be 1 to {MAX_BATCH}")
    photos = find_photos(folder)
    summary = IndexSummary(photos=len(photos))
    sent, done = on_found(len(photos))
    if photos:
        ensure_dataset(client, project, dataset)
        # Absolute and without '..' (which the server refuses); symlinks are the server's to judge.
        uris = [Path(os.path.abspath(photo)).as_uri() for photo in photos]
        summary.event_ids = submit(client, project, dataset, uris, batch_size=batch_size, sent=sent)
        if wait_for_analysis:
            wait(
                client, project, dataset, uris, summary, done=done, poll_seconds=poll_seconds, timeout=timeout
            )
        else:
            summary.pending = len(uris)
    summary.seconds = time.monotonic() - started
    return summary
