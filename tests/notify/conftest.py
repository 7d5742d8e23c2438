"""Notification tests: real databases, and the real Redis, RabbitMQ and an HTTP receiver on this machine."""

from __future__ import annotations

from task_testkit import db, db_url, tasks_postgres_url  # noqa: F401  (fixtures)
