"""What an IMM action declares before it may run: its name, its parameters and the resource it touches.

The dispatcher reads these declarations to check the signature, decode the parameters and ask the policy
about the resource BEFORE it calls the handler, so no handler can forget authentication or authorisation
(the Polar pattern: the permission is part of the endpoint's signature, not a line in its body).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from immray.protocol.params import RESOURCE_NAME, Param, Str

_ACTION_NAME = re.compile(r"[A-Z][A-Za-z0-9]{1,63}")


class Scope(enum.Enum):
    """How far down IMM's resource tree an action reaches; it names the parameters that locate it."""

    SERVICE = ()  # ListProjects, CreateProject's quota look-ups: no project yet
    PROJECT = ("ProjectName",)
    DATASET = ("ProjectName", "DatasetName")


@dataclass(frozen=True)
class Resource:
    """The project/dataset a call touches; ``arn`` is what RAM-style policies match."""

    project: str | None = None
    dataset: str | None = None

    @property
    def arn(self) -> str:
        if self.project is None:
            return "acs:imm:*:*:*"
        path = f"project/{self.project}"
        if self.dataset is not None:
            path += f"/dataset/{self.dataset}"
        return f"acs:imm:*:*:{path}"


@dataclass(frozen=True)
class Call:
    """Everything a handler gets: decoded parameters (by IMM name), the resource, who asked."""

    action: str
    params: Mapping[str, Any]
    resource: Resource
    access_key_id: str
    request_id: str


HandlerResult = Mapping[str, Any] | None
Handler = Callable[[Call], HandlerResult | Awaitable[HandlerResult]]
# access_key_id, action name, resource -> may this key do this? (RAM-style policies plug in here)
Authorize = Callable[[str, str, Resource], bool]


def allow_all(access_key_id: str, action: str, resource: Resource) -> bool:
    """The policy until per-key policies exist: every authentic key may do everything."""
    return True


@dataclass(frozen=True)
class Action:
    """One IMM action. The handler returns the response's PascalCase fields; ``RequestId`` is added.

    ``params`` are the action's own parameters; those of its scope (ProjectName, DatasetName) are added.
    """

    name: str
    scope: Scope
    params: tuple[Param, ...]
    handler: Handler

    def __post_init__(self) -> None:
        if not _ACTION_NAME.fullmatch(self.name):
            raise ValueError(f"IMM action names are PascalCase: {self.name!r}")
        names = [spec.name for spec in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: a parameter is declared twice")
        # The scope's parameters locate the resource the policy judges, so they are always required and
        # always IMM names (no "/" or "*" that could bend a resource path); declared here once for all.
        for name in self.scope.value:
            if name in names:
                raise ValueError(f"{self.name}: {name} comes with scope {self.scope.name}; do not declare it")
        located = tuple(Str(name, required=True, pattern=RESOURCE_NAME) for name in self.scope.value)
        object.__setattr__(self, "params", located + tuple(self.params))

    def resource_of(self, values: Mapping[str, Any]) -> Resource:
        if self.scope is Scope.SERVICE:
            return Resource()
        if self.scope is Scope.PROJECT:
            return Resource(values["ProjectName"])
        return Resource(values["ProjectName"], values["DatasetName"])


class ActionRegistry:
    """The actions a server answers; anything else is an unsupported action."""

    def __init__(self, actions: Sequence[Action] = ()) -> None:
        self._actions: dict[str, Action] = {}
        for action in actions:
            self.add(action)

    def add(self, action: Action) -> Action:
        if action.name in self._actions:
            raise ValueError(f"action {action.name} is registered twice")
        self._actions[action.name] = action
        return action

    def action(
        self, name: str, *, scope: Scope, params: Sequence[Param] = ()
    ) -> Callable[[Handler], Handler]:
        """Decorator: ``@registry.action("GetDataset", scope=Scope.DATASET, params=[...])``."""

        def register(handler: Handler) -> Handler:
            self.add(Action(name, scope, tuple(params), handler))
            return handler

        return register

    def get(self, name: str) -> Action | None:
        return self._actions.get(name)

    def __iter__(self) -> Iterator[Action]:
        return iter(self._actions.values())

    def __contains__(self, name: object) -> bool:
        return name in self._actions
