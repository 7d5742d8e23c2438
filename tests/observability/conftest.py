"""Fixtures of the observability tests: the process's logging put back after each test, and the API
tests' live server helpers (tests/api) on the path."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

API_TESTS = str(Path(__file__).resolve().parents[1] / "api")
if API_TESTS not in sys.path:
    sys.path.insert(0, API_TESTS)


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """``configure_logging`` changes the whole process: the root logger's handlers and level, structlog's
    configuration and the bound context are what they were before each test, after it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    context = structlog.contextvars.get_contextvars()
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
        structlog.configure(**config)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**context)


from live_immray import immray, new_postgres_database  # noqa: E402, F401  (fixtures: the live server)
