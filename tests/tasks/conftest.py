"""Task tests: real databases (SQLite file, PostgreSQL), real worker pools, real jobs from task_jobs."""

from __future__ import annotations

from task_testkit import db, db_url, tasks_postgres_url  # noqa: F401  (fixtures)
