"""Task tests: real databases (SQLite file, PostgreSQL), real worker pools, real jobs from task_jobs."""

from __future__ import annotations

from task_testkit import (  # noqa: F401  (fixtures)
    db,
    db_url,
    new_tasks_postgres_database,
    tasks_postgres_url,
)
