"""A backfill job's throughput against the raw face models on the same cores.

    python -m immray.bench.backfill ../shared/eval/dev/images [--limit N] [--cpus 2] [--batch 8]
        [--detector accurate] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
    python -m immray.bench.backfill DIR --address http://head:8265 --actors 2 --cpus 2   # a running cluster

Locally it starts a Ray of its own (``--cpus`` CPUs, its dashboard for the job API), a milvus-lite server
and a scratch database (SQLite, or a scratch PostgreSQL database with ``--postgres``), submits
``immray.jobs.backfill`` over the photos (all, or the first ``--limit``; symlinked into a scratch folder)
with a pool of one actor per CPU, and follows it. With ``--address`` it submits to that cluster instead, whose nodes'
environment names the database, Milvus and the roots (DIR must be under them; ``--limit`` is ignored).

It prints the backfill's photos/s against the raw face models on the same cores:

- the backfill: once the pool was up (the batches begun after the pool's first batch ended, over the time
  from that end to the last batch's end: what a long backfill runs at), the whole analysis phase (with the
  pool's start: actors, models), and the whole job from submission to end (listing, recording, the
  clustering task);
- the raw models (``Analyzer.analyze_batch`` on photos already in memory, one torch and one BLAS thread a
  process, as a pool actor of one CPU has them): ``--cpus`` processes at once for ``--raw-seconds``, the
  photos dealt between them, so they share the cores' caches and memory bandwidth as the pool does; and
  one process alone, for the CPU-seconds a photo costs.

On a shared machine the clock counts others' work too; the CPU-seconds by process (sampled while the job
runs) say where the time went.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from immray.bench.throughput import find_images
from immray.bench.throughput_api import (
    cpu_snapshot,
    free_port,
    one_thread_analyzer,
    raw_models,
    scratch_postgres,
)
from immray.jobs import backfill_client
from immray.jobs.backfill_pool import PoolSpec
from immray.jobs.backfill_progress import Progress


@contextlib.contextmanager
def local_cluster(cpus: int) -> Iterator[str]:
    """A Ray of this run's own with its dashboard; yields the job API's address."""
    import ray

    context = ray.init(
        address="local",
        num_cpus=cpus,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=free_port(),
        logging_level="warning",
    )
    try:
        yield "http://" + context.dashboard_url.removeprefix("http://")
    finally:
        ray.shutdown()


@contextlib.contextmanager
def local_stores(
    scratch: Path, roots: list[Path], detector: str, postgres: str | None
) -> Iterator[dict[str, str]]:
    """The job's environment: a scratch database and a milvus-lite server."""
    from immray.settings import Settings
    from immray.vectors.endpoint import LiteServer

    with contextlib.ExitStack() as stack:
        url = (
            stack.enter_context(scratch_postgres(postgres)) if postgres else f"sqlite:///{scratch}/immray.db"
        )
        settings = Settings(data_dir=scratch / "data", database_url=url)
        lite = LiteServer(settings)
        uri = lite.start()
        stack.callback(lite.stop)
        yield {
            "IMMRAY_DATA_DIR": str(scratch / "data"),
            "IMMRAY_DATABASE_URL": url,
            "IMMRAY_MILVUS_URI": uri,
            "IMMRAY_ALLOWED_ROOTS": json.dumps([str(root) for root in roots]),
            "IMMRAY_DETECTOR": detector,
        }


def _raw_worker(
    files: list[Path], detector: str, mirror: bool, batch: int, seconds: float, ready, results
) -> None:
    """One process of :func:`raw_models_parallel`: load, warm up, wait for the others, then run its photos
    round and round until ``seconds`` have passed (so every process is busy for the whole window)."""
    import itertools

    photos = [path.read_bytes() for path in files]
    with one_thread_analyzer(detector, mirror) as analyzer:
        analyzer.analyze_batch(photos[:batch])
        ready.wait()
        began, done = time.time(), 0
        for lo in itertools.cycle(range(0, len(photos), batch)):
            if time.time() - began >= seconds:
                break
            done += len(analyzer.analyze_batch(photos[lo : lo + batch]))
    results.put(done / (time.time() - began))


def raw_models_parallel(
    files: list[Path], detector: str, mirror: bool, batch: int, processes: int, seconds: float
) -> float:
    """photos/s of the raw models on ``processes`` cores at once (one process each, one torch thread, the
    photos dealt round-robin, models loaded and warm before the clock, all busy for ``seconds``): the same
    cores as the pool, shared as the pool shares them, so the reference pays for the cores' shared caches
    and memory as the pool does (photos per CPU-second x cores does not)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(
            target=_raw_worker, args=(files[i::processes], detector, mirror, batch, seconds, ready, results)
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    rates = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    return sum(rates)


class CpuMeter:
    """CPU seconds of this process and everything it started (the local Ray and every process of the job,
    the milvus-lite server), by kind. Sampled while the job runs: the pool's actors exit with it, and a
    process is counted up to its last sample."""

    def __init__(self) -> None:
        self._before = cpu_snapshot({})
        self._last: dict[int, tuple[str, float]] = {}

    def sample(self) -> None:
        for pid, (_, seconds) in cpu_snapshot({}).items():
            label = self._last[pid][0] if pid in self._last else GENERIC
            if label == GENERIC:  # a Ray worker is named for its work once it has some (ray::IDLE before)
                label = _kind(pid)
            self._last[pid] = (label, seconds)

    def spent(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, (label, seconds) in self._last.items():
            totals[label] = totals.get(label, 0.0) + seconds - self._before.get(pid, ("", 0.0))[1]
        return totals


GENERIC = "ray (gcs, raylet, dashboard, agents, idle workers)"


def _kind(pid: int) -> str:
    if pid == os.getpid():
        return "this bench (idle while the job runs)"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    for marker, name in (
        ("MapBatches(BackfillAnalysis)", "pool actors (models, reads, store writes)"),
        ("ray::IDLE", GENERIC),
        ("immray.jobs.backfill", "job driver"),
        ("milvus", "milvus-lite"),
        ("ray::", "other ray workers (job supervisor, dataset actor)"),
    ):
        if marker in command:
            return name
    return GENERIC


def run_job(
    address: str, folder: Path, pool: PoolSpec, env: dict[str, str], meter: CpuMeter | None = None
) -> tuple[float, Progress]:
    began = time.perf_counter()
    submission_id = backfill_client.submit(
        address, folder.as_uri() + "/", "bench/backfill", pool, env=env or None, python=sys.executable
    )

    def show(status: str, progress) -> None:
        print(f"  {status}: {progress.summary() if progress else ''}", flush=True)

    if meter is not None:
        inner = show

        def show(status: str, progress) -> None:  # noqa: F811 - the same, sampling the CPU too
            meter.sample()
            inner(status, progress)

    status = backfill_client.follow(address, submission_id, show, poll_seconds=1.0)
    if meter is not None:
        meter.sample()
    wall = time.perf_counter() - began
    progress = backfill_client.progress_of(address, submission_id)
    if status != "SUCCEEDED" or progress is None:
        logs = backfill_client.client(address).get_job_logs(submission_id)
        raise SystemExit(f"the backfill ended {status}:\n{logs[-3000:]}")
    return wall, progress


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--limit", type=int, default=0, help="the first N photos (local runs; 0: all)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray, one actor each")
    parser.add_argument("--actors", type=int, help="pool size (default: --cpus)")
    parser.add_argument("--batch", type=int, default=8, help="photos per model batch")
    parser.add_argument("--detector", default="accurate")
    parser.add_argument(
        "--raw-seconds", type=float, default=30.0, help="how long the raw models run on all cores at once"
    )
    parser.add_argument("--no-mirror", action="store_true", help="as IMMRAY_MIRROR=false")
    parser.add_argument("--postgres", help="an admin URL: the job writes a scratch database there")
    parser.add_argument("--address", help="submit to this cluster's job API instead of a local Ray")
    args = parser.parse_args(argv)
    actors = args.actors or args.cpus
    pool = PoolSpec(min_actors=actors, max_actors=actors, batch_size=args.batch, num_cpus=args.cpus / actors)
    files = find_images(args.directory.resolve(), args.limit or sys.maxsize)
    if not files:
        raise SystemExit(f"no photos under {args.directory}")
    print(
        f"raw models: {len(files)} photos, one torch thread, batch {args.batch}, {args.detector}", flush=True
    )
    raw_wall, raw_cpu, raw_faces = raw_models(files, args.detector, not args.no_mirror, args.batch)
    raw_rate = len(files) / raw_cpu
    print(
        f"  {raw_rate:.2f} photos per CPU-second ({len(files) / raw_wall:.2f}/s by the clock), {raw_faces} faces"
    )

    parallel_rate = raw_models_parallel(
        files, args.detector, not args.no_mirror, args.batch, args.cpus, args.raw_seconds
    )
    print(
        f"  {parallel_rate:.2f} photos/s in {args.cpus} processes at once (one per core, one torch thread each)"
    )

    with tempfile.TemporaryDirectory(prefix="immray-bench-backfill-") as tmp:
        scratch = Path(tmp)
        meter = None
        if args.address:
            folder, env = args.directory.resolve(), {}
            wall, progress = run_job(args.address, folder, pool, env)
        else:
            folder = scratch / "photos"
            folder.mkdir()
            for i, path in enumerate(files):  # the first --limit photos, each under a unique name
                os.symlink(path, folder / f"{i:06d}{path.suffix.lower()}")
            roots = [folder, args.directory.resolve()]
            job_env = {"IMMRAY_MIRROR": "false"} if args.no_mirror else {}
            with (
                local_stores(scratch, roots, args.detector, args.postgres) as env,
                local_cluster(args.cpus) as address,
            ):
                print(
                    f"backfill job: {len(files)} photos, {actors} actor(s) on {args.cpus} CPU(s), batch {args.batch}"
                )
                meter = CpuMeter()
                wall, progress = run_job(address, folder, pool, env | job_env, meter)
    analysed = progress.done / progress.seconds if progress.seconds else 0.0
    steady = progress.steady_photos_per_second
    whole = progress.done / wall if wall else 0.0
    print(
        f"backfill: {progress.done} photos ({progress.indexed} indexed, {progress.failed} failed), "
        f"{progress.faces} faces; analysis {analysed:.2f} photos/s ({steady:.2f} once the pool was up, "
        f"{progress.steady_done} photos from {progress.first_seconds:.1f} s on), whole job {whole:.2f} photos/s ({wall:.1f} s)"
    )
    print(
        f"raw models on {args.cpus} core(s): {parallel_rate:.2f} photos/s at once "
        f"({raw_rate * args.cpus:.2f} as per CPU-second x cores)"
    )
    print(
        f"ratio by the clock: pool up {steady / parallel_rate:.2f}, analysis {analysed / parallel_rate:.2f}, "
        f"whole job {whole / parallel_rate:.2f}"
    )
    if meter is not None:  # on a shared machine the clock counts others' work too; CPU-seconds do not
        spent = meter.spent()
        total = sum(spent.values())
        for label, seconds in sorted(spent.items(), key=lambda item: -item[1]):
            print(f"  CPU {label}: {seconds:.1f} s ({seconds / progress.done * 1000:.1f} ms a photo)")
        per_cpu = progress.done / total if total else 0.0
        print(
            f"by CPU: the whole job {per_cpu:.2f} photos per CPU-second ({total:.1f} CPU-s), the raw models "
            f"{raw_rate:.2f}: ratio {per_cpu / raw_rate:.2f}"
        )


if __name__ == "__main__":
    main()
