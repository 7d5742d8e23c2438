"""SimpleQuery: a dataset's files by a condition tree, e.g. the photos of one person
(``{"Field": "Figures.FigureClusterId", "Operation": "eq", "Value": "Cluster-..."}``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from immray.api.actions import Action, Call, Scope
from immray.api.context import ApiContext
from immray.api.handlers.common import without_none
from immray.api.handlers.file_fields import file_fields
from immray.protocol.errors import ImmError
from immray.protocol.params import Bool, Int, Json, Str
from immray.services import file_query
from immray.services.file_query import FileQuery


def projected(fields: dict[str, Any], wanted: Sequence[str] | None) -> dict[str, Any]:
    """WithFields: only the File keys asked for (all of them when none is named)."""
    if not wanted:
        return fields
    keep = set(wanted)
    return {key: value for key, value in fields.items() if key in keep}


def actions(context: ApiContext) -> list[Action]:
    db = context.db

    def simple_query(call: Call) -> dict[str, Any]:
        params = call.params
        if params["Aggregations"]:
            raise ImmError.invalid_argument("SimpleQuery Aggregations are not supported by immray.")
        listing, total = file_query.simple_query(
            db,
            FileQuery(
                project_name=params["ProjectName"],
                dataset_name=params["DatasetName"],
                query=params["Query"],
                sort=params["Sort"],
                descending=file_query.parse_order(params["Order"]),
                limit=params["MaxResults"] or 100,
                token=params["NextToken"],
                with_total=not params["WithoutTotalHits"],
            ),
        )
        return without_none(
            {
                "Files": [projected(file_fields(view), params["WithFields"]) for view in listing.items],
                "NextToken": listing.next_token or None,
                "TotalHits": total,
            }
        )

    return [
        Action(
            "SimpleQuery",
            Scope.DATASET,
            (
                Json("Query", dict),
                Int("MaxResults", low=0, high=100, default=0),
                Str("NextToken", max_length=4096, default=""),
                Str("Sort", max_length=256),
                Str("Order", max_length=256),
                Json("WithFields", list, items=str, max_items=100),
                Bool("WithoutTotalHits", default=False),
                Json("Aggregations", list),
            ),
            simple_query,
        ),
    ]
