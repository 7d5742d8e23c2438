"""Task tests: real databases (SQLite file, PostgreSQL), real task workers, real jobs from task_jobs, and
the Serve application on the session's Ray (the live servers of tests/api, whose helpers they reuse)."""

from __future__ import annotations

import sys
from pathlib import Path

API_TESTS = str(Path(__file__).resolve().parents[1] / "api")
if API_TESTS not in sys.path:
    sys.path.insert(0, API_TESTS)

from live_immray import new_postgres_database  # noqa: E402, F401  (fixture of the live servers)

from task_testkit import (  # noqa: E402, F401  (fixtures)
    db,
    db_url,
    new_tasks_postgres_database,
    tasks_postgres_url,
)
