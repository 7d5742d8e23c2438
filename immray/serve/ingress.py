"""The ingress deployment: the IMM API and the web page (the FastAPI app of ``api.bootstrap``) as the
HTTP entry of the Serve application, with the background work of the server inside it.

Each replica builds the app for its settings and runs, beside the API, what the embedded server ran:
the outbox dispatcher (claims messages with SKIP LOCKED, so replicas share it), the Ray job backend
(tasks to the dataset actors, photos to the analysis deployment), the task sweeper, the re-submission of
files left Pending, and the binding runner (a lease per binding: one replica scans each). Cheap actions
are answered here, with no hop.

The server's settings arrive in the deployment's ``user_config`` (``settings``: IMMRAY_* overrides), so a
new configuration (``serve deploy`` of a changed config, another test's data directory) is applied by
``reconfigure`` in the running replica: the app is built anew, its services started, then the old app's
stopped, with no new process and no model loaded again. Serve calls ``reconfigure`` only after the ASGI
lifespan has started, so the app is built and its services started by the replica's first health check
(Serve runs it right after ``reconfigure``, before the replica takes requests), once the settings are known.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractAsyncContextManager
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from immray.api.bootstrap import BackgroundService, build_app
from immray.api.context import ApiContext
from immray.bindings.runner import BindingRunner
from immray.jobs.indexing import PendingFilesRecovery
from immray.notify.dispatcher import OutboxDispatcher
from immray.observability.logs import configure_logging
from immray.serve.analysis_client import ServeFaceAnalysis
from immray.serve.jobs import RayJobBackend, TaskSweeper
from immray.settings import Settings

log = logging.getLogger("immray.serve")


def ray_services(
    context: ApiContext, analysis: DeploymentHandle, actor_options: dict[str, Any] | None = None
) -> list[BackgroundService]:
    """What runs beside the API in an ingress replica, in start order (stopped in reverse)."""
    dispatcher = OutboxDispatcher(context.db, context.settings)
    backend = RayJobBackend(context.db, context.settings, analysis, actor_options)
    return [
        dispatcher,
        backend,
        TaskSweeper(context.db, context.settings, backend.send_task, after_fail=dispatcher.wake),
        PendingFilesRecovery(
            context.db, context.settings
        ),  # files whose analysis died with an earlier replica
        BindingRunner(context.db, context.settings),  # bound folders/buckets kept in sync (leases)
    ]


class SwappableApp:
    """The ASGI app Serve runs: it forwards each request to the current inner app (one built by
    ``build_app``) and runs the inner app's lifespan (its background services) itself, so the inner app
    can be replaced while the replica runs."""

    def __init__(self) -> None:
        self.inner: Any = None
        self._lifespan: AbstractAsyncContextManager | None = None

    @property
    def started(self) -> bool:
        return self._lifespan is not None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.inner(scope, receive, send)
            return
        while True:  # the services start with the first health check (see the module's docstring)
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        lifespan = self.inner.router.lifespan_context(self.inner)
        await lifespan.__aenter__()
        self._lifespan = lifespan

    async def stop(self) -> None:
        lifespan, self._lifespan = self._lifespan, None
        if lifespan is not None:
            await lifespan.__aexit__(None, None, None)

    async def swap(self, app: Any) -> None:
        """Serve ``app`` from now on: its services start, then the old app's stop (before the replica's
        lifespan began, only the app is replaced: the lifespan starts the new one's)."""
        if self._lifespan is None:
            self.inner = app
            return
        old_lifespan, old = self._lifespan, self.inner
        self.inner, self._lifespan = app, None
        try:
            await self.start()
        except BaseException:
            self.inner, self._lifespan = old, old_lifespan
            raise
        if old_lifespan is not None:
            await old_lifespan.__aexit__(None, None, None)


class IngressReplica:
    """One replica of the ingress (wrapped by ``serve.ingress`` and ``serve.deployment`` below)."""

    def __init__(self, analysis: DeploymentHandle, dataset_actor: dict[str, Any] | None = None) -> None:
        self._overrides: dict[str, Any] = {}  # until ``reconfigure`` brings the user_config's settings
        self._analysis = analysis
        self._actor_options = dataset_actor or {}
        self._app = SwappableApp()

    def _build(self, overrides: dict[str, Any]) -> Any:
        settings = Settings.from_overrides(overrides)
        configure_logging(settings.log_format, serve_logs=True)
        return build_app(
            settings,
            services=lambda context: ray_services(context, self._analysis, self._actor_options),
            analyzer=ServeFaceAnalysis(self._analysis).analyzer(),  # the image actions' photos, too
        )

    def __serve_build_asgi_app__(self) -> Any:
        return self._app  # the inner app is built once the settings are known

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: ``settings`` (IMMRAY_* overrides). Changed settings rebuild the app in place."""
        overrides = dict((config or {}).get("settings") or {})
        if self._app.inner is not None and overrides == self._overrides:
            return
        self._overrides = overrides
        await self._app.swap(await asyncio.to_thread(self._build, overrides))
        if self._app.started:
            log.info("the ingress now serves its new settings")

    async def check_health(self) -> None:
        """Serve's health check; the first one builds the app and starts its services (a failure, e.g. an
        unreachable database, fails the replica, and Serve starts another)."""
        if self._app.inner is None:
            self._app.inner = await asyncio.to_thread(self._build, self._overrides)
        if not self._app.started:
            await self._app.start()

    def sign_in_link(self, base_url: str, access_key_id: str) -> str:
        """A one-time web sign-in link made by this replica (``immray serve`` prints it)."""
        from immray.web import sign_in_link

        return sign_in_link(self._app.inner, base_url, access_key_id)


IngressDeployment = serve.deployment(name="Ingress")(serve.ingress()(IngressReplica))
