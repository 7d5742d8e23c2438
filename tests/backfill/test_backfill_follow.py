"""``immray backfill --follow`` streams the job's log: each progress line is read once, however long the
backfill, and the last one (the job's end) is always shown. A real Ray job prints the lines."""

from __future__ import annotations

import shlex
import sys

from immray.jobs import backfill_client
from ray_testkit import start_ray

PRINTS_PROGRESS = """
import time
from immray.jobs.backfill_progress import Progress
for done in range(4):
    print(Progress(phase="analysing", done=done, total=4).line(), flush=True)
    time.sleep(0.7)
print(Progress(phase="done", done=4, total=4, indexed=4).line(), flush=True)
"""


class CountingWholeLogReads:
    """The real job client, counting the calls that fetch a job's whole log."""

    def __init__(self, real) -> None:
        self._real = real
        self.whole_log_reads = 0

    def get_job_logs(self, submission_id: str) -> str:
        self.whole_log_reads += 1
        return self._real.get_job_logs(submission_id)

    def __getattr__(self, name: str):
        return getattr(self._real, name)


def test_follow_streams_the_log_and_shows_the_last_progress(monkeypatch):
    address = "http://" + start_ray().dashboard_url.removeprefix("http://")
    jobs = CountingWholeLogReads(backfill_client.client(address))
    monkeypatch.setattr(backfill_client, "client", lambda _: jobs)
    submission_id = jobs.submit_job(
        entrypoint=f"{shlex.quote(sys.executable)} -c {shlex.quote(PRINTS_PROGRESS)}"
    )
    seen = []
    status = backfill_client.follow(
        address,
        submission_id,
        lambda s, p: seen.append((s, p and (p.phase, p.done))),
        poll_seconds=0.3,
        timeout=120,
    )
    assert status == "SUCCEEDED"
    assert seen[-1] == ("SUCCEEDED", ("done", 4))
    shown = [progress for _, progress in seen if progress]
    assert any(phase == "analysing" for phase, _ in shown)  # followed while it ran, not only at its end
    assert [done for _, done in shown] == sorted(done for _, done in shown)
    assert jobs.whole_log_reads == 0  # streamed, never fetched whole
