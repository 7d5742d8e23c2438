"""CreateDataset, GetDataset, ListDatasets, UpdateDataset, DeleteDataset."""

from __future__ import annotations

from typing import Any

from immray.api.actions import Action, Call, Resource, Scope
from immray.api.context import ApiContext
from immray.api.handlers.common import (
    DATASET_LIMIT_PARAMS,
    DESCRIPTION,
    TEMPLATE_ID,
    dataset_limits,
    limit_fields,
    page_params,
    page_size,
    without_none,
)
from immray.protocol.params import Bool, Json
from immray.protocol.times import format_time
from immray.services import datasets, workflow_parameters
from immray.services.datasets import DatasetChanges, DatasetInfo

#: Listings that show a key only the datasets it may reach (see api.access).
LISTINGS = frozenset({"ListDatasets"})

DATASET_PARAMS = (
    DESCRIPTION,
    TEMPLATE_ID,
    *DATASET_LIMIT_PARAMS,
    Json("WorkflowParameters", list, items=dict, max_items=workflow_parameters.MAX_PARAMETERS),
)


def dataset_fields(info: DatasetInfo) -> dict[str, Any]:
    """A Dataset as the SDK's model names its fields; WorkflowParameters shows every value in force."""
    fields = {
        "ProjectName": info.project_name,
        "DatasetName": info.name,
        "Description": info.description,
        "TemplateId": info.template_id,
        "CreateTime": format_time(info.created_at),
        "UpdateTime": format_time(info.updated_at),
        **limit_fields(info.limits),
        "WorkflowParameters": info.workflow_parameters,
    }
    if info.statistics is not None:
        fields |= {
            "FileCount": info.statistics.file_count,
            "TotalFileSize": info.statistics.total_file_size,
            "BindCount": info.statistics.bind_count,
        }
    return without_none(fields)


def _changes(call: Call) -> DatasetChanges:
    params = call.params
    raw = params["WorkflowParameters"]
    return DatasetChanges(
        description=params["Description"],
        template_id=params["TemplateId"],
        limits=dataset_limits(params),
        workflow_parameters=None if raw is None else workflow_parameters.validate(raw),
    )


def actions(context: ApiContext) -> list[Action]:
    db = context.db

    def create_dataset(call: Call) -> dict[str, Any]:
        project, name = call.params["ProjectName"], call.params["DatasetName"]
        return {"Dataset": dataset_fields(datasets.create_dataset(db, project, name, _changes(call)))}

    def get_dataset(call: Call) -> dict[str, Any]:
        info = datasets.get_dataset(
            db,
            call.params["ProjectName"],
            call.params["DatasetName"],
            with_statistics=call.params["WithStatistics"],
        )
        return {"Dataset": dataset_fields(info)}

    def list_datasets(call: Call) -> dict[str, Any]:
        project = call.params["ProjectName"]
        shows = context.access.listing_filter(call.access_key_id, call.action, call.resource)
        listing = datasets.list_datasets(
            db,
            project,
            limit=page_size(call),
            token=call.params["NextToken"],
            prefix=call.params["Prefix"],
            visible=None if shows is None else (lambda name: shows(Resource(project, name))),
        )
        return without_none(
            {
                "Datasets": [dataset_fields(info) for info in listing.items],
                "NextToken": listing.next_token or None,
            }
        )

    def update_dataset(call: Call) -> dict[str, Any]:
        project, name = call.params["ProjectName"], call.params["DatasetName"]
        return {"Dataset": dataset_fields(datasets.update_dataset(db, project, name, _changes(call)))}

    def delete_dataset(call: Call) -> None:
        datasets.delete_dataset(db, call.params["ProjectName"], call.params["DatasetName"])

    return [
        Action("CreateDataset", Scope.DATASET, DATASET_PARAMS, create_dataset),
        Action("GetDataset", Scope.DATASET, (Bool("WithStatistics", default=False),), get_dataset),
        Action("ListDatasets", Scope.PROJECT, page_params(200), list_datasets),
        Action("UpdateDataset", Scope.DATASET, DATASET_PARAMS, update_dataset),
        Action("DeleteDataset", Scope.DATASET, (), delete_dataset),
    ]
