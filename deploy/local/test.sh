#!/usr/bin/env bash
# The README's test command: set up .venv (deploy/local/setup.sh), install what the suite needs beyond Python
# packages (Debian's chromium for the web page's tests), then lint and run the whole suite.
# Extra arguments go to pytest (e.g. `deploy/local/test.sh tests/clustering -x`).
set -euo pipefail
cd "$(dirname "$0")/../.."

deploy/local/setup.sh

# The web page's browser tests drive Debian's chromium (Playwright's own browser download is never used).
if ! [ -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing Debian's chromium for the web page's tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  else
    echo "test: the web page's tests need /usr/bin/chromium: sudo apt-get install chromium" >&2
    exit 1
  fi
fi

.venv/bin/ruff check immray tests
.venv/bin/ruff format --check immray tests
exec .venv/bin/python -m pytest "$@"
