"""Figure clusters (people): CreateFigureClusteringTask, CreateFigureClustersMergingTask, GetFigureCluster,
BatchGetFigureCluster, QueryFigureClusters, UpdateFigureCluster, and SearchImageFigureCluster (the person
of each face of a photo)."""

from __future__ import annotations

from typing import Any

from immray.api.actions import Action, Call, Scope
from immray.api.context import ApiContext
from immray.api.handlers.common import without_none
from immray.api.handlers.file_fields import file_fields
from immray.api.handlers.tasks import parse_time_range
from immray.notify import validate_notification
from immray.protocol.errors import ImmError
from immray.protocol.params import Bool, Enum, Int, Json, Str
from immray.protocol.times import format_time
from immray.services import cluster_merging, clustering_task, face_search, figure_clusters
from immray.services.figure_clusters import ClusterQuery, ClusterView
from immray.sources import sources_for

MAX_BATCH = 100
OBJECT_ID = Str("ObjectId", required=True, max_length=64)
TASK_PARAMS = (
    Json("Tags", dict),
    Str("UserData", max_bytes=2048),
    Json("Notification", dict),
)


def cluster_fields(view: ClusterView) -> dict[str, Any]:
    """A FigureCluster as the SDK's model names its fields; Cover is a full File holding the cover face."""
    return without_none(
        {
            "ObjectId": view.object_id,
            "ObjectType": "figure-cluster",
            "ProjectName": view.project_name,
            "DatasetName": view.dataset_name,
            "Name": view.name or None,
            "CustomId": view.custom_id,
            "CustomLabels": view.custom_labels,
            "Cover": file_fields(view.cover) if view.cover is not None else None,
            "FaceCount": view.face_count,
            "ImageCount": view.image_count,
            "VideoCount": 0,
            "Gender": view.people.gender if view.people else None,
            "AverageAge": view.people.average_age if view.people else None,
            "MinAge": view.people.min_age if view.people else None,
            "MaxAge": view.people.max_age if view.people else None,
            "MetaLockVersion": view.meta_lock_version,
            "CreateTime": format_time(view.created_at),
            "UpdateTime": format_time(view.updated_at),
        }
    )


def parse_label_selector(raw: str | None) -> tuple[str, str] | None:
    """CustomLabels ``key=value``: the clusters whose CustomLabels[key] is value."""
    if raw is None:
        return None
    key, sep, value = raw.partition("=")
    if not sep or not key or any(char in key for char in '"\\') or not key.isprintable():
        raise ImmError.invalid_argument(
            f"The parameter CustomLabels must be key=value, such as team=red, not {raw[:64]!r}."
        )
    return key, value


def request_definition(call: Call) -> dict[str, Any]:
    """The request as GetTask's TaskRequestDefinition shows it: the parameters given."""
    return {"Action": call.action, **{k: v for k, v in call.params.items() if v is not None}}


def actions(context: ApiContext) -> list[Action]:
    db = context.db
    settings = context.settings

    def task_options(call: Call) -> dict[str, Any]:
        params = call.params
        return {
            "tags": params["Tags"],
            "user_data": params["UserData"],
            "notification": validate_notification(params["Notification"], settings.notify_topics),
            "request_id": call.request_id,
            "request_definition": request_definition(call),
        }

    def create_clustering(call: Call) -> dict[str, Any]:
        options = task_options(call)
        record = clustering_task.create_clustering_task(
            db, call.params["ProjectName"], call.params["DatasetName"], **options
        )
        return {"TaskId": record.task_id, "EventId": record.event_id}

    def create_merging(call: Call) -> dict[str, Any]:
        params = call.params
        if (params["From"] is None) == (params["Froms"] is None):
            raise ImmError.invalid_argument("Give exactly one of From and Froms.")
        froms = [params["From"]] if params["From"] is not None else list(params["Froms"])
        options = task_options(call)
        record = cluster_merging.create_merging_task(
            db, params["ProjectName"], params["DatasetName"], to=params["To"], froms=froms, **options
        )
        return {"TaskId": record.task_id, "EventId": record.event_id}

    def get_cluster(call: Call) -> dict[str, Any]:
        params = call.params
        view = figure_clusters.get_cluster(
            db, params["ProjectName"], params["DatasetName"], params["ObjectId"]
        )
        return {"FigureCluster": cluster_fields(view)}

    def batch_get(call: Call) -> dict[str, Any]:
        params = call.params
        views = figure_clusters.batch_get_clusters(
            db, params["ProjectName"], params["DatasetName"], params["ObjectIds"]
        )
        return {"FigureClusters": [cluster_fields(view) for view in views]}

    def query(call: Call) -> dict[str, Any]:
        params = call.params
        listing, total = figure_clusters.query_clusters(
            db,
            ClusterQuery(
                project_name=params["ProjectName"],
                dataset_name=params["DatasetName"],
                sort=params["Sort"] or "",
                descending=params["Order"] == "desc",
                limit=params["MaxResults"] or 100,
                token=params["NextToken"],
                created=parse_time_range(params["CreateTimeRange"], "CreateTimeRange"),
                updated=parse_time_range(params["UpdateTimeRange"], "UpdateTimeRange"),
                label=parse_label_selector(params["CustomLabels"]),
                with_total_count=params["WithTotalCount"],
            ),
        )
        return without_none(
            {
                "FigureClusters": [cluster_fields(view) for view in listing.items],
                "NextToken": listing.next_token or None,
                "TotalCount": total,
            }
        )

    def update(call: Call) -> None:
        params = call.params
        changes = figure_clusters.parse_changes(params["FigureCluster"])
        figure_clusters.update_cluster(db, params["ProjectName"], params["DatasetName"], changes)

    def search_image(call: Call) -> dict[str, Any]:
        params = call.params
        matches = face_search.search_clusters(
            db,
            sources_for(settings),
            context.image_analyzer(),
            params["ProjectName"],
            params["DatasetName"],
            params["SourceURI"],
        )
        return {
            "Clusters": [
                {
                    "Boundary": match.boundary.to_imm(),
                    "ClusterId": match.cluster_id,
                    "Similarity": round(match.similarity, 4),
                }
                for match in matches
            ]
        }

    return [
        Action("CreateFigureClusteringTask", Scope.DATASET, TASK_PARAMS, create_clustering),
        Action(
            "CreateFigureClustersMergingTask",
            Scope.DATASET,
            (
                Str("From", max_length=64),
                Json("Froms", list, items=str, min_items=1, max_items=cluster_merging.MAX_SOURCES),
                Str("To", required=True, max_length=64),
                *TASK_PARAMS,
            ),
            create_merging,
        ),
        Action("GetFigureCluster", Scope.DATASET, (OBJECT_ID,), get_cluster),
        Action(
            "BatchGetFigureCluster",
            Scope.DATASET,
            (Json("ObjectIds", list, required=True, items=str, min_items=1, max_items=MAX_BATCH),),
            batch_get,
        ),
        Action(
            "QueryFigureClusters",
            Scope.DATASET,
            (
                Enum("Sort", figure_clusters.SORTS, ignore_case=True),
                Enum("Order", ("asc", "desc"), ignore_case=True, default="asc"),
                Int("MaxResults", low=0, high=100, default=0),
                Str("NextToken", max_length=4096, default=""),
                Str("CustomLabels", max_length=2048),
                Json("CreateTimeRange", dict),
                Json("UpdateTimeRange", dict),
                Bool("WithTotalCount", default=False),
            ),
            query,
        ),
        Action("UpdateFigureCluster", Scope.DATASET, (Json("FigureCluster", dict, required=True),), update),
        Action(
            "SearchImageFigureCluster",
            Scope.DATASET,
            (Str("SourceURI", required=True, min_length=1, max_length=2048), Json("CredentialConfig", dict)),
            search_image,
        ),
    ]
