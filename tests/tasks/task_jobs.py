"""Jobs the task tests register in their own process, for the task workers they run there.

Their behaviour is driven by the payload, so one registered name serves many tests:
``{"steps": n}`` reports progress n times; ``{"gate": "name"}`` waits (checking for a stop or a lost
lease) until the test opens that gate; ``{"raise": "imm"|"bug"}`` fails.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from immray.jobs import job
from immray.protocol.errors import ImmError

GATES: defaultdict[str, threading.Event] = defaultdict(threading.Event)
EVENTS: list[tuple[str, str]] = []  # (what, task id) in the order it happened, for ordering checks
_events_lock = threading.Lock()


def record(what: str, task_id: str | None) -> None:
    with _events_lock:
        EVENTS.append((what, task_id or ""))


@job("test.work", task=True)
def work(ctx, payload: dict[str, Any]) -> dict[str, Any]:
    record("start", ctx.task_id)
    try:
        if payload.get("raise") == "imm":
            raise ImmError.invalid_argument("The photo library is on fire.")
        if payload.get("raise") == "bug":
            raise RuntimeError("secret database password is hunter2")
        if "gate" in payload:
            ctx.progress(50)
            while not GATES[payload["gate"]].wait(0.02):
                ctx.check()
        steps = int(payload.get("steps", 0))
        for step in range(steps):
            ctx.progress(100 * step / steps)
        return {"Attempt": ctx.attempt, "Echo": payload.get("echo")}
    finally:
        record("end", ctx.task_id)


@job("test.finish-in-transaction", task=True)
def finish_in_transaction(ctx, payload: dict[str, Any]) -> None:
    """Ends its task inside its own transaction, as the clustering job will, with the result it writes."""
    with ctx.db.write() as session:
        ctx.finish(session, {"Written": payload.get("value")})


@job("test.plain")
def plain(ctx, payload: dict[str, Any]) -> None:
    record("plain", payload.get("marker"))
