"""IndexFileMeta, BatchIndexFileMeta, GetFileMeta, BatchGetFileMeta, UpdateFileMeta, DeleteFileMeta,
BatchDeleteFileMeta."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from immray.api.actions import Action, Call, Scope
from immray.api.context import ApiContext
from immray.api.handlers.file_fields import file_fields
from immray.notify import validate_notification
from immray.protocol.params import Json, Str
from immray.services import files, indexing
from immray.services.file_views import FileView
from immray.services.input_files import InputFile
from immray.sources import sources_for

MAX_BATCH = indexing.MAX_BATCH
URI = Str("URI", required=True, min_length=1, max_length=2048)
URIS = Json("URIs", list, required=True, items=str, min_items=1, max_items=MAX_BATCH)
WITH_FIELDS = Json("WithFields", list, items=str, max_items=200)
NOTIFICATION = Json("Notification", dict)
USER_DATA = Str("UserData", max_bytes=2048)


def projected(view: FileView, with_fields: Sequence[str] | None) -> dict[str, Any]:
    """The File, cut to ``WithFields`` when given (``Figures.Boundary`` keeps Figures); URI always stays."""
    fields = file_fields(view)
    if not with_fields:
        return fields
    wanted = {name.split(".", 1)[0] for name in with_fields} | {"URI"}
    return {key: value for key, value in fields.items() if key in wanted}


def actions(context: ApiContext) -> list[Action]:
    db, settings = context.db, context.settings

    def index(call: Call, raw_files: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
        request = indexing.IndexRequest(
            project_name=call.params["ProjectName"],
            dataset_name=call.params["DatasetName"],
            files=[InputFile.parse(raw, name) for raw, name in zip(raw_files, names, strict=True)],
            action=call.action,
            notification=validate_notification(call.params["Notification"], settings.notify_topics),
            user_data=call.params["UserData"],
            request_id=call.request_id,
        )
        return {"EventId": indexing.accept(db, sources_for(settings), request).event_id}

    def index_file_meta(call: Call) -> dict[str, Any]:
        return index(call, [call.params["File"]], ["File"])

    def batch_index_file_meta(call: Call) -> dict[str, Any]:
        raw = call.params["Files"]
        return index(call, raw, [f"Files[{number}]" for number in range(len(raw))])

    def get_file_meta(call: Call) -> dict[str, Any]:
        view = files.get_file(db, call.params["ProjectName"], call.params["DatasetName"], call.params["URI"])
        return {"Files": [projected(view, call.params["WithFields"])]}

    def batch_get_file_meta(call: Call) -> dict[str, Any]:
        views = files.batch_get_files(
            db, call.params["ProjectName"], call.params["DatasetName"], call.params["URIs"]
        )
        return {"Files": [projected(view, call.params["WithFields"]) for view in views]}

    def update_file_meta(call: Call) -> None:
        given = InputFile.parse(call.params["File"], "File")
        files.update_file(db, call.params["ProjectName"], call.params["DatasetName"], given)

    def delete_file_meta(call: Call) -> None:
        files.delete_files(
            db, call.params["ProjectName"], call.params["DatasetName"], [call.params["URI"]], must_exist=True
        )

    def batch_delete_file_meta(call: Call) -> None:
        files.delete_files(
            db, call.params["ProjectName"], call.params["DatasetName"], call.params["URIs"], must_exist=False
        )

    return [
        Action(
            "IndexFileMeta",
            Scope.DATASET,
            (Json("File", dict, required=True), NOTIFICATION, USER_DATA),
            index_file_meta,
        ),
        Action(
            "BatchIndexFileMeta",
            Scope.DATASET,
            (
                Json("Files", list, required=True, items=dict, min_items=1, max_items=MAX_BATCH),
                NOTIFICATION,
                USER_DATA,
            ),
            batch_index_file_meta,
        ),
        Action("GetFileMeta", Scope.DATASET, (URI, WITH_FIELDS), get_file_meta),
        Action("BatchGetFileMeta", Scope.DATASET, (URIS, WITH_FIELDS), batch_get_file_meta),
        Action("UpdateFileMeta", Scope.DATASET, (Json("File", dict, required=True),), update_file_meta),
        Action("DeleteFileMeta", Scope.DATASET, (URI,), delete_file_meta),
        Action("BatchDeleteFileMeta", Scope.DATASET, (URIS,), batch_delete_file_meta),
    ]
