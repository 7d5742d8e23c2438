"""The two ways a source can say no: the URI is refused, or the object cannot be read."""

from __future__ import annotations


class SourceError(Exception):
    """Base of the source errors; ``uri`` is the URI as the client gave it."""

    def __init__(self, uri: str, message: str) -> None:
        super().__init__(message)
        self.uri = uri
        self.message = message


class SourceRefused(SourceError):
    """The URI is not acceptable at all: the whole request that names it fails with InvalidArgument."""


class SourceUnreadable(SourceError):
    """An acceptable URI whose object cannot be read; ``code`` and ``reason`` for that file's Reason."""

    def __init__(self, uri: str, message: str, code: str = "InvalidArgument") -> None:
        super().__init__(uri, message)
        self.code = code

    @property
    def reason(self) -> str:
        return f"[{self.code}] {self.message}"
