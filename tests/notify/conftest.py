"""Notification tests: real databases, and the real Redis, RabbitMQ and an HTTP receiver on this machine."""

from __future__ import annotations

from task_testkit import (  # noqa: F401  (fixtures)
    db,
    db_url,
    new_tasks_postgres_database,
    tasks_postgres_url,
)
