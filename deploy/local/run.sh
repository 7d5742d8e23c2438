#!/usr/bin/env bash
# The main job on the embedded default: `immray serve` (a local Ray, the Serve application of
# configs/serve.local.yaml, SQLite in the data dir).
# Ctrl-C stops it. Extra arguments go to `immray serve` (e.g. `deploy/local/run.sh --root ~/Pictures`).
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/local/setup.sh
exec .venv/bin/immray serve "$@"
