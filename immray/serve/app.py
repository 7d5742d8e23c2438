"""The Serve application: its builder (the ``import_path`` of ``configs/serve.*.yaml``) and the deploy step
of ``immray serve`` and of the tests.

The application is two deployments, tuned in the config file, not here: ``Ingress`` (the API, the web page
and the background services) and ``FaceAnalysis`` (the face models, batched), which the ingress calls
through a ``DeploymentHandle``. ``args`` of the application carry the server's settings (what its launcher
set explicitly; the rest comes from each replica's IMMRAY_* environment) and the dataset actors' Ray
options.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from ray.serve import Application

from immray.serve.analysis import FaceAnalysisDeployment
from immray.serve.ingress import IngressDeployment
from immray.settings import Settings

APP_NAME = "immray"
REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LOCAL_CONFIG = REPO_CONFIGS / "serve.local.yaml"


# The settings the face pipeline reads (``services.analysis.analyzer_config``).
ANALYSIS_SETTINGS = frozenset(
    {"detector", "max_image_pixels", "detect_max_side", "min_face_px", "mirror", "device", "embedder"}
)


class DeployError(RuntimeError):
    """The application did not come up; the message says why (the replica's error, or a timeout)."""


def build(args: dict[str, Any] | None = None) -> Application:
    """The application for ``args`` (``dataset_actor``: Ray options of the dataset actors, e.g.
    ``{"num_cpus": 1}``). The server's settings are not args but each deployment's ``user_config``
    (``with_settings``): Serve applies a changed ``user_config`` to the running replicas, where changed
    args would restart every replica and load the models again."""
    args = dict(args or {})
    return IngressDeployment.bind(FaceAnalysisDeployment.bind(), args.get("dataset_actor") or {})


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The Serve config file (``configs/serve.local.yaml`` by default) as a dict."""
    path = path or LOCAL_CONFIG
    try:
        config = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise DeployError(f"cannot read the Serve config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DeployError(f"the Serve config {path} is not YAML: {exc}") from None
    if not isinstance(config, dict) or not config.get("applications"):
        raise DeployError(f"the Serve config {path} names no application")
    return config


def with_settings(
    config: dict[str, Any], settings: Settings, *, host: str | None = None, port: int | None = None
) -> dict[str, Any]:
    """The config with the server's settings in the ``user_config`` of the immray application's
    deployments (all of them to the ingress; what the face pipeline reads to the analysis replicas), and
    the HTTP address."""
    overrides = settings.to_overrides()
    for_deployment = {
        "Ingress": overrides,
        "FaceAnalysis": {name: value for name, value in overrides.items() if name in ANALYSIS_SETTINGS},
    }
    config = {**config, "applications": [dict(app) for app in config["applications"]]}
    for app in config["applications"]:
        if not app.get("import_path", "").startswith("immray.serve.app:"):
            continue
        deployments = {d["name"]: dict(d) for d in app.get("deployments") or []}
        for name, values in for_deployment.items():
            deployment = deployments.setdefault(name, {"name": name})
            deployment["user_config"] = {**(deployment.get("user_config") or {}), "settings": values}
        app["deployments"] = list(deployments.values())
    http = dict(config.get("http_options") or {})
    if host is not None:
        http["host"] = host
    if port is not None:
        http["port"] = port
    config["http_options"] = http
    return config


def deploy(config: dict[str, Any], *, timeout: float = 180.0) -> None:
    """Deploy ``config`` (a Serve config dict) on the connected Ray, as ``serve run CONFIG`` does, and wait
    until every application of it runs its new version."""
    from ray.exceptions import RayError
    from ray.serve._private import api as serve_api  # the code path of `serve run config.yaml`
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    try:
        client = serve_api.serve_start(
            http_options=schema.http_options.model_dump(),
            proxy_location=schema.proxy_location,
            controller_options=schema.controller_options,  # the proxy's callback: immray.serve.proxy
        )
    except (RayError, TimeoutError) as exc:  # e.g. the controller gave up on a proxy that started too slowly
        why = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise DeployError(f"Serve's controller or HTTP proxy did not start: {why}") from None
    began = time.time()
    client.deploy_apps(schema, _blocking=False)
    wait_running([app.name for app in schema.applications], since=began, timeout=timeout)


def wait_running(names: list[str], *, since: float, timeout: float) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        applications = serve.status().applications
        pending = []
        for name in names:
            app = applications.get(name)
            if app is None or app.last_deployed_time_s < since - 1:
                pending.append(name)
                continue
            if app.status == "DEPLOY_FAILED" or any(
                d.status == "DEPLOY_FAILED" for d in app.deployments.values()
            ):
                raise DeployError(_failure(name, app))
            if app.status != "RUNNING":
                pending.append(name)
                last = _failure(name, app)
        if not pending:
            return
        time.sleep(0.5)
    raise DeployError(f"the Serve application did not start within {timeout:.0f} s. {last}".strip())


def _failure(name: str, app: Any) -> str:
    parts = [f"application {name}: {app.status} {app.message or ''}".strip()]
    for deployment, status in app.deployments.items():
        if status.message:
            parts.append(f"{deployment}: {status.status}: {status.message}")
    return "\n".join(parts)
