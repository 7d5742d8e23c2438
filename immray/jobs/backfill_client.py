"""The client side of backfills: submit one as a Ray job, follow it, list the past ones, through Ray's job
submission API (the dashboard's address, ``http://head:8265``), so it works from any machine that reaches
the cluster's dashboard.

A backfill is the Ray job whose metadata says ``immray: backfill`` (with its location and dataset), whose
entrypoint is ``python -m immray.jobs.backfill ...`` and whose submission id is ``backfill-...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from immray.jobs.backfill_pool import PoolSpec
from immray.jobs.backfill_progress import Progress, last_progress

KIND = "backfill"
ENDED = ("SUCCEEDED", "FAILED", "STOPPED")
AGENT_WAIT_SECONDS = 90.0


class BackfillClientError(Exception):
    """The cluster cannot be reached, or refused the submission; the message says why."""


@dataclass(frozen=True)
class BackfillJob:
    submission_id: str
    status: str
    location: str
    dataset: str
    start_time: datetime | None
    end_time: datetime | None
    message: str


def client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BackfillClientError(f"cannot reach the Ray dashboard at {address}: {exc}") from None


def entrypoint(
    location: str, dataset: str, pool: PoolSpec, *, python: str, tag: str, notify_topic: str | None = None
) -> str:
    """The job's shell command."""
    words = [python, "-m", "immray.jobs.backfill", location, "--dataset", dataset, *pool.args(), "--tag", tag]
    if notify_topic:
        words += ["--notify-topic", notify_topic]
    return shlex.join(words)


def submit(
    address: str,
    location: str,
    dataset: str,
    pool: PoolSpec,
    *,
    env: Mapping[str, str] | None = None,
    python: str = "python",
    notify_topic: str | None = None,
) -> str:
    """Submit a backfill; returns its submission id."""
    submission_id = f"{KIND}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    runtime_env = {"env_vars": dict(env)} if env else None
    jobs = client(address)
    deadline = time.monotonic() + AGENT_WAIT_SECONDS
    while True:
        try:
            return jobs.submit_job(
                entrypoint=entrypoint(
                    location, dataset, pool, python=python, tag=submission_id, notify_topic=notify_topic
                ),
                submission_id=submission_id,
                runtime_env=runtime_env,
                metadata={"immray": KIND, "location": location, "dataset": dataset},
                entrypoint_num_cpus=0,  # the driver only orchestrates; the pool's actors hold the resources
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            # A cluster just started (or busy) may have no job agent registered yet: Ray says "try again".
            if "try again" in str(exc) and time.monotonic() < deadline:
                time.sleep(2.0)
                continue
            raise BackfillClientError(f"the cluster at {address} refused the backfill: {exc}") from None


def progress_of(address: str, submission_id: str) -> Progress | None:
    return last_progress(client(address).get_job_logs(submission_id))


def follow(
    address: str,
    submission_id: str,
    show: Callable[[str, Progress | None], None],
    *,
    poll_seconds: float = 2.0,
    timeout: float | None = None,
) -> str:
    """Call ``show(status, progress)`` whenever either changes, until the job ends; returns its status.

    The job's log is streamed (Ray's log tail: each line read once), so following a backfill of hours costs
    the same every minute; reading the whole log at each poll grew with it. Where the stream cannot be
    had (or breaks), the whole log is read at each poll instead."""
    jobs = client(address)
    # Ray's SDK logs each closed log stream at INFO ("WebSocket closed ..."): noise beside --follow's lines.
    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)
    return asyncio.run(_follow(jobs, submission_id, show, poll_seconds, timeout))


async def _follow(
    jobs: Any,
    submission_id: str,
    show: Callable[[str, Progress | None], None],
    poll_seconds: float,
    timeout: float | None,
) -> str:
    deadline = None if timeout is None else time.monotonic() + timeout
    latest = _LatestProgress()
    tail = asyncio.create_task(latest.read(jobs.tail_job_logs(submission_id)))
    last: tuple[str, str] | None = None
    try:
        while True:
            status = str((await asyncio.to_thread(jobs.get_job_status, submission_id)).value)
            ended = status in ENDED
            if ended:  # the tail ends with the job: its last lines hold the last progress
                await asyncio.wait([tail], timeout=10.0)
            if not tail.done() or (tail.exception() is None and ended):
                progress = latest.progress
            else:  # no stream: the whole log
                progress = last_progress(await asyncio.to_thread(jobs.get_job_logs, submission_id))
            seen = (status, progress.line() if progress else "")
            if seen != last:
                last = seen
                show(status, progress)
            if ended or (deadline is not None and time.monotonic() > deadline):
                return status
            await asyncio.sleep(poll_seconds)
    finally:
        tail.cancel()
        with contextlib.suppress(BaseException):
            await tail


class _LatestProgress:
    """The last progress line of a streamed log."""

    def __init__(self) -> None:
        self.progress: Progress | None = None

    async def read(self, chunks: AsyncIterator[str]) -> None:
        pending = ""
        async for chunk in chunks:
            *lines, pending = (pending + chunk).split("\n")
            found = last_progress("\n".join(lines))
            if found is not None:
                self.progress = found
        found = last_progress(pending)
        if found is not None:
            self.progress = found


def list_backfills(address: str) -> list[BackfillJob]:
    """The backfills the cluster knows, the latest first."""
    found = []
    for job in client(address).list_jobs():
        metadata = job.metadata or {}
        if metadata.get("immray") != KIND:
            continue
        found.append(
            BackfillJob(
                submission_id=job.submission_id or job.job_id or "",
                status=str(job.status.value if hasattr(job.status, "value") else job.status),
                location=metadata.get("location", ""),
                dataset=metadata.get("dataset", ""),
                start_time=_time(job.start_time),
                end_time=_time(job.end_time),
                message=job.message or "",
            )
        )
    return sorted(found, key=lambda j: j.start_time or datetime.min.replace(tzinfo=UTC), reverse=True)


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs -> a dict (ValueError naming a bad one)."""
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--env takes NAME=VALUE, not {pair!r}")
        env[name] = value
    return env


def _time(millis: int | None) -> datetime | None:
    return None if not millis else datetime.fromtimestamp(millis / 1000, UTC)
