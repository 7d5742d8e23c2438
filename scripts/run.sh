#!/usr/bin/env bash
# The main job on the embedded default: the API server (SQLite in the data dir, in-process workers).
# Ctrl-C stops it. Extra arguments go to `facegroup serve` (e.g. `scripts/run.sh --root ~/Pictures`).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/facegroup serve "$@"
