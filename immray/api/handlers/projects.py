"""CreateProject, GetProject, ListProjects, UpdateProject, DeleteProject."""

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
    parse_tags,
    tag_param,
    without_none,
)
from immray.protocol.params import Bool, Int, Str
from immray.protocol.times import format_time
from immray.services import projects
from immray.services.projects import ProjectChanges, ProjectInfo

#: Listings that show a key only the projects it may reach (see api.access).
LISTINGS = frozenset({"ListProjects"})

PROJECT_PARAMS = (
    DESCRIPTION,
    Str("ServiceRole", max_length=256),
    TEMPLATE_ID,
    Int("ProjectMaxDatasetCount", low=1, high=1_000_000_000),
    *DATASET_LIMIT_PARAMS,
    tag_param(),
)


def project_fields(info: ProjectInfo) -> dict[str, Any]:
    """A Project as the SDK's model names its fields."""
    fields = {
        "ProjectName": info.name,
        "Description": info.description,
        "ServiceRole": info.service_role,
        "TemplateId": info.template_id,
        "CreateTime": format_time(info.created_at),
        "UpdateTime": format_time(info.updated_at),
        "ProjectMaxDatasetCount": info.project_max_dataset_count,
        **limit_fields(info.limits),
        "EngineConcurrency": info.engine_concurrency,
        "ProjectQueriesPerSecond": info.project_queries_per_second,
        "Tags": [{"TagKey": key, "TagValue": value} for key, value in info.tags],
    }
    if info.statistics is not None:
        fields |= {
            "DatasetCount": info.statistics.dataset_count,
            "FileCount": info.statistics.file_count,
            "TotalFileSize": info.statistics.total_file_size,
        }
    return without_none(fields)


def _changes(call: Call) -> ProjectChanges:
    params = call.params
    return ProjectChanges(
        description=params["Description"],
        service_role=params["ServiceRole"],
        template_id=params["TemplateId"],
        project_max_dataset_count=params["ProjectMaxDatasetCount"],
        limits=dataset_limits(params),
        tags=parse_tags(params["Tag"]),
    )


def actions(context: ApiContext) -> list[Action]:
    db = context.db

    def create_project(call: Call) -> dict[str, Any]:
        info = projects.create_project(db, call.params["ProjectName"], _changes(call))
        return {"Project": project_fields(info)}

    def get_project(call: Call) -> dict[str, Any]:
        info = projects.get_project(
            db, call.params["ProjectName"], with_statistics=call.params["WithStatistics"]
        )
        return {"Project": project_fields(info)}

    def list_projects(call: Call) -> dict[str, Any]:
        shows = context.access.listing_filter(call.access_key_id, call.action, call.resource)
        listing = projects.list_projects(
            db,
            limit=page_size(call),
            token=call.params["NextToken"],
            prefix=call.params["Prefix"],
            tags=parse_tags(call.params["Tag"]) or (),
            visible=None if shows is None else (lambda name: shows(Resource(name))),
        )
        return without_none(
            {
                "Projects": [project_fields(info) for info in listing.items],
                "NextToken": listing.next_token or None,
            }
        )

    def update_project(call: Call) -> dict[str, Any]:
        info = projects.update_project(db, call.params["ProjectName"], _changes(call))
        return {"Project": project_fields(info)}

    def delete_project(call: Call) -> None:
        projects.delete_project(db, call.params["ProjectName"])

    return [
        Action("CreateProject", Scope.PROJECT, PROJECT_PARAMS, create_project),
        Action("GetProject", Scope.PROJECT, (Bool("WithStatistics", default=False),), get_project),
        Action("ListProjects", Scope.SERVICE, (*page_params(200), tag_param()), list_projects),
        Action("UpdateProject", Scope.PROJECT, PROJECT_PARAMS, update_project),
        Action("DeleteProject", Scope.PROJECT, (), delete_project),
    ]
