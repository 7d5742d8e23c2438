"""`immray index DIR --watch`: bind a folder to a dataset of a running server and follow its sync.

A client of the API like ``folder_index`` (whose photo finder and dataset creation it reuses): CreateBinding
for the folder (or the binding that already exists), with the dataset's ``AutoClustering`` switched on so
its people follow the folder too, then GetBinding and BatchGetFileMeta over the photos
in the folder, so the caller can draw the full scan's progress and, afterwards, each change being
analysed. Stopping the watch leaves the binding: the server keeps the dataset in sync with the folder
until DeleteBinding; deleting the binding ends the watch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from immray.client import ApiError, ClientError, ImmClient
from immray.folder_index import MAX_BATCH, STATUS_FIELDS, ensure_dataset, find_photos

INCREMENTAL = "IncrementalScanning"
MAX_CONNECTION_FAILURES = 5  # polls in a row that failed before the watch gives up


@dataclass
class SyncStatus:
    uri: str  # the binding's
    state: str
    phase: str
    reason: str | None
    photos: int = 0  # in the folder now
    indexed: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # URI -> Reason
    pending: int = 0  # in the folder, not analysed yet (or not yet seen by the server)
    faces: int = 0

    @property
    def synced(self) -> bool:
        return self.phase == INCREMENTAL and self.pending == 0


def enable_auto_clustering(client: ImmClient, project: str, dataset: str) -> None:
    """Set the dataset's ``AutoClustering`` WorkflowParameter to true, keeping its other values."""
    where = {"ProjectName": project, "DatasetName": dataset}
    shown = client.call("GetDataset", where)["Dataset"].get("WorkflowParameters") or []
    values = {item["Name"]: item["Value"] for item in shown}
    if values.get("AutoClustering", "").lower() == "true":
        return
    values["AutoClustering"] = "true"
    pairs = [{"Name": name, "Value": value} for name, value in sorted(values.items())]
    client.call("UpdateDataset", {**where, "WorkflowParameters": pairs})


def bind_folder(
    client: ImmClient, folder: Path, project: str, dataset: str, *, auto_cluster: bool = True
) -> str:
    """The URI of the folder's binding, created (with the project and dataset) unless it exists;
    ``auto_cluster``: the dataset clusters itself once the photos are indexed (AutoClustering)."""
    ensure_dataset(client, project, dataset)
    if auto_cluster:
        enable_auto_clustering(client, project, dataset)
    params = {"ProjectName": project, "DatasetName": dataset, "URI": Path(os.path.abspath(folder)).as_uri()}
    try:
        return client.call("CreateBinding", params)["Binding"]["URI"]
    except ApiError as exc:
        if exc.code != "ResourceAlreadyExists":
            raise
    return client.call("GetBinding", params)["Binding"]["URI"]


def sync_status(client: ImmClient, folder: Path, project: str, dataset: str, uri: str) -> SyncStatus | None:
    """Where the sync of ``folder`` stands; None once its binding is deleted."""
    try:
        binding = client.call("GetBinding", {"ProjectName": project, "DatasetName": dataset, "URI": uri})[
            "Binding"
        ]
    except ApiError as exc:
        if exc.code == "ResourceNotFound":
            return None
        raise
    status = SyncStatus(uri, binding.get("State", ""), binding.get("Phase", ""), binding.get("Reason"))
    uris = [Path(os.path.abspath(photo)).as_uri() for photo in find_photos(folder)]
    status.photos = len(uris)
    for start in range(0, len(uris), MAX_BATCH):
        batch = uris[start : start + MAX_BATCH]
        body = client.call(
            "BatchGetFileMeta",
            {"ProjectName": project, "DatasetName": dataset, "URIs": batch, "WithFields": STATUS_FIELDS},
        )
        found = {item.get("URI"): item for item in body.get("Files") or []}
        for photo in batch:
            item = found.get(photo) or {}
            if item.get("ObjectStatus") == "Indexed":
                status.indexed += 1
                status.faces += int(item.get("FigureCount") or 0)
            elif item.get("ObjectStatus") == "Failed":
                status.failed[photo] = item.get("Reason") or ""
            else:
                status.pending += 1
    return status


def follow(
    client: ImmClient,
    folder: Path,
    project: str,
    dataset: str,
    *,
    on_status: Callable[[SyncStatus], None],
    poll_seconds: float = 1.0,
    timeout: float | None = None,
    auto_cluster: bool = True,
) -> tuple[SyncStatus | None, bool]:
    """Bind ``folder`` and report its sync every ``poll_seconds`` until ``timeout`` (None: until
    interrupted) or until the binding is deleted; returns the last status seen and whether the binding
    was deleted."""
    uri = bind_folder(client, folder, project, dataset, auto_cluster=auto_cluster)
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    failures = 0
    while True:
        try:
            status = sync_status(client, folder, project, dataset, uri)
            failures = 0
        except ClientError:  # the server refused (ApiError) or could not be reached
            failures += 1
            if failures > MAX_CONNECTION_FAILURES:
                raise
            status = last  # a long watch outlives a dropped connection or a server restart
        else:
            if status is None:
                return last, True
            on_status(status)
        last = status
        if deadline is not None and time.monotonic() >= deadline:
            return last, False
        time.sleep(poll_seconds)
