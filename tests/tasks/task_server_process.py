"""``python task_server_process.py PORT``: the whole server (build_app, run_server) as a process of its own,
with the test jobs registered; its settings come from IMMRAY_* variables, as in production."""

from __future__ import annotations

import sys

import task_jobs  # noqa: F401  (registers the test jobs)

from immray.api import run_server
from immray.api.bootstrap import build_app
from immray.settings import Settings

if __name__ == "__main__":
    run_server(build_app(Settings()), "127.0.0.1", int(sys.argv[1]), log_level="warning")
