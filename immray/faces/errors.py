"""The one error type of the face pipeline: a bad input image, never a bug."""

from __future__ import annotations


class ImageError(Exception):
    """An image that cannot be analysed, with a stable code for the API and a message for people.

    Codes: ``InvalidImage`` (empty, truncated, corrupt or not an image at all), ``ImageTooLarge`` (declared
    size over the pixel budget, decompression bombs), ``UnsupportedImage`` (a real image in a format or
    pixel mode immray does not read). ``str(err)`` is the message; ``err.reason`` is the
    ``[Code] message`` form that GetFileMeta shows as an index failure Reason.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def reason(self) -> str:
        return f"[{self.code}] {self.message}"

    def __reduce__(self):  # pickled across processes (jobs.face_analysis): both fields, not just args
        return (type(self), (self.code, self.message))

    def __repr__(self) -> str:
        return f"ImageError({self.code!r}, {self.message!r})"
