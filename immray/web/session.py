"""Who is signed in to the web page: one-time sign-in links, a signed HTTP-only cookie, CSRF tokens.

The cookie holds only the access key id and a CSRF token, signed with a secret made when the server starts
(``itsdangerous``), so it cannot be forged; a server restart signs everyone out, which the sign-in link that
``immray serve`` prints makes cheap. Every request still asks the store whether the key is active, so a
revoked key is signed out at once. Forms carry the CSRF token, compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "immray_session"
SESSION_SECONDS = 12 * 3600
LINK_SECONDS = 24 * 3600


@dataclass(frozen=True)
class WebSession:
    access_key_id: str
    csrf: str
    sid: str  # names the session's server-side memory (the last undoable change)

    def csrf_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf, given or "")


class Sessions:
    def __init__(self, secret: bytes | None = None) -> None:
        self._serializer = URLSafeTimedSerializer(secret or secrets.token_bytes(32), salt="immray-web")
        self._links: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def new_link_token(self, access_key_id: str) -> str:
        """A token that signs ``access_key_id`` in once (within a day)."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._links[token] = (access_key_id, time.monotonic() + LINK_SECONDS)
        return token

    def redeem(self, token: str) -> str | None:
        """The key a link token signs in, once; None if unknown, used or expired."""
        with self._lock:
            found = self._links.pop(token, None)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def new_cookie(self, access_key_id: str) -> str:
        return self._serializer.dumps(
            {"k": access_key_id, "c": secrets.token_urlsafe(24), "s": secrets.token_urlsafe(12)}
        )

    def read(self, cookie: str | None) -> WebSession | None:
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in "kcs"):
            return None
        return WebSession(data["k"], data["c"], data["s"])
