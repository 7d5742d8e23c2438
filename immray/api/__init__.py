"""The HTTP adapter: IMM's ``POST /`` dispatched to declared actions, behind signature and policy checks.

Handlers (one module per IMM resource, added later under ``handlers/``) parse nothing and check nothing
themselves: they declare an ``Action`` and receive a ``Call`` with decoded parameters.
"""

from immray.api.actions import Action, ActionRegistry, Authorize, Call, Resource, Scope, allow_all
from immray.api.app import create_app
from immray.api.server import build_server, server_config

__all__ = [
    "Action",
    "ActionRegistry",
    "Authorize",
    "Call",
    "Resource",
    "Scope",
    "allow_all",
    "build_server",
    "create_app",
    "server_config",
]
