"""CreateBinding, GetBinding, ListBindings, DeleteBinding: a folder or bucket prefix kept in sync with a
dataset (``immray.bindings``)."""

from __future__ import annotations

from typing import Any

from immray.api.actions import Action, Call, Scope
from immray.api.context import ApiContext
from immray.api.handlers.common import without_none
from immray.bindings import service
from immray.bindings.service import BindingInfo
from immray.protocol.params import Int, Str
from immray.protocol.times import format_time
from immray.sources import sources_for

URI = Str("URI", required=True, min_length=1, max_length=2048)
DEFAULT_PAGE = 100


def binding_fields(info: BindingInfo) -> dict[str, Any]:
    """A Binding as the SDK's model names its fields."""
    return without_none(
        {
            "ProjectName": info.project_name,
            "DatasetName": info.dataset_name,
            "URI": info.uri,
            "State": info.state,
            "Phase": info.phase,
            "Reason": info.reason,
            "CreateTime": format_time(info.created_at),
            "UpdateTime": format_time(info.updated_at),
        }
    )


def actions(context: ApiContext) -> list[Action]:
    db = context.db
    sources = sources_for(context.settings)

    def create_binding(call: Call) -> dict[str, Any]:
        params = call.params
        info = service.create_binding(
            db, sources, params["ProjectName"], params["DatasetName"], params["URI"]
        )
        return {"Binding": binding_fields(info)}

    def get_binding(call: Call) -> dict[str, Any]:
        params = call.params
        info = service.get_binding(db, params["ProjectName"], params["DatasetName"], params["URI"])
        return {"Binding": binding_fields(info)}

    def list_bindings(call: Call) -> dict[str, Any]:
        params = call.params
        listing = service.list_bindings(
            db,
            params["ProjectName"],
            params["DatasetName"],
            limit=params["MaxResults"] or DEFAULT_PAGE,
            token=params["NextToken"],
            uri_prefix=params["URI"],
        )
        return without_none(
            {
                "Bindings": [binding_fields(info) for info in listing.items],
                "NextToken": listing.next_token or None,
            }
        )

    def delete_binding(call: Call) -> None:
        params = call.params
        service.delete_binding(db, params["ProjectName"], params["DatasetName"], params["URI"])

    list_params = (
        Int("MaxResults", low=0, high=200, default=0),
        Str("NextToken", max_length=4096, default=""),
        Str("URI", max_length=2048, default=""),
        Str("Name", max_length=256, default=""),  # IMM's, undocumented: accepted and ignored
    )
    return [
        Action("CreateBinding", Scope.DATASET, (URI,), create_binding),
        Action("GetBinding", Scope.DATASET, (URI,), get_binding),
        Action("ListBindings", Scope.DATASET, list_params, list_bindings),
        Action("DeleteBinding", Scope.DATASET, (URI,), delete_binding),
    ]
