"""``immray status``: what the deployment is doing now, from Ray and from the store.

From Ray: the cluster reached (nodes alive, CPUs and GPUs) through the state API, the Serve applications and
their deployments' replicas (``serve.status()``), and each dataset actor of the server's namespace: where it
runs and, asked itself (``DatasetActor.status``), the task it runs now and those queued in it. From the store:
the tasks running (lease owner, progress, attempt; an expired lease means their runner died and the sweeper
sends them again), the tasks waiting, and the files waiting for their analysis, per dataset.

Each half is shown when the other cannot be read. The address is what ``ray.init`` takes (``host:port`` of
the GCS, ``auto``, ``ray://``) or a dashboard URL (``http://head:8265``): the latter is read over HTTP with no
Ray driver (the state API, and Serve's REST API), so the actors are listed but not asked what they run.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from immray.actors.dataset import ACTOR_PREFIX
from immray.services.database import Database
from immray.settings import Settings
from immray.store import Dataset, File, ObjectStatus, Project, Task, TaskStatus, utcnow

# The first bytes an HTTP/2 client sends, and an empty SETTINGS frame: a gRPC server (Ray's GCS, the Ray
# Client server) answers with its own SETTINGS frame; anything else (Redis on 6379, say) does not.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS_FRAME = 0x04


class Unreachable(Exception):
    """Ray cannot be reached (or read) at the address; the message says why."""


@dataclass(frozen=True)
class ClusterSeen:
    address: str  # the GCS host:port (or Ray Client address) connected to, or the dashboard URL read
    nodes_alive: int
    cpus: float
    gpus: float
    cpus_available: float | None  # None: read from a dashboard URL, which does not tell it
    gpus_available: float | None


@dataclass(frozen=True)
class DeploymentSeen:
    name: str
    status: str  # HEALTHY, UPDATING, UNHEALTHY, ...
    replicas: dict[str, int]  # replica state (RUNNING, STARTING, ...) -> how many
    message: str


@dataclass(frozen=True)
class ServeAppSeen:
    name: str
    status: str  # RUNNING, DEPLOYING, DEPLOY_FAILED, ...
    message: str
    deployments: list[DeploymentSeen]


@dataclass(frozen=True)
class ActorSeen:
    name: str  # dataset:<project>/<dataset>#<dataset id>
    state: str  # ALIVE, RESTARTING, PENDING_CREATION, ...
    node: str | None  # the node's IP
    pid: int | None
    restarts: int
    running: list[str] | None  # task ids; None when the actor was not asked or did not answer
    queued: list[str] | None
    error: str | None = None  # why it did not answer


@dataclass(frozen=True)
class RunningTask:
    task_id: str
    task_type: str
    project: str
    dataset: str | None
    progress: int
    attempt: int
    owner: str  # the lease owner: ray:<gcs>/<namespace>/<actor name>#<life>
    lease_expired: bool  # its runner died; the sweeper sends it again


@dataclass(frozen=True)
class WaitingTask:
    task_id: str
    task_type: str
    project: str
    dataset: str | None
    attempt: int  # runs cut short so far


@dataclass(frozen=True)
class PendingFiles:
    project: str
    dataset: str
    files: int


@dataclass
class Status:
    namespace: str  # the Ray namespace of the dataset actors
    ray: ClusterSeen | None = None
    ray_error: str | None = None
    serve_apps: list[ServeAppSeen] = field(default_factory=list)
    serve_error: str | None = None
    dataset_actors: list[ActorSeen] = field(default_factory=list)
    actors_asked: bool = False  # False on a dashboard URL: no driver to call the actors with
    running_tasks: list[RunningTask] = field(default_factory=list)
    waiting_tasks: list[WaitingTask] = field(default_factory=list)
    pending_files: list[PendingFiles] = field(default_factory=list)
    store: str | None = None  # the database read, its password hidden
    store_error: str | None = None

    @property
    def complete(self) -> bool:
        """Both Ray and the store were read."""
        return self.ray_error is None and self.store_error is None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def gather_status(
    settings: Settings, *, address: str | None = None, namespace: str | None = None, timeout: float = 2.0
) -> Status:
    """The status from the Ray at ``address`` (None: the one this process is connected to, else ``auto``)
    and from the settings' database; ``timeout`` bounds each wait for Ray (the probe, the actors' answers)."""
    status = Status(namespace=namespace or settings.ray_namespace)
    _from_store(settings, status)
    try:
        if address and address.startswith(("http://", "https://")):
            _from_dashboard(address.rstrip("/"), status, timeout)
        else:
            _from_driver(address, status, timeout)
    except Unreachable as exc:
        status.ray_error = str(exc)
    return status


# --- the store ----------------------------------------------------------------------------------------------


def _from_store(settings: Settings, status: Status) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from immray.api.startup import StartupError, open_database

    try:
        db, status.store = open_database(settings, migrate=False)
    except StartupError as exc:
        status.store_error = str(exc)
        return
    try:
        _read_store(db, status)
    except SQLAlchemyError as exc:
        status.store_error = f"cannot read {status.store}: {getattr(exc, 'orig', None) or exc}"
    finally:
        db.close()


def _read_store(db: Database, status: Status) -> None:
    now = utcnow()
    with db.read() as session:
        rows = session.execute(
            select(Task, Project.name, Dataset.name)
            .join(Project, Project.id == Task.project_id)
            .outerjoin(Dataset, Dataset.id == Task.dataset_id)
            .where(Task.status == TaskStatus.RUNNING)
            .order_by(Task.id)
        ).all()
        for task, project, dataset in rows:
            if task.lease_owner is None:
                status.waiting_tasks.append(
                    WaitingTask(task.task_id, task.task_type, project, dataset, task.attempts)
                )
                continue
            status.running_tasks.append(
                RunningTask(
                    task_id=task.task_id,
                    task_type=task.task_type,
                    project=project,
                    dataset=dataset,
                    progress=task.progress,
                    attempt=task.attempts,
                    owner=task.lease_owner,
                    lease_expired=_expired(task.lease_expires_at, now),
                )
            )
        pending = session.execute(
            select(Project.name, Dataset.name, func.count(File.id))
            .join(Dataset, Dataset.id == File.dataset_id)
            .join(Project, Project.id == Dataset.project_id)
            .where(File.object_status == ObjectStatus.PENDING)
            .group_by(Project.name, Dataset.name)
            .order_by(Project.name, Dataset.name)
        ).all()
        status.pending_files = [PendingFiles(project, dataset, count) for project, dataset, count in pending]


def _expired(at: datetime | None, now: datetime) -> bool:
    return at is not None and at < now


# --- Ray, through a driver ----------------------------------------------------------------------------------


def _from_driver(address: str | None, status: Status, timeout: float) -> None:
    import ray

    with _connected(address, status.namespace, timeout) as reached:
        # The state API asks the GCS where the dashboard is.
        state_address = reached if reached.startswith("ray://") else ray.get_runtime_context().gcs_address
        try:
            with _env_without("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
                nodes = _alive_nodes(state_address)
                actors = _dataset_actors(state_address, status.namespace)
        except Exception as exc:  # the state API's errors are of several kinds (RayStateApiException, ...)
            raise Unreachable(f"cannot read Ray's state API through {state_address}: {exc}") from None
        available = ray.available_resources()
        status.ray = _cluster(reached, nodes, available.get("CPU", 0.0), available.get("GPU", 0.0))
        _serve_from_driver(status)
        status.dataset_actors = _asked(actors, _node_ips(nodes), status.namespace, timeout)
        status.actors_asked = True


@contextlib.contextmanager
def _connected(address: str | None, namespace: str, timeout: float) -> Iterator[str]:
    """A driver connected to the Ray at ``address`` (this process's own connection when it has one); yields
    the address reached. Ray's own connect retries for minutes against a dead address: probed first."""
    import ray

    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address not in (None, "auto", current) and _bootstrap_address(address) != current:
            raise Unreachable(f"this process is connected to the Ray at {current}, not {address}")
        yield current
        return
    given = address or "auto"
    target = _bootstrap_address(given)
    shown = target if given in (target, "auto") else f"{given} ({target})"
    _probe(target, shown, timeout)
    try:
        # ``auto`` given as such: Ray then uses this machine's auth token, as it never does for an address.
        ray.init(address=given, namespace=namespace, logging_level="error", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        hint = ""
        if given != "auto" and os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            hint = " (if the cluster uses token authentication, as a Ray started by immray serve does, set "
            hint += "RAY_AUTH_MODE=token, or leave --address out on the Ray's own machine)"
        raise Unreachable(f"cannot connect to the Ray at {shown}: {exc}{hint}") from None
    try:
        yield given if given.startswith("ray://") else ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _bootstrap_address(address: str) -> str:
    """The GCS address ``ray.init`` would connect to: ``auto`` resolved (RAY_ADDRESS, then the Ray started
    last on this machine), a loopback host replaced by this node's IP, as Ray does."""
    if address.startswith("ray://"):
        return address
    from ray._private.services import canonicalize_bootstrap_address

    try:
        found = canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError) as exc:
        raise Unreachable(f"no Ray found at {address}: {exc}") from None
    if found is None:
        raise Unreachable("no Ray runs on this machine (is immray serve running? or give --address)")
    return found


def _probe(target: str, shown: str, timeout: float) -> None:
    """Fail at once when nothing, or something other than a gRPC server, listens at ``target``."""
    host, _, port = target.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return  # a TLS handshake would come first: the connection is all we can check
            sock.settimeout(timeout)
            sock.sendall(_HTTP2_PREFACE)
            head = b""
            while len(head) < 4:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except (OSError, ValueError) as exc:
        raise Unreachable(f"nothing answers at {shown}: {exc}") from None
    if len(head) < 4 or head[3] != _SETTINGS_FRAME:
        raise Unreachable(f"{shown} is not Ray (no gRPC server answers there)")


@contextlib.contextmanager
def _env_without(*names: str) -> Iterator[None]:
    """Ray's state API lets these variables override the address it is given."""
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _serve_from_driver(status: Status) -> None:
    from ray import serve

    try:
        found = serve.status()
    except Exception as exc:  # the controller died or is restarting: the rest of the status still counts
        status.serve_error = f"{type(exc).__name__}: {exc}"
        return
    status.serve_apps = [
        ServeAppSeen(
            name=name,
            status=_text(app.status),
            message=app.message,
            deployments=[
                DeploymentSeen(
                    name=deployment_name,
                    status=_text(deployment.status),
                    replicas={_text(state): count for state, count in deployment.replica_states.items()},
                    message=deployment.message,
                )
                for deployment_name, deployment in app.deployments.items()
            ],
        )
        for name, app in found.applications.items()
    ]


def _text(value: Any) -> str:
    """A Serve status as its name (Serve gives its str enums, or already their values)."""
    return str(getattr(value, "value", value))


def _asked(actors: list[Any], node_ips: dict[str, str], namespace: str, timeout: float) -> list[ActorSeen]:
    """Each live actor asked what it runs, all at once, waiting ``timeout`` seconds for the answers."""
    import ray

    calls: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for actor in actors:
        if actor.state != "ALIVE":
            continue
        try:
            calls[actor.name] = ray.get_actor(actor.name, namespace=namespace).status.remote()
        except ValueError as exc:  # exited since it was listed
            errors[actor.name] = str(exc)
    ready, _ = ray.wait(list(calls.values()), num_returns=len(calls), timeout=timeout) if calls else ([], [])
    answers: dict[str, dict[str, Any]] = {}
    for name, ref in calls.items():
        if ref not in ready:
            errors[name] = f"no answer within {timeout:g} s"
            continue
        try:
            answers[name] = ray.get(ref)
        except Exception as exc:  # it died while answering
            errors[name] = f"{type(exc).__name__}: {exc}"
    return [_actor(actor, node_ips, answers.get(actor.name), errors.get(actor.name)) for actor in actors]


# --- Ray, through its dashboard -----------------------------------------------------------------------------


def _from_dashboard(url: str, status: Status, timeout: float) -> None:
    import httpx
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient  # the client of `serve status -a URL`

    try:
        httpx.get(f"{url}/api/version", timeout=timeout)  # any answer will do (it may ask for Ray's token)
    except httpx.HTTPError as exc:
        raise Unreachable(f"no Ray dashboard answers at {url}: {exc}") from None
    try:
        with _env_without("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
            nodes = _alive_nodes(url)
            actors = _dataset_actors(url, status.namespace)
    except Exception as exc:  # the state API's errors are of several kinds (RayStateApiException, ...)
        raise Unreachable(f"cannot read Ray's state API at {url}: {exc}") from None
    status.ray = _cluster(url, nodes, None, None)
    status.dataset_actors = [_actor(actor, _node_ips(nodes), None, None) for actor in actors]
    try:
        details = ServeSubmissionClient(url).get_serve_details()
    except Exception as exc:  # RuntimeError with the dashboard's answer, or the connection's error
        status.serve_error = f"{type(exc).__name__}: {exc}"
        return
    status.serve_apps = [
        ServeAppSeen(
            name=name,
            status=app.get("status", ""),
            message=app.get("message", ""),
            deployments=[
                DeploymentSeen(
                    name=deployment_name,
                    status=deployment.get("status", ""),
                    replicas=_count(replica.get("state", "") for replica in deployment.get("replicas", [])),
                    message=deployment.get("message", ""),
                )
                for deployment_name, deployment in (app.get("deployments") or {}).items()
            ],
        )
        for name, app in (details.get("applications") or {}).items()
    ]


def _count(states: Iterator[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return counts


# --- both ---------------------------------------------------------------------------------------------------


def _alive_nodes(address: str) -> list[Any]:
    from ray.util.state import list_nodes

    return list_nodes(address=address, filters=[("state", "=", "ALIVE")], limit=10_000)


def _dataset_actors(address: str, namespace: str) -> list[Any]:
    """The namespace's dataset actors that have not exited (an idle one exits; the next task makes it)."""
    from ray.util.state import list_actors

    actors = list_actors(
        address=address,
        filters=[("ray_namespace", "=", namespace), ("state", "!=", "DEAD")],
        limit=10_000,
        detail=True,
    )
    return sorted((a for a in actors if (a.name or "").startswith(ACTOR_PREFIX)), key=lambda a: a.name)


def _node_ips(nodes: list[Any]) -> dict[str, str]:
    return {node.node_id: node.node_ip for node in nodes}


def _cluster(
    address: str, nodes: list[Any], cpus_available: float | None, gpus_available: float | None
) -> ClusterSeen:
    def total(resource: str) -> float:
        return sum(float((node.resources_total or {}).get(resource, 0.0)) for node in nodes)

    return ClusterSeen(
        address=address,
        nodes_alive=len(nodes),
        cpus=total("CPU"),
        gpus=total("GPU"),
        cpus_available=cpus_available,
        gpus_available=gpus_available,
    )


def _actor(
    actor: Any, node_ips: dict[str, str], answer: dict[str, Any] | None, error: str | None
) -> ActorSeen:
    return ActorSeen(
        name=actor.name,
        state=actor.state,
        node=node_ips.get(actor.node_id or "") or None,
        pid=actor.pid or None,
        restarts=int(getattr(actor, "num_restarts", 0) or 0),
        running=list(answer["running"]) if answer is not None else None,
        queued=list(answer["queued"]) if answer is not None else None,
        error=error,
    )
