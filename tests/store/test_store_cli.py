"""`immray db upgrade`, run as the operator runs it: a real process, settings from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect

from immray.cli import main
from immray.settings import get_settings
from immray.store import head_revision, make_engine


def run_cli(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("IMMRAY_")}
    return subprocess.run(
        [sys.executable, "-m", "immray.cli", "db", "upgrade"],
        env={**clean, **env},
        cwd=tmp_path,  # no immray.env from the developer's directory
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_db_upgrade_creates_and_migrates_then_does_nothing(database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    env = {"IMMRAY_DATA_DIR": str(data_dir)}
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{data_dir / 'immray.db'}"  # the default: SQLite in the data dir
    else:
        url = env["IMMRAY_DATABASE_URL"] = make_engine(database_url).url.render_as_string(hide_password=False)
        engine = make_engine(url)
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP SCHEMA public CASCADE")
            connection.exec_driver_sql("CREATE SCHEMA public")
        engine.dispose()

    first = run_cli(tmp_path, **env)
    assert first.returncode == 0, first.stderr
    assert f"upgraded from empty to {head_revision()}" in first.stdout
    assert data_dir.is_dir()

    second = run_cli(tmp_path, **env)
    assert second.returncode == 0, second.stderr
    assert f"already at {head_revision()}" in second.stdout

    engine = make_engine(url)
    try:
        assert "figures" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run ``immray db upgrade`` in this process (fast) with the given IMMRAY_* settings."""
    monkeypatch.chdir(tmp_path)
    for key in [key for key in os.environ if key.startswith("IMMRAY_")]:
        monkeypatch.delenv(key)

    def invoke(**env: str):
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(main, ["db", "upgrade"], env=env)
        finally:
            get_settings.cache_clear()

    return invoke


def test_db_upgrade_reports_bad_settings_without_a_traceback(cli, tmp_path: Path) -> None:
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    (tmp_path / "file").write_text("a file where a directory should be")
    cases = {
        "mysql://u@h/db": "unsupported database 'mysql'",
        "::": "malformed database URL",
        "postgresql://nobody@127.0.0.1:1/none": "cannot upgrade postgresql+psycopg://nobody@127.0.0.1:1/none",
        f"sqlite:///{tmp_path / 'garbage.db'}": "file is not a database",
        f"sqlite:///{tmp_path / 'file' / 'x.db'}": "cannot create the directory of the SQLite database",
    }
    for url, message in cases.items():
        result = cli(IMMRAY_DATA_DIR=str(tmp_path / "d"), IMMRAY_DATABASE_URL=url)
        assert result.exit_code == 1, result.output
        assert message in result.output, result.output
        assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped exception
    result = cli(IMMRAY_DATA_DIR=str(tmp_path / "file" / "data"))
    assert result.exit_code == 1 and "cannot create the data directory" in result.output
