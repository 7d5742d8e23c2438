"""Suite-wide test configuration.

The PostgreSQL guard: CI sets ``IMMRAY_REQUIRE_POSTGRES=1`` so that a run which silently skipped the
PostgreSQL tests (no URL, server down) fails instead of passing green.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:  # the suite's shared kits (ray_testkit, photo_testkit, ...)
    sys.path.insert(0, TESTS)

REQUIRE_POSTGRES = os.environ.get("IMMRAY_REQUIRE_POSTGRES") == "1"
POSTGRES_URL = os.environ.get("IMMRAY_TEST_POSTGRES_URL") or None

_skipped_postgres_tests: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    if REQUIRE_POSTGRES and not POSTGRES_URL:
        raise pytest.UsageError(
            "IMMRAY_REQUIRE_POSTGRES=1 but IMMRAY_TEST_POSTGRES_URL is not set: "
            "the PostgreSQL tests would be skipped (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
        )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "postgres" in report.keywords and not hasattr(report, "wasxfail"):
        _skipped_postgres_tests.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REQUIRE_POSTGRES and _skipped_postgres_tests and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REQUIRE_POSTGRES and _skipped_postgres_tests:
        terminalreporter.section("IMMRAY_REQUIRE_POSTGRES", sep="=", red=True, bold=True)
        terminalreporter.line(
            f"{len(_skipped_postgres_tests)} test(s) marked postgres were skipped; "
            "the session fails because IMMRAY_REQUIRE_POSTGRES=1:",
            red=True,
        )
        for nodeid in _skipped_postgres_tests:
            terminalreporter.line(f"  {nodeid}", red=True)


@pytest.fixture(scope="session")
def sample_photo():
    """``sample_photo(name)`` -> Path of a real photo from immray.samples ("group": six people,
    "portrait": one face, "astronaut": one face, "children": five children); fetched once per machine, then
    cached."""
    from immray.samples import sample_path

    return sample_path


@pytest.fixture(scope="session")
def ray_runtime():
    """The local Ray (two CPUs) and Serve's HTTP proxy the whole session shares, started on first use."""
    from ray_testkit import start_ray, stop_ray

    yield start_ray()
    stop_ray()


@pytest.fixture(scope="session")
def milvus_server_uri(tmp_path_factory: pytest.TempPathFactory):
    """The URI of a real Milvus server the whole session shares: the `milvus` package's ``milvus-server``
    (one per host: ``milvus_testkit`` says why), or the one ``IMMRAY_TEST_MILVUS_URI`` names."""
    given = os.environ.get("IMMRAY_TEST_MILVUS_URI")
    if given:
        yield given
        return
    from milvus_testkit import milvus_server

    with milvus_server(tmp_path_factory.mktemp("milvus-server")) as uri:
        yield uri
