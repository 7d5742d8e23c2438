"""``python serve_harness.py PORT``: the harness's app under ``run_server``, as a real separate process."""

from __future__ import annotations

import sys

from harness import KEYS, Seen, build_actions

from immray.api import create_app, run_server

if __name__ == "__main__":
    run_server(create_app(build_actions(Seen()), KEYS.get), "127.0.0.1", int(sys.argv[1]), log_level="info")
