"""A small signed client of a running immray server, for the CLI commands that call the API.

The official IMM SDK is a test extra, so the CLI speaks the wire protocol itself: every request is an
ACS3-signed ``POST /`` (``protocol.signing.sign``) whose parameters travel in the query, JSON-valued ones
as one compact JSON string, exactly as the SDK sends them. Errors come back as :class:`ApiError` with IMM's
``Code`` and ``Message``; a server that cannot be reached is a :class:`ClientError` that says so.

``connect(settings)`` builds a client from the key `immray serve` saved on first start
(``Settings.credentials_path``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from immray.credentials import Credentials, CredentialsError, load_credentials
from immray.protocol.signing import encode_query, sign
from immray.settings import Settings

DEFAULT_TIMEOUT = 120.0


class ClientError(Exception):
    """The request could not be made or its answer not read; the message says what to do."""


class ApiError(ClientError):
    """The server refused the request: IMM's error ``code`` (InvalidArgument, ResourceNotFound, ...)."""

    def __init__(self, code: str, message: str, status: int, request_id: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id


def encode_params(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Query pairs as the SDK writes them: objects and lists as compact JSON, booleans as true/false,
    None left out."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, Mapping | list | tuple):
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        else:
            text = str(value)
        pairs.append((name, text))
    return pairs


class ImmClient:
    """Calls IMM actions on one server with one access key. Use it as a context manager, or ``close()``."""

    def __init__(
        self,
        endpoint: str,
        access_key_id: str,
        access_key_secret: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        scheme: str = "http",
    ) -> None:
        self.endpoint = endpoint
        self._key_id = access_key_id
        self._secret = access_key_secret
        self._http = httpx.Client(base_url=f"{scheme}://{endpoint}", timeout=timeout)

    @classmethod
    def from_credentials(cls, credentials: Credentials, **options: Any) -> ImmClient:
        return cls(credentials.endpoint, credentials.access_key_id, credentials.access_key_secret, **options)

    def __repr__(self) -> str:  # never the secret
        return f"ImmClient({self.endpoint}, {self._key_id})"

    def __enter__(self) -> ImmClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, action: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON body of ``action`` with ``params``; ApiError if the server refused it."""
        pairs = encode_params(params or {})
        headers = sign(
            access_key_id=self._key_id, secret=self._secret, action=action, host=self.endpoint, query=pairs
        )
        try:
            response = self._http.post(f"/?{encode_query(pairs)}", headers=headers)
        except httpx.TimeoutException:
            raise ClientError(f"{action}: the server at {self.endpoint} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise ClientError(
                f"cannot reach the immray server at {self.endpoint} ({exc}); is `immray serve` running?"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            if isinstance(body, dict) and body.get("Code"):
                raise ApiError(
                    str(body["Code"]),
                    str(body.get("Message", "")),
                    response.status_code,
                    str(body.get("RequestId", "")),
                )
            raise ClientError(f"{action}: HTTP {response.status_code} from {self.endpoint}")
        if not isinstance(body, dict):
            raise ClientError(f"{action}: the server at {self.endpoint} did not answer with a JSON object")
        return body

    def pages(
        self, action: str, items: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paged listing (``items`` names its list field), following NextToken."""
        query = dict(params or {})
        while True:
            body = self.call(action, query)
            yield from body.get(items) or []
            token = body.get("NextToken")
            if not token:
                return
            query["NextToken"] = token


def load_saved_credentials(path: Path) -> Credentials:
    """The key saved by `immray serve`, or a ClientError that says how to get one."""
    try:
        credentials = load_credentials(path)
    except CredentialsError as exc:
        raise ClientError(str(exc)) from None
    if credentials is None:
        raise ClientError(
            f"no access key in {path}: start the server once with `immray serve` (it saves the admin "
            "key there), or point IMMRAY_DATA_DIR / --data-dir at the server's data directory"
        )
    return credentials


def connect(
    settings: Settings, *, endpoint: str | None = None, timeout: float = DEFAULT_TIMEOUT
) -> ImmClient:
    """A client signed with the saved key, talking to ``endpoint`` (default: where the key was saved for)."""
    credentials = load_saved_credentials(settings.credentials_path)
    return ImmClient(
        endpoint or credentials.endpoint,
        credentials.access_key_id,
        credentials.access_key_secret,
        timeout=timeout,
    )
