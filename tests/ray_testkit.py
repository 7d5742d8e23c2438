"""Ray for the suite: one local Ray instance per test session (two CPUs), Serve's HTTP proxy on a free
loopback port, and the application of ``configs/serve.local.yaml`` deployed with a test's settings.

Every live server of the suite is that application: ``serve_app(settings)`` deploys it (updating the one
deployed before: Serve keeps the replicas whose arguments did not change) and yields the address the SDK
talks to. Each server gets a Ray namespace of its own for its dataset actors, which are killed when it
ends, so actors of one test module never see another's database.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from immray.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class RayRuntime:
    gcs_address: str
    serve_address: str  # host:port of Serve's HTTP proxy
    metrics_export_port: int
    dashboard_url: str | None


_runtime: RayRuntime | None = None


def start_ray() -> RayRuntime:
    """Start (once per process) the local Ray and Serve the suite shares; idempotent."""
    global _runtime
    if _runtime is not None:
        return _runtime
    import ray
    from ray import serve

    metrics_port = free_port()
    context = ray.init(
        num_cpus=2,
        namespace="serve",
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=free_port(),
        _metrics_export_port=metrics_port,
        logging_level="warning",
        log_to_driver=os.environ.get("IMMRAY_TEST_RAY_LOGS") == "1",
    )
    from immray.serve.app import load_config

    http_port = free_port()
    config = load_config()  # its HTTP and controller options: the proxy answers as in production
    serve.start(
        http_options={**config.get("http_options", {}), "host": "127.0.0.1", "port": http_port},
        proxy_location="HeadOnly",
        controller_options=config.get("controller_options"),
    )
    _runtime = RayRuntime(
        gcs_address=context.address_info["gcs_address"],
        serve_address=f"127.0.0.1:{http_port}",
        metrics_export_port=metrics_port,
        dashboard_url=context.dashboard_url,
    )
    return _runtime


def stop_ray() -> None:
    global _runtime
    if _runtime is None:
        return
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
        _runtime = None


def suite_config(settings: Settings, **deployments: dict[str, Any]) -> dict[str, Any]:
    """``configs/serve.local.yaml`` with ``settings`` in the application's args and the session's HTTP
    address; ``deployments`` override fields of a deployment by name (e.g. ``FaceAnalysis={...}``)."""
    from immray.serve.app import load_config, with_settings

    runtime = start_ray()
    host, port = runtime.serve_address.rsplit(":", 1)
    config = with_settings(load_config(), settings, host=host, port=int(port))
    for app in config["applications"]:
        app["deployments"] = [
            {**deployment, **deployments.get(deployment["name"], {})} for deployment in app["deployments"]
        ]
    return config


def fresh_namespace() -> str:
    """A Ray namespace of its own for one live server's dataset actors."""
    return f"immray-test-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def serve_app(settings: Settings, **deployments: dict[str, Any]) -> Iterator[str]:
    """The Serve application with ``settings`` (a fresh Ray namespace for its dataset actors); yields
    ``host:port``. Its dataset actors are killed at the end."""
    from immray.serve.app import deploy

    if settings.ray_namespace == "immray":
        settings = settings.model_copy(update={"ray_namespace": fresh_namespace()})
    lite = None
    if not settings.milvus_uri:  # as `immray serve` does: one milvus-lite server every process connects to
        from immray.vectors.endpoint import LiteServer

        lite = LiteServer(settings)
        settings = settings.model_copy(update={"milvus_uri": lite.start()})
    try:
        deploy(suite_config(settings, **deployments))
        try:
            yield start_ray().serve_address
        finally:
            kill_dataset_actors(settings.ray_namespace)
    finally:
        if lite is not None:
            lite.stop()


def dataset_actors(namespace: str) -> list[Any]:
    """The live dataset actors of ``namespace`` (Ray's state API)."""
    from ray.util.state import list_actors

    found = list_actors(
        address=start_ray().gcs_address,  # never auto-detect: other Ray instances may run on this machine
        filters=[("ray_namespace", "=", namespace), ("state", "=", "ALIVE")],
    )
    return [actor for actor in found if (actor.name or "").startswith("dataset:")]


def replica_actors(deployment: str, app: str = "immray") -> list[Any]:
    """The live replicas of a deployment of the application (Ray's state API: their name, pid, node)."""
    from ray.util.state import list_actors

    return list_actors(
        address=start_ray().gcs_address,
        filters=[("class_name", "=", f"ServeReplica:{app}:{deployment}"), ("state", "=", "ALIVE")],
    )


def kill_dataset_actors(namespace: str) -> None:
    import ray

    for actor in dataset_actors(namespace):
        with contextlib.suppress(Exception):
            ray.kill(ray.get_actor(actor.name, namespace=namespace), no_restart=True)
