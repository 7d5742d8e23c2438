"""The whole API server (build_app: store-backed keys, policies, nonces) through the official SDK.

Prints figures, asserts nothing. Run:
``python -m immray.bench.api_server [--calls 200] [--projects 1000] [--database-url postgresql+psycopg://...]``
(default: a new SQLite file in a temporary directory; with a PostgreSQL URL a scratch database is created on
that server and dropped afterwards, the database named in the URL is only used to connect).

Figures: per-request access control in process (secret + policy look-ups), then serial SDK calls over
loopback: GetProject, GetDataset with statistics, a ListProjects page for the admin key, and the same listing
for a key that may see one project among ``--projects`` (the filtered listing's worst case: it reads them all).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from alibabacloud_imm20200930 import models
from alibabacloud_imm20200930.client import Client
from alibabacloud_tea_openapi.models import Config
from sqlalchemy.pool import NullPool

from immray.api import Resource, build_server
from immray.api.bootstrap import build_app
from immray.api.server import bound_socket
from immray.policy import ADMIN_POLICY, dataset_policy
from immray.services import access_keys
from immray.services.database import Database
from immray.settings import Settings
from immray.store import Dataset, Project, make_engine, normalize_url


def _timed(call, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def _report(label: str, times: list[float]) -> None:
    median = statistics.median(times) * 1000
    p95 = sorted(times)[max(int(len(times) * 0.95) - 1, 0)] * 1000
    print(
        f"{label:<44}{median:8.2f} ms median, {p95:7.2f} ms p95, {len(times) / sum(times):6.0f} calls/s (serial)"
    )


def _seed(db: Database, projects: int) -> None:
    with db.write() as session:
        for i in range(projects):
            project = Project(name=f"bench{i:06d}", tags=[])
            project.datasets.append(Dataset(name="d", workflow_parameters=[]))
            session.add(project)


@contextlib.contextmanager
def scratch_database(url: str | None, data_dir: Path) -> Iterator[str]:
    """The URL to benchmark on: a new SQLite file, or a new PostgreSQL database dropped at the end."""
    if url is None or normalize_url(url).get_backend_name() == "sqlite":
        yield url or f"sqlite:///{data_dir / 'immray.db'}"
        return
    admin = make_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"immray_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield normalize_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="requests per measurement")
    parser.add_argument("--projects", type=int, default=1000, help="projects (one dataset each) to list")
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="immray-bench-") as data_dir,
        scratch_database(args.database_url, Path(data_dir)) as url,
    ):
        run(Settings(data_dir=Path(data_dir), database_url=url), args)


def run(settings: Settings, args: argparse.Namespace) -> None:
    db = Database.connect(settings.resolved_database_url, migrate=True)
    _seed(db, args.projects)
    admin = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
    narrow = access_keys.create_key(db, dataset_policy(f"bench{args.projects // 2:06d}", "d"))
    print(f"database: {db.engine.url.render_as_string(hide_password=True)}, {args.projects} projects")

    app = build_app(settings, db=db)
    access = app.state.context.access
    resource = Resource("bench000000", "d")
    times = _timed(lambda: access.authorize(admin.info.access_key_id, "GetDataset", resource), args.calls * 5)
    print(f"{'authorize (policy look-up + match):':<44}{statistics.median(times) * 1e6:8.1f} µs median")
    times = _timed(lambda: access.secret_of(admin.info.access_key_id), args.calls * 5)
    print(f"{'secret look-up:':<44}{statistics.median(times) * 1e6:8.1f} µs median")

    sock = bound_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = build_server(app, "127.0.0.1", port, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:

        def client(key: access_keys.NewKey) -> Client:
            return Client(
                Config(
                    access_key_id=key.info.access_key_id,
                    access_key_secret=key.secret,
                    endpoint=f"127.0.0.1:{port}",
                    protocol="http",
                )
            )

        sdk, narrow_sdk = client(admin), client(narrow)
        get = models.GetProjectRequest(project_name="bench000000")
        _report("SDK GetProject:", _timed(lambda: sdk.get_project(get), args.calls))
        stats = models.GetDatasetRequest(project_name="bench000000", dataset_name="d", with_statistics=True)
        _report("SDK GetDataset WithStatistics:", _timed(lambda: sdk.get_dataset(stats), args.calls))
        page = models.ListProjectsRequest(max_results=100)
        _report(
            "SDK ListProjects, 100 per page (admin):", _timed(lambda: sdk.list_projects(page), args.calls)
        )
        count = max(args.calls // 10, 5)
        label = f"SDK ListProjects, 1 visible of {args.projects}:"
        _report(label, _timed(lambda: narrow_sdk.list_projects(page), count))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        db.close()


if __name__ == "__main__":
    main()
