"""Helpers of the observability tests."""

from __future__ import annotations

import json
from typing import Any

import pytest


def json_lines(text: str) -> list[dict[str, Any]]:
    """Each line of ``text`` as the one JSON object it must be (a line that is not fails the test)."""
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"not one JSON object per line: {line!r}")
        assert isinstance(data, dict), line
        parsed.append(data)
    return parsed
