"""``immray status`` against the session's Ray with a live server, and against no Ray at all."""

from __future__ import annotations

import sys
from pathlib import Path

# The live server's kit (tests/api/live_immray.py) and its PostgreSQL databases.
sys.path.insert(0, str(Path(__file__).parents[1] / "api"))

from live_immray import new_postgres_database  # noqa: E402, F401  (fixture)

from task_testkit import db_url, new_tasks_postgres_database, tasks_postgres_url  # noqa: E402, F401
