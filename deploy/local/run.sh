#!/usr/bin/env bash
# The main job on the embedded default: the API server (SQLite in the data dir, in-process workers).
# Ctrl-C stops it. Extra arguments go to `immray serve` (e.g. `deploy/local/run.sh --root ~/Pictures`).
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/local/setup.sh
exec .venv/bin/immray serve "$@"
