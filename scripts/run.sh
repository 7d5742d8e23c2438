#!/usr/bin/env bash
# The main job on the embedded default. Until the server lands: analyse the sample group photo.
set -euo pipefail
cd "$(dirname "$0")/.."
photo=$(.venv/bin/python -m facegroup.samples group)
exec .venv/bin/facegroup analyze "$photo"
