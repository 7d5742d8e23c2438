"""Every IMM action the server answers, one module per IMM resource.

Each module has ``actions(context) -> list[Action]`` (its handlers, closed over the server's collaborators)
and may have ``LISTINGS``, the names of its list actions that show a key only what it may reach. To add a
resource (tasks, files, clusters, ...), write its module and add it to ``HANDLER_MODULES``: nothing else.
"""

from __future__ import annotations

from types import ModuleType

from immray.api.actions import ActionRegistry
from immray.api.context import ApiContext
from immray.api.handlers import bindings, clusters, datasets, faces, files, projects, queries, tasks

HANDLER_MODULES: tuple[ModuleType, ...] = (
    projects,
    datasets,
    tasks,
    clusters,
    files,
    faces,
    queries,
    bindings,
)

LISTING_ACTIONS: frozenset[str] = frozenset().union(
    *(getattr(module, "LISTINGS", frozenset()) for module in HANDLER_MODULES)
)


def all_actions(context: ApiContext) -> ActionRegistry:
    """The registry of every handler module's actions; a name declared twice fails at start-up."""
    registry = ActionRegistry()
    for module in HANDLER_MODULES:
        for action in module.actions(context):
            registry.add(action)
    return registry
