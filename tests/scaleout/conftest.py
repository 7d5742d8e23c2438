"""Scale-out tests: the real server, Celery workers started as processes, the real PostgreSQL and the real
Redis and RabbitMQ of this machine (``.ci/run`` starts them). Without IMMRAY_TEST_POSTGRES_URL they are
skipped (marker ``postgres``), which fails a CI run (IMMRAY_REQUIRE_POSTGRES=1)."""

from __future__ import annotations

import sys
from pathlib import Path

# The people tests' photos, and who is who in them (tests/api/people_photos.py).
sys.path.insert(0, str(Path(__file__).parents[1] / "api"))

from task_testkit import new_tasks_postgres_database  # noqa: E402, F401  (fixture)
