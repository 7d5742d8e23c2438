"""The whole service on Ray: photos/s through the API against raw models per core, and what Serve adds to a
cheap request against the same FastAPI app under plain uvicorn. Prints figures, asserts nothing.

    python -m immray.bench.throughput_api ../shared/eval/dev --limit 200
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--config COPY.yaml]
        [--skip-throughput] [--skip-overhead] [--calls 2000] [--clients 16]
    (also: python -m immray.bench.throughput --api ...)

One run starts a local Ray of its own (``ray.init(address="local")``: free ports, never Redis' 6379; as many
CPUs as the config's replicas ask for) and deploys the Serve application of ``configs/serve.local.yaml`` (or
``--config``, a copy to try other batch sizes or replica counts) on a fresh SQLite data directory, or on a
scratch PostgreSQL database (``--postgres``, dropped after). Everything it started is stopped at the end.

- **throughput**: the photos go through the IMM API as a user sends them: BatchIndexFileMeta with 100
  file:// URIs per request, signed (``immray.client.ImmClient``). The clock runs from the first request
  until no photo is Pending: the requests, the ingress' indexing threads (reading, storing), the analysis
  replicas (``@serve.batch``) and the writes. The models load when the replicas start; a warm-up batch
  (two photos per analysis core, in a dataset of its own) is indexed before the clock all the same. The
  reference is the raw models (``Analyzer.analyze_batch`` on photos already in memory, batches of 8, one
  torch thread, mirrored as the server's, no Ray, no HTTP, no database) on one core in this process, before Ray
  starts and after it stops (their mean: other programs' load moves both alike). ratio = photos/s /
  (raw photos/s per core x the FaceAnalysis replicas' CPUs).
- **request overhead**: GetProject (signed) from ``--clients`` threads with a keep-alive connection each,
  ``--calls`` calls after a warm-up, against Serve's HTTP proxy of that deployment and against the same app
  (``build_app`` on the same database, no background services, logging a line per request as a replica
  does) under plain uvicorn in a child process with the API's uvicorn settings (``server_config``: h11, as
  Serve's proxy gets them from ``immray.serve.proxy``), alternated ``--rounds`` times; then one client
  alone, for the latency of a request that waits for no other. req/s, p50, p99, the ratio of the two
  req/s and the p50 Serve adds.

Where this runs beside other work, wall-clock rates move with it; the CPU seconds by process (read from
/proc: this process, the local Ray's, the uvicorn child's; not a PostgreSQL server's), per photo and per
call, move much less, so they are printed too, with the ratios they give: the raw models' CPU per photo over
the analysis replicas' and over the whole service's, and uvicorn's CPU per call over Serve's proxy and
ingress together (what req/s would show where the server's CPU is what limits it).
"""

from __future__ import annotations

import argparse
import copy
import math
import multiprocessing
import os
import queue
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.pool import NullPool

from immray.bench.throughput import find_images
from immray.client import ClientError, ImmClient
from immray.faces.config import DETECTORS
from immray.policy import ADMIN_POLICY
from immray.services import access_keys
from immray.services.database import Database
from immray.settings import Settings
from immray.store import Dataset, File, ObjectStatus, make_engine, normalize_url

BATCH = 100
WARMUP = "warmup"
PROJECT = "bench"
CLIENT = "this process (clients)"
CLIENT_SIDE = (CLIENT, "uvicorn")


@dataclass(frozen=True)
class Key:
    access_key_id: str
    secret: str


# --- CPU seconds by process ----------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, from /proc; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the name may hold spaces and parentheses
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def _label(pid: int, labels: dict[int, str]) -> str:
    if pid in labels:
        return labels[pid]
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    for marker, name in (
        ("ray::ProxyActor", "serve proxy"),
        ("ray::ServeReplica:immray:Ingress", "ingress"),
        ("ray::ServeReplica:immray:FaceAnalysis", "analysis"),
        ("ray::ServeController", "serve controller"),
    ):
        if command.startswith(marker):
            return name
    return "ray (gcs, raylet, agents, workers)" if "ray" in command else "other"


def cpu_snapshot(labels: dict[int, str]) -> dict[int, tuple[str, float]]:
    """CPU seconds of this process and of everything it started (the local Ray, the uvicorn child) by pid;
    ``labels`` names pids known here. Linux only: empty where /proc is missing."""
    if not Path("/proc/self/stat").exists():
        return {}
    parents: dict[int, list[int]] = defaultdict(list)
    cpu: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None:
                parents[stat[0]].append(int(entry.name))
                cpu[int(entry.name)] = stat[1]
    found, todo = {}, [os.getpid()]
    while todo:
        pid = todo.pop()
        if pid in cpu:
            found[pid] = (_label(pid, labels), cpu[pid])
        todo.extend(parents.get(pid, []))
    return found


def cpu_spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds by label between two snapshots (a process that ended in between is not counted)."""
    spent: dict[str, float] = defaultdict(float)
    for pid, (label, seconds) in after.items():
        spent[label] += seconds - before.get(pid, (label, 0.0))[1]
    return dict(spent)


def cpu_line(spent: dict[str, float], per: int, unit: str) -> str:
    if not spent:
        return "CPU by process: /proc not available"
    parts = [
        f"{label} {seconds / per * 1000:.2f}" for label, seconds in sorted(spent.items(), key=lambda i: -i[1])
    ]
    return f"CPU ms per {unit}: " + ", ".join(parts) + f"; total {sum(spent.values()) / per * 1000:.2f}"


# --- the deployment -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def replica_cpus(config: dict[str, Any], name: str) -> float:
    """num_replicas x num_cpus of the deployment ``name`` in the immray application of ``config``."""
    total = 0.0
    for app in config["applications"]:
        for deployment in app.get("deployments") or []:
            if deployment.get("name") == name:
                cpus = (deployment.get("ray_actor_options") or {}).get("num_cpus", 1)
                total += int(deployment.get("num_replicas", 1)) * float(cpus)
    return total


@contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"immray_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield normalize_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def local_ray(num_cpus: int, show_logs: bool) -> Iterator[None]:
    """A Ray of this run's own (never one found on the machine), with Serve stopped and Ray shut down after."""
    import ray
    from ray import serve

    ray.init(
        address="local",  # a new instance even where RAY_ADDRESS or another local Ray exists
        num_cpus=num_cpus,
        namespace="serve",
        include_dashboard=False,
        logging_level="warning",
        log_to_driver=show_logs,
    )
    try:
        yield
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def deploy_serve(config: dict[str, Any], settings: Settings) -> str:
    """Deploy the application with ``settings`` on the connected Ray; returns its proxy's host:port."""
    from immray.serve.app import deploy, with_settings

    port = free_port()
    deploy(with_settings(config, settings, host="127.0.0.1", port=port), timeout=600)
    return f"127.0.0.1:{port}"


def _uvicorn_config(app: Any, sock: socket.socket) -> tuple[Any, str]:
    """The API's own uvicorn settings (h11, IMM's 64 KiB request line), or uvicorn's if they moved."""
    import uvicorn

    try:
        from immray.api.server import server_config
    except ImportError:
        return uvicorn.Config(app, log_level="warning"), "uvicorn.Config defaults (server_config is gone)"
    host, port = sock.getsockname()
    return server_config(app, host, port, log_level="warning"), "immray.api.server.server_config (h11)"


def _run_plain_uvicorn(overrides: dict[str, Any], ready: Any, log_path: str) -> None:
    """The child process: the API of ``overrides``' settings under plain uvicorn, no background services,
    logging as an ingress replica does (a line per request) into ``log_path``."""
    import sys

    import uvicorn

    from immray.api.bootstrap import build_app
    from immray.observability.logs import configure_logging

    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - the process's stderr until it exits
    os.dup2(log.fileno(), 2)
    sys.stderr = log
    settings = Settings.from_overrides(overrides)
    configure_logging(settings.log_format)
    db = Database.connect(settings.resolved_database_url)
    app = build_app(settings, db=db, services=lambda context: [])
    # IPPROTO_TCP: asyncio sets TCP_NODELAY on the accepted connections only when the listener says TCP.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config, how = _uvicorn_config(app, sock)
    ready.put((sock.getsockname()[1], how))
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        db.close()


@contextmanager
def plain_uvicorn(settings: Settings, labels: dict[int, str]) -> Iterator[tuple[str, str]]:
    """The same app under plain uvicorn in a child process; yields (host:port, how uvicorn was set up)."""
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    log_path = settings.data_dir / "uvicorn.log"
    process = context.Process(
        target=_run_plain_uvicorn, args=(settings.to_overrides(), ready, str(log_path)), daemon=True
    )
    process.start()
    labels[process.pid] = "uvicorn"
    try:
        while True:
            try:
                port, how = ready.get(timeout=1)
                break
            except queue.Empty:
                if not process.is_alive():
                    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
                    raise RuntimeError(f"the uvicorn child exited:\n{tail}") from None
        yield f"127.0.0.1:{port}", how
    finally:
        process.terminate()
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join(10)


def wait_answering(address: str, key: Key, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    with ImmClient(address, key.access_key_id, key.secret, timeout=10) as client:
        while True:
            try:
                client.call("GetProject", {"ProjectName": PROJECT})
                return
            except ClientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


# --- throughput -----------------------------------------------------------------------------------------


def index_all(address: str, key: Key, files: list[Path], db: Database, warmup: int) -> float:
    """Seconds from the first BatchIndexFileMeta until no photo is Pending, after ``warmup`` photos indexed
    into a dataset of their own."""
    with ImmClient(address, key.access_key_id, key.secret, timeout=600) as client:
        for dataset in (WARMUP, "photos"):
            client.call("CreateDataset", {"ProjectName": PROJECT, "DatasetName": dataset})
        client.call(
            "BatchIndexFileMeta",
            {
                "ProjectName": PROJECT,
                "DatasetName": WARMUP,
                "Files": [{"URI": path.as_uri()} for path in files[:warmup]],
            },
        )
        wait_until_none_pending(db)
        began = time.perf_counter()
        for start in range(0, len(files), BATCH):
            batch = [{"URI": path.as_uri()} for path in files[start : start + BATCH]]
            client.call(
                "BatchIndexFileMeta", {"ProjectName": PROJECT, "DatasetName": "photos", "Files": batch}
            )
    wait_until_none_pending(db)
    return time.perf_counter() - began


def wait_until_none_pending(db: Database) -> None:
    while True:
        with db.read() as session:
            pending = session.scalar(
                select(func.count(File.id)).where(File.object_status == ObjectStatus.PENDING)
            )
        if not pending:
            return
        time.sleep(0.1)


def count_outcomes(db: Database) -> tuple[int, int, int]:
    """Indexed, failed and faces of the measured dataset (not the warm-up's)."""
    measured = File.dataset_id.in_(select(Dataset.id).where(Dataset.name != WARMUP))
    with db.read() as session:
        indexed = session.scalar(
            select(func.count(File.id)).where(measured, File.object_status == ObjectStatus.INDEXED)
        )
        failed = session.scalar(
            select(func.count(File.id)).where(measured, File.object_status == ObjectStatus.FAILED)
        )
        faces = session.scalar(select(func.coalesce(func.sum(File.figure_count), 0)).where(measured))
    return indexed, failed, faces


@contextmanager
def one_thread_analyzer(detector: str, mirror: bool) -> Iterator[Any]:
    """The face models on one torch thread and one BLAS thread, as an analysis replica or a backfill actor
    of one CPU runs them (Ray sets their OMP_NUM_THREADS to their CPUs; left at a thread per core, OpenBLAS
    spent about a third more CPU a photo); the process's thread counts are restored after."""
    import torch
    from threadpoolctl import threadpool_limits

    from immray.faces import AnalyzerConfig, get_analyzer

    analyzer = get_analyzer(AnalyzerConfig(detector=detector, mirror=mirror, device="cpu"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield analyzer
    finally:
        torch.set_num_threads(threads)


def raw_models(files: list[Path], detector: str, mirror: bool, batch: int = 8) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and faces of the face models called directly in this process
    (:func:`one_thread_analyzer`; ``Analyzer.analyze_batch`` on photos already in memory, as a replica gets
    them)."""
    from immray.faces import ImageError

    photos = [path.read_bytes() for path in files]
    with one_thread_analyzer(detector, mirror) as analyzer:
        analyzer.analyze_batch(photos[:batch])  # warm-up, as the replicas had theirs
        began, cpu = time.perf_counter(), time.process_time()
        faces = 0
        for lo in range(0, len(photos), batch):
            faces += sum(
                len(o.faces)
                for o in analyzer.analyze_batch(photos[lo : lo + batch])
                if not isinstance(o, ImageError)
            )
        return time.perf_counter() - began, time.process_time() - cpu, faces


@dataclass
class Throughput:
    seconds: float
    indexed: int
    failed: int
    faces: int
    cpu: dict[str, float]


def measure_throughput(
    address: str, key: Key, db: Database, files: list[Path], cores: float, labels: dict[int, str]
) -> Throughput:
    warmup = max(1, math.ceil(2 * cores))
    before = cpu_snapshot(labels)
    seconds = index_all(address, key, files, db, warmup)
    spent = cpu_spent(before, cpu_snapshot(labels))  # the warm-up's photos are in it: divided by all
    indexed, failed, faces = count_outcomes(db)
    scale = len(files) / (len(files) + warmup)
    return Throughput(seconds, indexed, failed, faces, {k: v * scale for k, v in spent.items()})


# --- request overhead -----------------------------------------------------------------------------------


@dataclass
class Load:
    target: str
    clients: int
    seconds: float
    latencies: list[float]
    errors: int
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def calls(self) -> int:
        return len(self.latencies) + self.errors

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def hammer(
    target: str, address: str, key: Key, clients: int, calls: int, warmup: int, labels: dict[int, str]
) -> Load:
    """``calls`` GetProject spread over ``clients`` threads (a keep-alive connection each), after
    ``warmup`` calls; the clock starts when every thread is ready."""
    per_client, warm = max(1, calls // clients), math.ceil(warmup / clients)
    barrier = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    failures: list[BaseException] = []

    def run(number: int) -> None:
        try:
            with ImmClient(address, key.access_key_id, key.secret, timeout=120) as client:
                for _ in range(warm):
                    client.call("GetProject", {"ProjectName": PROJECT})
                barrier.wait()
                times = latencies[number]
                for _ in range(per_client):
                    began = time.perf_counter()
                    try:
                        client.call("GetProject", {"ProjectName": PROJECT})
                    except ClientError:
                        errors[number] += 1
                        continue
                    times.append(time.perf_counter() - began)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    with suppress(threading.BrokenBarrierError):  # a client failed: reported below
        barrier.wait()
    before, began = cpu_snapshot(labels), time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    spent = cpu_spent(before, cpu_snapshot(labels))
    if failures:
        raise RuntimeError(f"a client of {target} failed: {failures[0]!r}") from failures[0]
    return Load(target, clients, seconds, [t for times in latencies for t in times], sum(errors), spent)


def pooled(loads: list[Load]) -> Load:
    cpu: dict[str, float] = defaultdict(float)
    for load in loads:
        for label, seconds in load.cpu.items():
            cpu[label] += seconds
    return Load(
        loads[0].target,
        loads[0].clients,
        sum(load.seconds for load in loads),
        [t for load in loads for t in load.latencies],
        sum(load.errors for load in loads),
        dict(cpu),
    )


def load_line(load: Load) -> str:
    return (
        f"{load.target:<8} {load.clients:>7} {load.calls:>6} {load.errors:>6} {load.seconds:>8.2f} "
        f"{load.rate:>8.0f} {load.quantile(0.5):>8.2f} {load.quantile(0.99):>8.2f}"
    )


LOAD_HEADER = f"{'server':<8} {'clients':>7} {'calls':>6} {'errors':>6} {'seconds':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"


def measure_overhead(serve_address: str, settings: Settings, key: Key, args, labels: dict[int, str]) -> None:
    with plain_uvicorn(settings, labels) as (uvicorn_address, how):
        wait_answering(uvicorn_address, key)
        targets = {"serve": serve_address, "uvicorn": uvicorn_address}
        print(
            f"\nRequest overhead: GetProject, {args.clients} clients x {args.calls // args.clients} calls "
            f"after {args.warmup_calls} warm-up calls, {args.rounds} round(s) alternated; plain uvicorn: {how}",
            flush=True,
        )
        print(LOAD_HEADER)
        concurrent: dict[str, list[Load]] = {"serve": [], "uvicorn": []}
        for _ in range(args.rounds):
            for target, address in targets.items():
                load = hammer(target, address, key, args.clients, args.calls, args.warmup_calls, labels)
                concurrent[target].append(load)
                print(load_line(load), f" load {os.getloadavg()[0]:.1f}", flush=True)
        serial = {
            target: hammer(target, address, key, 1, args.serial_calls, 20, labels)
            for target, address in targets.items()
        }
        for load in serial.values():
            print(load_line(load), f" load {os.getloadavg()[0]:.1f}", flush=True)
    serve, plain = pooled(concurrent["serve"]), pooled(concurrent["uvicorn"])
    print(f"\nall rounds, {args.clients} clients:")
    for load in (serve, plain):
        print(load_line(load))
        print(f"    {cpu_line(load.cpu, load.calls, 'call')}")
    print(
        f"Serve / uvicorn req/s: {serve.rate / plain.rate:.2f}; p50 added by Serve: "
        f"{serve.quantile(0.5) - plain.quantile(0.5):+.2f} ms ({args.clients} clients), "
        f"{serial['serve'].quantile(0.5) - serial['uvicorn'].quantile(0.5):+.2f} ms (one client)"
    )
    served = (serve.cpu.get("serve proxy", 0) + serve.cpu.get("ingress", 0)) / serve.calls
    plainly = plain.cpu.get("uvicorn", 0) / plain.calls
    if served and plainly:  # where the server is what limits req/s, this is their ratio on idle cores
        print(
            f"server CPU per call (Serve: proxy + ingress; uvicorn: its process): {served * 1000:.2f} ms vs "
            f"{plainly * 1000:.2f} ms, ratio {plainly / served:.2f}"
        )


# --- the run ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    from immray.serve.app import LOCAL_CONFIG, load_config

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "directory", type=Path, help="an evaluation folder (its photos are found recursively)"
    )
    parser.add_argument("--limit", type=int, default=200, help="use the first N photos (sorted by path)")
    parser.add_argument("--config", type=Path, default=LOCAL_CONFIG, help="the Serve config to deploy")
    parser.add_argument(
        "--postgres", help="a PostgreSQL URL allowed to create a scratch database (default: SQLite)"
    )
    parser.add_argument(
        "--detector", choices=DETECTORS, default=Settings().detector, help="the server's and the reference's"
    )
    parser.add_argument(
        "--indexing-concurrency", type=int, help="photos in flight per ingress (default: the setting's)"
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients of the overhead run")
    parser.add_argument("--calls", type=int, default=2000, help="timed GetProject calls per round and server")
    parser.add_argument("--warmup-calls", type=int, default=100, help="untimed calls before each round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per server, alternated")
    parser.add_argument("--serial-calls", type=int, default=300, help="calls of the one-client run")
    parser.add_argument("--ray-logs", action="store_true", help="show the replicas' logs")
    args = parser.parse_args(argv)

    root = args.directory.resolve()
    files = find_images(root, args.limit)
    if not files and not args.skip_throughput:
        parser.error(f"no images under {root}")
    config = copy.deepcopy(load_config(args.config))
    cores = replica_cpus(config, "FaceAnalysis")
    ray_cpus = max(1, math.ceil(cores + replica_cpus(config, "Ingress")))
    mirror = Settings().mirror
    measured = "no photos" if args.skip_throughput else f"{len(files)} photos from {root}"
    print(
        f"{measured}; detector {args.detector}, mirror {mirror}; config {args.config} "
        f"(FaceAnalysis CPUs {cores:g}, Ray CPUs {ray_cpus}); {os.cpu_count()} cores here; "
        f"load average at start {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    raw = []
    if not args.skip_throughput:
        raw.append(raw_models(files, args.detector, mirror))
        print(
            f"raw models before: {raw[0][0]:.1f} s wall, {raw[0][1]:.1f} s CPU, {raw[0][2]} faces", flush=True
        )

    labels: dict[int, str] = {os.getpid(): CLIENT}
    result = None
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="immray-bench-")))
        url = stack.enter_context(scratch_postgres(args.postgres)) if args.postgres else None
        overrides: dict[str, Any] = {
            "data_dir": work,
            "allowed_roots": [root],
            "detector": args.detector,
            "ray_namespace": f"immray-bench-{uuid.uuid4().hex[:8]}",
        }
        if url:
            overrides["database_url"] = url
        if args.indexing_concurrency:
            overrides["indexing_concurrency"] = args.indexing_concurrency
        settings = Settings(**overrides)
        db = Database.connect(settings.resolved_database_url, migrate=True)
        stack.callback(db.close)
        created = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
        key = Key(created.info.access_key_id, created.secret)

        began = time.perf_counter()
        stack.enter_context(local_ray(ray_cpus, args.ray_logs))
        address = deploy_serve(config, settings)
        print(
            f"Ray and the Serve application ({db.engine.dialect.name}) up in {time.perf_counter() - began:.0f} s; "
            f"indexing concurrency {settings.indexing_concurrency}",
            flush=True,
        )
        with ImmClient(address, key.access_key_id, key.secret) as client:
            client.call("CreateProject", {"ProjectName": PROJECT})
        if not args.skip_throughput:
            result = measure_throughput(address, key, db, files, cores, labels)
            print(
                f"throughput: {result.indexed + result.failed} photos in {result.seconds:.2f} s "
                f"(load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        if not args.skip_overhead:
            measure_overhead(address, settings, key, args, labels)

    if result is not None:
        raw.append(raw_models(files, args.detector, mirror))
        per_core = len(files) / statistics.mean(r[0] for r in raw)
        cpu_per_photo = statistics.mean(r[1] for r in raw) / len(files)
        photos = result.indexed + result.failed
        rate = photos / result.seconds
        print(
            f"\nraw models, one core: {per_core:.2f} photos/s, {cpu_per_photo * 1000:.0f} ms CPU per photo, "
            f"{raw[0][2]} faces (runs of {raw[0][0]:.1f} s and {raw[1][0]:.1f} s)"
        )
        print(
            f"{'mode':<6} {'cores':>5} {'photos':>6} {'failed':>6} {'faces':>6} {'seconds':>8} {'photos/s':>9} "
            f"{'faces/s':>8} {'ratio':>6}"
        )
        print(
            f"{'serve':<6} {cores:>5g} {photos:>6} {result.failed:>6} {result.faces:>6} {result.seconds:>8.2f} "
            f"{rate:>9.2f} {result.faces / result.seconds:>8.2f} {rate / (per_core * cores):>6.2f}"
        )
        print(f"    {cpu_line(result.cpu, photos, 'photo')}")
        analysis = result.cpu.get("analysis", 0.0) / photos if photos else 0.0
        service = sum(v for k, v in result.cpu.items() if k not in CLIENT_SIDE) / photos if photos else 0.0
        if analysis and service:  # CPU time moves much less than wall time with the machine's load
            print(
                f"    the raw models' CPU per photo / the analysis replicas': {cpu_per_photo / analysis:.2f}; "
                f"/ the whole service's (every process of the run but this one): {cpu_per_photo / service:.2f}"
            )
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
