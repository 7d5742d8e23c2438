"""Run an IMM action as a signed-in key, exactly as ``POST /`` would after the signature check.

The web pages and the API explorer call actions through here, so they reach the SAME handlers (and so the
same services) and pass the SAME policy check as a signed request: the page cannot show or change what the
key could not through the SDK. Parameters are given as the SDK sends them (strings, JSON as text).
"""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool

from immray.api.actions import ActionRegistry, Authorize, Call
from immray.protocol.errors import ImmError
from immray.protocol.params import collect, parse_params


def as_text(value: Any) -> str:
    """A parameter value as the SDK puts it in the query: JSON for objects and lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


class Invoker:
    def __init__(self, actions: ActionRegistry, authorize: Authorize) -> None:
        self.actions = actions
        self.authorize = authorize

    def allowed(self, access_key_id: str, action_name: str, params: Mapping[str, Any]) -> bool:
        """Would the policy let this key call ``action_name`` on the resource these params name?"""
        action = self.actions.get(action_name)
        if action is None:
            return False
        try:
            values = parse_params(action.params, collect([(k, as_text(v)) for k, v in params.items()]))
        except ImmError:
            return False
        return self.authorize(access_key_id, action.name, action.resource_of(values))

    def call(self, access_key_id: str, action_name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The action's response fields (with a RequestId), or the ImmError a signed request would get."""
        action = self.actions.get(action_name)
        if action is None:
            raise ImmError.unsupported_action(action_name[:128])
        pairs = [(key, as_text(value)) for key, value in params.items() if value is not None and value != ""]
        values = parse_params(action.params, collect(pairs))
        resource = action.resource_of(values)
        if not self.authorize(access_key_id, action.name, resource):
            raise ImmError.forbidden(
                f"The access key {access_key_id} may not call {action.name} on {resource.arn}."
            )
        request_id = str(uuid.uuid4()).upper()
        result = action.handler(Call(action.name, values, resource, access_key_id, request_id))
        if inspect.isawaitable(result):
            raise TypeError(f"{action.name} is async; call it with acall")
        return {"RequestId": request_id, **dict(result or {})}

    async def acall(self, access_key_id: str, action_name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        action = self.actions.get(action_name)
        if action is not None and inspect.iscoroutinefunction(action.handler):
            raise ImmError.invalid_argument(f"{action_name} cannot be run from the web page.")
        return await run_in_threadpool(self.call, access_key_id, action_name, params)
