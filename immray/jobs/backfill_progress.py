"""A backfill job's progress as lines of its log: the job prints them, ``immray backfill --follow`` reads
them back through Ray's job API (the job's logs are all a client of the cluster can read).

One line per report: ``immray-backfill {"phase": ..., "done": ..., "total": ..., ...}`` (JSON after the
marker), so the lines stay readable in the dashboard's job log too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

MARKER = "immray-backfill "


@dataclass
class Progress:
    phase: str = "listing"  # listing | analysing | clustering | done | failed
    listed: int = 0
    skipped: int = 0  # already indexed and unchanged
    total: int = 0  # files to analyse
    done: int = 0
    indexed: int = 0
    failed: int = 0
    faces: int = 0
    seconds: float = 0.0  # since the analysis began
    first_seconds: float = 0.0  # when the pool's first batch ended (its actors started, models loaded)
    steady_done: int = 0  # files of the batches begun after that
    steady_seconds: float = 0.0  # from that first end to the latest batch's end
    task_id: str | None = None  # the clustering task started at the end
    message: str | None = None
    failures: list[str] = field(default_factory=list)  # "URI: Reason", the first few

    @property
    def faces_per_second(self) -> float:
        return self.faces / self.seconds if self.seconds > 0 else 0.0

    @property
    def photos_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_photos_per_second(self) -> float:
        """photos/s once the pool is up: what a long backfill runs at (the pool's start left out)."""
        return self.steady_done / self.steady_seconds if self.steady_seconds > 0 else 0.0

    def line(self) -> str:
        return MARKER + json.dumps(asdict(self), separators=(",", ":"))

    def summary(self) -> str:
        """One human line: files done of total, faces/s, what ends it."""
        text = (
            f"{self.phase}: {self.done}/{self.total} files ({self.indexed} indexed, {self.failed} failed, "
            f"{self.skipped} unchanged), {self.faces} faces, {self.faces_per_second:.1f} faces/s, "
            f"{self.photos_per_second:.1f} photos/s"
        )
        if self.steady_done:
            text += (
                f" ({self.steady_photos_per_second:.1f} once the pool was up, {self.first_seconds:.1f} s in)"
            )
        if self.task_id:
            text += f", clustering task {self.task_id}"
        if self.message:
            text += f": {self.message}"
        return text


def last_progress(logs: str) -> Progress | None:
    """The latest progress line of a job's logs."""
    for line in reversed(logs.splitlines()):
        at = line.find(MARKER)
        if at < 0:
            continue
        try:
            return Progress(**json.loads(line[at + len(MARKER) :]))
        except (ValueError, TypeError):
            continue
    return None
