"""The ingress deployment: the IMM API and the web page (the FastAPI app of ``api.bootstrap``) as the
HTTP entry of the Serve application, with the background work of the server inside it.

Each replica builds the app for its settings and runs, beside the API, what the embedded server ran:
the outbox dispatcher (claims messages with SKIP LOCKED, so replicas share it), the Ray job backend
(tasks to the dataset actors, photos to the analysis deployment), the task sweeper, the re-submission of
files left Pending, and the binding runner (a lease per binding: one replica scans each). Cheap actions
are answered here, with no hop.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from immray.api.bootstrap import BackgroundService, build_app
from immray.api.context import ApiContext
from immray.bindings.runner import BindingRunner
from immray.jobs.indexing import PendingFilesRecovery
from immray.notify.dispatcher import OutboxDispatcher
from immray.serve.jobs import RayJobBackend, TaskSweeper
from immray.settings import Settings


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
        PendingFilesRecovery(context.db),  # files whose analysis died with an earlier replica
        BindingRunner(context.db, context.settings),  # bound folders/buckets kept in sync (leases)
    ]


class IngressReplica:
    """One replica of the ingress (wrapped by ``serve.ingress`` and ``serve.deployment`` below)."""

    def __init__(
        self,
        analysis: DeploymentHandle,
        settings: dict[str, Any] | None = None,
        dataset_actor: dict[str, Any] | None = None,
    ) -> None:
        from immray.observability.logs import configure_logging

        self._settings = Settings.from_overrides(settings)
        configure_logging(self._settings.log_format)
        self._analysis = analysis
        self._actor_options = dataset_actor or {}
        self._app: Any = None

    def __serve_build_asgi_app__(self) -> Any:
        self._app = build_app(
            self._settings,
            services=lambda context: ray_services(context, self._analysis, self._actor_options),
        )
        return self._app

    def sign_in_link(self, base_url: str, access_key_id: str) -> str:
        """A one-time web sign-in link made by this replica (``immray serve`` prints it)."""
        from immray.web import sign_in_link

        return sign_in_link(self._app, base_url, access_key_id)


IngressDeployment = serve.deployment(name="Ingress")(serve.ingress()(IngressReplica))
