"""The API explorer's pieces: each action's parameter form, and the SDK snippet that makes the same call.

The forms come from the actions' own declarations (``api.actions.Action.params``), so a new action shows
up here with no change. The snippet uses the official SDK's ``<Action>Request().from_map({...})``, which
takes IMM's PascalCase names and plain JSON values, so it is right for every action without a table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from immray.api.actions import Action, ActionRegistry
from immray.protocol.params import Bool, Enum, Int, Json, Param


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # text, number, boolean, choice, json
    required: bool
    choices: tuple[str, ...] = ()
    hint: str = ""


def field_of(param: Param) -> Field:
    if isinstance(param, Json):
        return Field(
            param.name, "json", param.required, hint="JSON " + ("array" if param.kind is list else "object")
        )
    if isinstance(param, Bool):
        return Field(param.name, "boolean", param.required, ("true", "false"))
    if isinstance(param, Enum):
        return Field(param.name, "choice", param.required, tuple(param.choices))
    if isinstance(param, Int):
        return Field(param.name, "number", param.required)
    return Field(param.name, "text", param.required)


def catalog(actions: ActionRegistry) -> list[tuple[Action, list[Field]]]:
    return sorted(((a, [field_of(p) for p in a.params]) for a in actions), key=lambda item: item[0].name)


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def typed_value(field: Field, raw: str) -> Any:
    """The form's text as the value an SDK user would write (JSON parsed, numbers and booleans typed)."""
    if field.kind == "json":
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    if field.kind == "number" and re.fullmatch(r"-?[0-9]+", raw):
        return int(raw)
    if field.kind == "boolean" and raw in ("true", "false"):
        return raw == "true"
    return raw


def sdk_snippet(action: str, params: Mapping[str, Any], endpoint: str, access_key_id: str) -> str:
    """Python that makes this call with the official SDK (alibabacloud-imm20200930)."""
    body = json.dumps(dict(params), indent=4, ensure_ascii=False)
    body = body.replace(": true", ": True").replace(": false", ": False").replace(": null", ": None")
    return (
        "from alibabacloud_imm20200930 import models\n"
        "from alibabacloud_imm20200930.client import Client\n"
        "from alibabacloud_tea_openapi.models import Config\n\n"
        "client = Client(Config(\n"
        f'    access_key_id="{access_key_id}",\n'
        '    access_key_secret="...",  # the key\'s secret\n'
        f'    endpoint="{endpoint}",\n'
        '    protocol="http",\n'
        '    region_id="cn-hangzhou",\n'
        "))\n"
        f"request = models.{action}Request().from_map({body})\n"
        f"response = client.{snake(action)}(request)\n"
        "print(response.body.to_map())\n"
    )
