"""The README's SDK snippet, run as written against a live server with the credentials `serve` saves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from live_immray import LiveImmray

from immray.credentials import Credentials, save_credentials

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- README-SDK-SNIPPET"


def readme_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    assert MARKER in text, "the README lost its SDK snippet marker"
    after = text[text.index(MARKER) :]
    match = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert match is not None, "no python block after the README's SDK snippet marker"
    return match.group(1)


def test_the_readme_snippet_runs_as_written(immray: LiveImmray, tmp_path: Path):
    home = tmp_path / "home"
    credentials = home / ".local" / "share" / "immray" / "credentials.json"
    save_credentials(
        credentials, Credentials(immray.admin.access_key_id, immray.admin.secret, immray.address)
    )
    result = subprocess.run(
        [sys.executable, "-c", readme_snippet()],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(home)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "family 2"
