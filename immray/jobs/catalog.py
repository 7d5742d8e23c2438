"""The product's job modules: importing one registers its jobs (``@job``). A worker loads them all at start,
so every process that runs jobs knows every name that may be submitted. Add a module here, nothing else.
"""

from __future__ import annotations

import importlib

JOB_MODULES: tuple[str, ...] = ("immray.jobs.clustering", "immray.jobs.indexing")


def load_jobs() -> None:
    for name in JOB_MODULES:
        importlib.import_module(name)
