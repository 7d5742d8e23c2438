"""The cluster tests reuse the API tests' SDK helpers and photos (tests/api)."""

from __future__ import annotations

import sys
from pathlib import Path

API_TESTS = str(Path(__file__).resolve().parents[1] / "api")
if API_TESTS not in sys.path:
    sys.path.insert(0, API_TESTS)

from live_immray import new_postgres_database  # noqa: E402, F401  (fixture: throw-away PostgreSQL databases)
