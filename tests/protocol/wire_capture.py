"""Reads the spec's wire capture (real requests of the official SDK) into test vectors.

Each captured request becomes an ``HttpRequest`` as the server would receive it, plus the canonical request
the capture's independent verifier printed, so the tests can check our verifier byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from immray.protocol import HttpRequest

CAPTURE = Path(__file__).parent / "data" / "wire-capture.txt"
SECRET = "testAccessKeySecret"
ACCESS_KEY_ID = "testAccessKeyId"


@dataclass(frozen=True)
class Captured:
    title: str
    request: HttpRequest
    canonical_request: str | None  # as printed by the capture; None for the legacy request

    @property
    def legacy(self) -> bool:
        return self.request.header("authorization") is None


def load_captures(path: Path = CAPTURE) -> list[Captured]:
    blocks = path.read_text(encoding="utf-8").split("=" * 100 + "\n")
    return [_parse(block) for block in blocks if block.startswith("### ") and "\nPOST /" in block]


def _parse(block: str) -> Captured:
    lines = block.split("\n")
    title = lines[0].removeprefix("### ").strip()
    method, target, _version = lines[1].split(" ")
    path, _, query = target.partition("?")
    headers = []
    index = 2
    while lines[index]:
        name, _, value = lines[index].partition(": ")
        headers.append((name, value))
        index += 1
    assert lines[index + 1] == "<empty body>", f"{title}: only empty bodies were captured"
    canonical = None
    if "canonical request:\n" in block:
        canonical = block.split("canonical request:\n", 1)[1].split("\nstring to sign:", 1)[0]
    return Captured(title, HttpRequest(method, path, query, tuple(headers), b""), canonical)
