#!/usr/bin/env bash
# Create .venv and install immray with its test and bench extras. Idempotent: does nothing when
# pyproject.toml has not changed since the last successful install (a stamp holds its hash).
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3 python3.13 python3.12 python3.11; do
    if "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "setup: immray needs Python >= 3.11" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.immray-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing immray and its dependencies into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch comes as PyPI's CUDA build (it runs on the CPU too); nothing is compiled.
  .venv/bin/python -m pip install --quiet -e '.[test,bench]'
  echo "$want" > "$stamp"
fi
