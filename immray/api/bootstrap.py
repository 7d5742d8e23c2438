"""The composition root: one server's settings, database, access control, actions and background services.

``build_app(settings)`` is what the Serve ingress replica (``immray.serve.ingress``) runs. Two lists make the server:

- the actions: ``api.handlers.HANDLER_MODULES``, one module per IMM resource;
- the background services (``services``), started in order when the ASGI app starts and stopped in
  reverse order when it stops (on Serve: ``serve.ingress.ray_services``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

from fastapi import FastAPI

from immray import vectors
from immray.api.access import AccessControl
from immray.api.app import create_app
from immray.api.context import ApiContext
from immray.api.handlers import LISTING_ACTIONS, all_actions
from immray.bindings.runner import BindingRunner
from immray.notify.dispatcher import OutboxDispatcher
from immray.observability.metrics import instrument
from immray.services.database import Database
from immray.settings import Settings
from immray.store import DatabaseNonceStore
from immray.web import mount_web

log = logging.getLogger("immray.server")


class BackgroundService(Protocol):
    """Work that runs beside the API in the server process. ``start`` returns once it runs; ``stop`` once
    it has stopped (finishing or handing back what it was doing). Either may be ``async``."""

    name: str

    def start(self) -> None | Awaitable[None]: ...

    def stop(self) -> None | Awaitable[None]: ...


def build_context(settings: Settings, db: Database, analyzer: Any = None) -> ApiContext:
    return ApiContext(settings=settings, db=db, access=AccessControl(db, LISTING_ACTIONS), analyzer=analyzer)


def background_services(context: ApiContext) -> list[BackgroundService]:
    """What runs beside the API when no job backend is wanted (an app under test without Ray): the outbox
    dispatcher and the binding runner. The Serve ingress runs its own list (``serve.ingress.ray_services``):
    these plus the Ray job backend, the task sweeper and the re-submission of Pending files."""
    return [
        OutboxDispatcher(context.db, context.settings),
        BindingRunner(context.db, context.settings),  # bound folders/buckets kept in sync (leases)
    ]


def build_app(
    settings: Settings,
    *,
    db: Database | None = None,
    services: Callable[[ApiContext], Sequence[BackgroundService]] = background_services,
    clock: Callable[[], datetime] | None = None,
    analyzer: Any = None,
) -> FastAPI:
    """The API server of ``settings`` (its database must be migrated: ``store.upgrade``).

    ``db`` shares an existing database handle (the caller then closes it); otherwise one is opened here and
    closed when the app stops. ``analyzer`` is where the image actions analyse photos (the Serve ingress
    passes the analysis deployment's); None: the face models in this process.
    """
    owned = db is None
    database = db if db is not None else Database.connect(settings.resolved_database_url)
    vectors.attach(database, settings)  # the services' face vector writes and deletes (immray.vectors)
    context = build_context(settings, database, analyzer)
    running = list(services(context))
    app = create_app(
        all_actions(context),
        context.access.secret_of,
        nonces=DatabaseNonceStore(database.sessions, clock),
        authorize=context.access.authorize,
        clock=clock,
        lifespan=_lifespan(running, database if owned else None),
    )
    instrument(app, [action.name for action in app.state.actions])  # requests by action (Ray metrics)
    mount_web(app, context)  # the web page under /ui, calling the same actions as the key signed in
    app.state.context = context
    app.state.services = running
    return app


def _lifespan(services: Sequence[BackgroundService], owned_db: Database | None) -> Callable[[Any], Any]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        started: list[BackgroundService] = []
        try:
            for service in services:
                await _call(service.start)
                started.append(service)
                log.info("started %s", service.name)
            yield
        finally:
            for service in reversed(started):
                try:
                    await _call(service.stop)
                    log.info("stopped %s", service.name)
                except Exception:
                    log.exception("stopping %s failed", service.name)
            if owned_db is not None:
                owned_db.close()

    return lifespan


async def _call(method: Callable[[], None | Awaitable[None]]) -> None:
    result = method()
    if inspect.isawaitable(result):
        await result
