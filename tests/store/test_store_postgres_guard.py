"""The CI guard in tests/conftest.py: with IMMRAY_REQUIRE_POSTGRES=1 a run that skips PostgreSQL fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

GUARD = Path(__file__).resolve().parents[1] / "conftest.py"
SKIPPING_TEST = """
import pytest

@pytest.mark.postgres
def test_needs_postgres():
    pytest.skip("server gone")

def test_other():
    pass
"""


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    shutil.copy(GUARD, tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(SKIPPING_TEST)
    return tmp_path


def run_pytest(suite: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("IMMRAY_")}
    clean["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the guard matters here, and it starts faster
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "ignore::pytest.PytestUnknownMarkWarning",
            str(suite),
        ],
        cwd=suite,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_skipped_postgres_tests_pass_when_not_required(suite: Path) -> None:
    assert run_pytest(suite).returncode == 0


def test_skipped_postgres_tests_fail_the_session_when_required(suite: Path) -> None:
    result = run_pytest(suite, IMMRAY_REQUIRE_POSTGRES="1", IMMRAY_TEST_POSTGRES_URL="postgresql://x@h/db")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED
    assert "test_sample.py::test_needs_postgres" in result.stdout


def test_a_missing_url_fails_the_session_when_required(suite: Path) -> None:
    result = run_pytest(suite, IMMRAY_REQUIRE_POSTGRES="1")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "IMMRAY_TEST_POSTGRES_URL is not set" in result.stderr
