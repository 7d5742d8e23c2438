"""Local files under the allowed roots.

A path is accepted only if it lies under an allowed root both as written and once every symlink is
resolved, so neither ``..`` (refused by the parser anyway) nor a symlink can reach outside. The check runs
when the request arrives and again when the file is read (a symlink may have changed in between). The file
is opened non-blocking and must be a regular file, so a FIFO or a device under a root cannot hang a
worker.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from immray.sources.errors import SourceRefused, SourceUnreadable
from immray.sources.types import SourceInfo, SourceObject, guess_content_type
from immray.sources.uris import FileLocation

_CHUNK = 1 << 20


class LocalFiles:
    def __init__(self, roots: Sequence[Path], max_bytes: int) -> None:
        # Each root as written (made absolute) and resolved: a path must be under one in both forms.
        self._roots = [(os.path.abspath(root), os.path.realpath(root)) for root in roots]
        self._max_bytes = max_bytes

    def check(self, location: FileLocation) -> str:
        """The resolved path of ``location``; SourceRefused if it is not under an allowed root."""
        if not self._roots:
            raise SourceRefused(
                location.uri,
                "file:// URIs are off on this server: the operator allows folders with `immray serve --root`",
            )
        written = os.path.normpath(location.path)
        resolved = os.path.realpath(location.path)
        if not any(_within(written, root) or _within(written, real) for root, real in self._roots):
            raise SourceRefused(location.uri, "the path is not under an allowed root")
        if not any(_within(resolved, real) for _, real in self._roots):
            raise SourceRefused(
                location.uri, "the path resolves (through a symlink) outside the allowed roots"
            )
        return resolved

    def stat(self, location: FileLocation) -> SourceInfo:
        fd, info = self._open(location)
        os.close(fd)
        return info

    def read(self, location: FileLocation) -> SourceObject:
        fd, info = self._open(location)
        try:
            chunks = []
            total = 0
            while chunk := os.read(fd, _CHUNK):
                total += len(chunk)
                if total > self._max_bytes:
                    raise self._too_large(location)
                chunks.append(chunk)
        except OSError as exc:
            raise SourceUnreadable(location.uri, f"cannot read the file: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        return SourceObject(info, b"".join(chunks))

    def _open(self, location: FileLocation) -> tuple[int, SourceInfo]:
        try:
            resolved = self.check(location)
        except SourceRefused as exc:  # accepted earlier; a symlink changed since
            raise SourceUnreadable(location.uri, exc.message) from None
        try:
            fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SourceUnreadable(location.uri, "File does not exist.") from None
        except OSError as exc:
            raise SourceUnreadable(location.uri, f"cannot open the file: {exc.strerror or exc}") from None
        try:
            found = os.fstat(fd)
            if not stat.S_ISREG(found.st_mode):
                raise SourceUnreadable(location.uri, "not a regular file")
            if found.st_size > self._max_bytes:
                raise self._too_large(location)
        except BaseException:
            os.close(fd)
            raise
        os.set_blocking(fd, True)
        info = SourceInfo(
            size=found.st_size,
            fingerprint=f"file:{found.st_size}:{found.st_mtime_ns}:{found.st_ino}",
            filename=location.filename,
            modified_at=datetime.fromtimestamp(found.st_mtime_ns / 1e9, UTC),
            content_type=guess_content_type(location.filename),
        )
        return fd, info

    def _too_large(self, location: FileLocation) -> SourceUnreadable:
        return SourceUnreadable(
            location.uri, f"the file is larger than {self._max_bytes} bytes", "FileTooLarge"
        )


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
