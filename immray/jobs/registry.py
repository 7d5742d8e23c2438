"""Jobs by name: the names are what travels between processes, so any backend can run any job.

``@job("cluster-dataset", task=True)`` registers a function ``f(ctx: JobContext, payload: dict)``. A task
job runs an IMM task: its payload is the one stored with the task, its lease and end are handled by the
runner, and what it returns becomes the task's result. A plain job (``task=False``) has no task record;
its payload travels with the submission and keeping track of it is its caller's business.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from immray.jobs.context import JobContext

JobFunction = Callable[["JobContext", Mapping[str, Any]], Mapping[str, Any] | None]
_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class JobSpec:
    name: str
    func: JobFunction
    task: bool


_JOBS: dict[str, JobSpec] = {}


def job(name: str, *, task: bool = False) -> Callable[[JobFunction], JobFunction]:
    """Register the decorated function as the job ``name`` (lower-case, dots and dashes allowed)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"job names are lower-case words with . - _: {name!r}")

    def register(func: JobFunction) -> JobFunction:
        known = _JOBS.get(name)
        same = known is not None and (known.func.__module__, known.func.__qualname__) == (
            func.__module__,
            func.__qualname__,
        )
        if known is not None and not same:
            raise ValueError(f"job {name!r} is registered twice ({known.func.__module__}, {func.__module__})")
        _JOBS[name] = JobSpec(name, func, task)
        return func

    return register


def get_job(name: str) -> JobSpec | None:
    return _JOBS.get(name)


def job_names(*, task: bool | None = None) -> list[str]:
    return sorted(name for name, spec in _JOBS.items() if task is None or spec.task == task)
