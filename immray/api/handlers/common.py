"""Parameters and response pieces that several handler modules share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from immray.api.actions import Call
from immray.protocol.errors import ImmError
from immray.protocol.params import Int, Json, Str
from immray.services.projects import DatasetLimits

INT64_MAX = 2**63 - 1
MAX_TAGS = 20
DEFAULT_PAGE = 100

# IMM's quotas: ranges from the SDK's documentation; the reserved ones only need to be positive.
DATASET_LIMIT_PARAMS = (
    Int("DatasetMaxBindCount", low=1, high=10),
    Int("DatasetMaxFileCount", low=1, high=100_000_000),
    Int("DatasetMaxEntityCount", low=1, high=INT64_MAX),
    Int("DatasetMaxRelationCount", low=1, high=INT64_MAX),
    Int("DatasetMaxTotalFileSize", low=1, high=INT64_MAX),
)
DESCRIPTION = Str("Description", min_length=1, max_length=256)
TEMPLATE_ID = Str("TemplateId", max_length=256)


def page_params(max_results: int) -> tuple[Int | Str, ...]:
    """MaxResults (0 or absent: 100), NextToken and Prefix of IMM's List* actions."""
    return (
        Int("MaxResults", low=0, high=max_results, default=0),
        Str("NextToken", max_length=4096, default=""),
        Str("Prefix", max_length=128, default=""),
    )


def page_size(call: Call) -> int:
    return call.params["MaxResults"] or DEFAULT_PAGE


def dataset_limits(params: Mapping[str, Any]) -> DatasetLimits:
    return DatasetLimits(
        dataset_max_bind_count=params["DatasetMaxBindCount"],
        dataset_max_file_count=params["DatasetMaxFileCount"],
        dataset_max_entity_count=params["DatasetMaxEntityCount"],
        dataset_max_relation_count=params["DatasetMaxRelationCount"],
        dataset_max_total_file_size=params["DatasetMaxTotalFileSize"],
    )


def limit_fields(limits: DatasetLimits) -> dict[str, Any]:
    return {
        "DatasetMaxBindCount": limits.dataset_max_bind_count,
        "DatasetMaxFileCount": limits.dataset_max_file_count,
        "DatasetMaxEntityCount": limits.dataset_max_entity_count,
        "DatasetMaxRelationCount": limits.dataset_max_relation_count,
        "DatasetMaxTotalFileSize": limits.dataset_max_total_file_size,
    }


def tag_param(name: str = "Tag") -> Json:
    return Json(name, list, items=dict, max_items=MAX_TAGS)


def parse_tags(raw: list[dict[str, Any]] | None, name: str = "Tag") -> list[tuple[str, str]] | None:
    """IMM's request tags ``[{"Key": ..., "Value": ...}]`` as (key, value) pairs; keys are unique."""
    if raw is None:
        return None
    tags: dict[str, str] = {}
    for index, item in enumerate(raw, 1):
        key, value = item.get("Key"), item.get("Value", "")
        if set(item) - {"Key", "Value"} or not isinstance(key, str) or not isinstance(value, str):
            raise ImmError.invalid_argument(
                f'{name} item {index} must be {{"Key": "...", "Value": "..."}} with string values.'
            )
        if not 1 <= len(key) <= 128 or len(value) > 128:
            raise ImmError.invalid_argument(
                f"{name} item {index}: a Key has 1 to 128 characters and a Value at most 128."
            )
        if key in tags:
            raise ImmError.invalid_argument(f"{name}: the key {key!r} is given more than once.")
        tags[key] = value
    return list(tags.items())


def without_none(fields: Mapping[str, Any]) -> dict[str, Any]:
    """IMM leaves out what is not set; the SDK reads a missing field as None."""
    return {key: value for key, value in fields.items() if value is not None}
