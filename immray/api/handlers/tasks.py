"""GetTask and ListTasks: the records of asynchronous actions (clustering, merging, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from immray.api.actions import Action, Call, Scope
from immray.api.context import ApiContext
from immray.api.handlers.common import without_none
from immray.protocol.errors import ImmError
from immray.protocol.params import Bool, Enum, Int, Json, Str
from immray.protocol.times import format_time, parse_time
from immray.services import tasks
from immray.services.tasks import TaskQuery, TaskRecord, TimeRange

STATUSES = ("Running", "Succeeded", "Failed")
SORTS = ("TaskId", "StartTime", "EndTime")
MAX_TASK_TYPES = 100


def task_fields(record: TaskRecord, *, with_request: bool) -> dict[str, Any]:
    """A TaskInfo as the SDK's model names its fields (GetTask adds ProjectName and EventId)."""
    return without_none(
        {
            "TaskId": record.task_id,
            "TaskType": record.task_type,
            "Status": record.status,
            "Code": record.code,
            "Message": record.message,
            "Progress": record.progress,
            "StartTime": format_time(record.start_time),
            "EndTime": format_time(record.end_time) if record.end_time else None,
            "Tags": record.tags,
            "UserData": record.user_data,
            "TaskRequestDefinition": record.request_definition if with_request else None,
        }
    )


def parse_time_range(raw: Mapping[str, Any] | None, name: str) -> TimeRange | None:
    """IMM's TimeRange ``{"Start": ..., "End": ...}`` (RFC 3339, either may be left out), both inclusive."""
    if raw is None:
        return None
    unknown = sorted(set(raw) - {"Start", "End"})
    if unknown:
        raise ImmError.invalid_argument(f"The parameter {name} takes Start and End only, not {unknown[0]!r}.")
    bounds = []
    for part in ("Start", "End"):
        value = raw.get(part)
        if value in (None, ""):
            bounds.append(None)
        elif isinstance(value, str):
            bounds.append(parse_time(value, f"{name}.{part}"))
        else:
            raise ImmError.invalid_argument(f"The parameter {name}.{part} must be an RFC 3339 time string.")
    start, end = bounds
    if start is not None and end is not None and start > end:
        raise ImmError.invalid_argument(f"The parameter {name} starts after it ends.")
    return TimeRange(start, end) if start is not None or end is not None else None


def parse_tag_selector(raw: str | None) -> tuple[str, str] | None:
    """TagSelector ``key=value``: the tasks whose Tags[key] is value (numbers and booleans as JSON)."""
    if raw is None:
        return None
    key, sep, value = raw.partition("=")
    if not sep or not key or any(char in key for char in '"\\') or not key.isprintable():
        raise ImmError.invalid_argument(
            f"The parameter TagSelector must be key=value, such as env=test, not {raw[:64]!r}."
        )
    return key, value


def actions(context: ApiContext) -> list[Action]:
    db = context.db
    settings = context.settings

    def get_task(call: Call) -> dict[str, Any]:
        params = call.params
        record = tasks.get_task(
            db,
            params["ProjectName"],
            params["TaskType"],
            params["TaskId"],
            retention_days=settings.task_retention_days,
        )
        return {
            "ProjectName": record.project_name,
            "EventId": record.event_id,
            **task_fields(record, with_request=params["RequestDefinition"]),
        }

    def list_tasks(call: Call) -> dict[str, Any]:
        params = call.params
        query = TaskQuery(
            project_name=params["ProjectName"],
            task_types=tuple(params["TaskTypes"] or ()),
            status=params["Status"],
            start_time=parse_time_range(params["StartTimeRange"], "StartTimeRange"),
            end_time=parse_time_range(params["EndTimeRange"], "EndTimeRange"),
            tag=parse_tag_selector(params["TagSelector"]),
            sort=params["Sort"],
            descending=params["Order"] == "desc",
            limit=params["MaxResults"],
            token=params["NextToken"],
        )
        listing = tasks.list_tasks(db, query, retention_days=settings.task_retention_days)
        return without_none(
            {
                "ProjectName": params["ProjectName"],
                "Tasks": [
                    task_fields(record, with_request=params["RequestDefinition"]) for record in listing.items
                ],
                "NextToken": listing.next_token or None,
                "MaxResults": str(query.limit),  # a string in the SDK's model
            }
        )

    return [
        Action(
            "GetTask",
            Scope.PROJECT,
            (
                Str("TaskType", required=True, max_length=64),
                Str("TaskId", required=True, max_length=128),
                Bool("RequestDefinition", default=False),
            ),
            get_task,
        ),
        Action(
            "ListTasks",
            Scope.PROJECT,
            (
                Json("TaskTypes", list, items=str, max_items=MAX_TASK_TYPES),
                Enum("Status", STATUSES, ignore_case=True),
                Json("StartTimeRange", dict),
                Json("EndTimeRange", dict),
                Str("TagSelector", max_length=1024),
                Enum("Sort", SORTS, ignore_case=True, default="TaskId"),
                Enum("Order", ("asc", "desc"), ignore_case=True, default="asc"),
                Int("MaxResults", low=1, high=100, default=100),
                Str("NextToken", max_length=4096, default=""),
                Bool("RequestDefinition", default=False),
            ),
            list_tasks,
        ),
    ]
