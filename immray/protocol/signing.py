"""Request signatures exactly as the official IMM SDK computes them: verify on the server, sign in our clients.

Two schemes reach an IMM endpoint. ACS3-HMAC-SHA256 (the SDK's default) signs a canonical request rebuilt
from the ``SignedHeaders`` list of the ``Authorization`` header, the raw query string and the body hash. The
legacy RPC HMAC-SHA1 scheme (``Config(signature_algorithm='v2')``) carries its signature and credentials in
the query. Both reject a stale date and a replayed nonce, so a captured request cannot be sent again.
Secrets come from a ``lookup_secret(access_key_id)`` callable and nonces go to a ``NonceStore``: the
verifier knows no storage and no HTTP framework; it reads the plain ``HttpRequest`` below.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

from immray.protocol.errors import ImmError
from immray.protocol.nonces import NonceStore

API_VERSION = "2020-09-30"
ACS3_ALGORITHM = "ACS3-HMAC-SHA256"
LEGACY_ALGORITHM = "HMAC-SHA1"
MAX_CLOCK_SKEW = timedelta(minutes=15)
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()

# Without these signed, a captured request could be re-targeted (host, action) or replayed (date, nonce).
REQUIRED_SIGNED_HEADERS = ("host", "x-acs-action", "x-acs-date", "x-acs-signature-nonce")
# Query parameters of the legacy scheme that are protocol, not the action's parameters.
LEGACY_PROTOCOL_PARAMS = frozenset(
    {
        "Action",
        "Format",
        "Version",
        "Timestamp",
        "SignatureNonce",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureType",
        "AccessKeyId",
        "Signature",
        "SecurityToken",
    }
)
_NONCE = re.compile(r"[\x21-\x7e]{1,128}")
_ACCESS_KEY_ID = re.compile(r"[\x21-\x7e]{1,64}")  # the store keeps ids up to 64 characters

SecretLookup = Callable[[str], str | None]
Pairs = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class HttpRequest:
    """What the verifier needs of a request; ``query`` is the raw query string as received."""

    method: str
    path: str
    query: str
    headers: Pairs
    body: bytes = b""

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key.lower() == name]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    def form_pairs(self) -> list[tuple[str, str]]:
        """Parameters sent as an urlencoded body (a few IMM actions do), else none."""
        content_type = (self.header("content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded" or not self.body:
            return []
        try:
            return parse_query(self.body.decode("utf-8"))
        except UnicodeDecodeError:
            raise ImmError.invalid_argument("The request body is not valid UTF-8.") from None


@dataclass(frozen=True)
class Verified:
    """An authentic request: who signed it and the action the signature covers."""

    access_key_id: str
    action: str | None
    algorithm: str


def parse_query(raw: str) -> list[tuple[str, str]]:
    """Decode a query string the way the SDK's ``urlencode`` meant it (``+`` is a space)."""
    try:
        return parse_qsl(raw, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise ImmError.invalid_argument("The query string is not valid UTF-8 once percent-decoded.") from None


def format_date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(DATE_FORMAT)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- ACS3-HMAC-SHA256 -------------------------------------------------------------------------------


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Sorted by key; keys raw and values RFC 3986-encoded, as ``get_canonical_query_string`` does."""
    ordered = sorted(pairs, key=lambda pair: pair[0])
    return "&".join(f"{key}={quote(value, safe='~')}" for key, value in ordered)


def canonical_request(
    method: str,
    path: str,
    query_pairs: Iterable[tuple[str, str]],
    headers: Iterable[tuple[str, str]],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    """The text whose hash is signed; ``signed_headers`` are lower-case and sorted."""
    values: dict[str, list[str]] = {name: [] for name in signed_headers}
    for key, value in headers:
        if key.lower() in values:
            values[key.lower()].append(value.strip())
    header_lines = "".join(f"{name}:{','.join(sorted(values[name]))}\n" for name in signed_headers)
    return "\n".join(
        [
            method,
            path or "/",
            canonical_query(query_pairs),
            header_lines,
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def acs3_string_to_sign(canonical: str) -> str:
    return f"{ACS3_ALGORITHM}\n{sha256_hex(canonical.encode('utf-8'))}"


def acs3_signature(secret: str, string_to_sign: str) -> str:
    return hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Authorization:
    algorithm: str
    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> Authorization:
    """``ACS3-HMAC-SHA256 Credential=<AK>,SignedHeaders=<h1;h2>,Signature=<hex>``, or IncompleteSignature."""
    algorithm, _, rest = value.strip().partition(" ")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key] = val.strip()
    missing = [key for key in ("Credential", "SignedHeaders", "Signature") if not fields.get(key)]
    if missing:
        raise ImmError.incomplete_signature(
            f"The Authorization header lacks {', '.join(missing)}: expected "
            f"'{ACS3_ALGORITHM} Credential=<AccessKeyId>,SignedHeaders=<h1;h2;...>,Signature=<hex>'."
        )
    if algorithm != ACS3_ALGORITHM:
        raise ImmError.incomplete_signature(
            f"The signature algorithm {algorithm[:64]} is not supported; use {ACS3_ALGORITHM}."
        )
    if not _ACCESS_KEY_ID.fullmatch(fields["Credential"]):
        raise ImmError.incomplete_signature("The Credential of the Authorization header is malformed.")
    names = tuple(
        sorted({name.strip().lower() for name in fields["SignedHeaders"].split(";") if name.strip()})
    )
    return Authorization(algorithm, fields["Credential"], names, fields["Signature"])


def verify(
    request: HttpRequest,
    lookup_secret: SecretLookup,
    nonces: NonceStore,
    now: datetime | None = None,
) -> Verified:
    """Check the request's signature, date and nonce; raise the IMM error that applies, else say who signed."""
    now = now or datetime.now(UTC)
    authorization = request.header("authorization")
    if authorization is not None:
        return _verify_acs3(request, parse_authorization(authorization), lookup_secret, nonces, now)
    pairs = parse_query(request.query)
    if any(key == "Signature" for key, _ in pairs):
        return _verify_legacy(request, pairs, lookup_secret, nonces, now)
    raise ImmError.incomplete_signature(
        f"The request is not signed: it has no Authorization header ({ACS3_ALGORITHM} expected)."
    )


def _verify_acs3(
    request: HttpRequest, auth: Authorization, lookup_secret: SecretLookup, nonces: NonceStore, now: datetime
) -> Verified:
    unsigned = [name for name in REQUIRED_SIGNED_HEADERS if name not in auth.signed_headers]
    if unsigned:
        raise ImmError.incomplete_signature(f"These headers must be signed: {', '.join(unsigned)}.")
    absent = [name for name in auth.signed_headers if not request.header_values(name)]
    if absent:
        raise ImmError.incomplete_signature(f"Signed headers missing from the request: {', '.join(absent)}.")
    repeated = [name for name in REQUIRED_SIGNED_HEADERS if len(request.header_values(name)) > 1]
    if repeated:
        raise ImmError.incomplete_signature(f"These headers must be sent once: {', '.join(repeated)}.")
    date = _parse_date(request.header("x-acs-date") or "", "x-acs-date")
    nonce = _check_nonce_format(request.header("x-acs-signature-nonce") or "", "x-acs-signature-nonce")
    secret = _secret_of(auth.access_key_id, lookup_secret)

    body_hash = sha256_hex(request.body)
    declared = request.header("x-acs-content-sha256")
    if declared is not None and declared.strip().lower() != body_hash:
        raise ImmError.signature_mismatch("The x-acs-content-sha256 header is not the SHA-256 of the body.")
    canonical = canonical_request(
        request.method.upper(),
        request.path,
        parse_query(request.query),
        request.headers,
        auth.signed_headers,
        body_hash,
    )
    string_to_sign = acs3_string_to_sign(canonical)
    if not _same(acs3_signature(secret, string_to_sign), auth.signature):
        raise ImmError.signature_mismatch(
            "The request signature does not match our calculation. Server string to sign: "
            + string_to_sign.replace("\n", "\\n")
        )
    _check_fresh(date, now, "x-acs-date")
    _check_unused(nonce, date, nonces)
    return Verified(auth.access_key_id, request.header("x-acs-action"), ACS3_ALGORITHM)


# --- legacy RPC HMAC-SHA1 ---------------------------------------------------------------------------


def legacy_signature(pairs: Iterable[tuple[str, str]], secret: str, method: str = "POST") -> str:
    """``get_rpcsignature``: base64 HMAC-SHA1 over ``POST&%2F&<encoded sorted query>``, key ``secret&``."""
    ordered = sorted(((k, v) for k, v in pairs if k != "Signature"), key=lambda pair: pair[0])
    canonical = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in ordered)
    string_to_sign = f"{method.upper()}&%2F&{quote_plus(canonical, safe='~')}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _verify_legacy(
    request: HttpRequest, pairs: Pairs, lookup_secret: SecretLookup, nonces: NonceStore, now: datetime
) -> Verified:
    params = dict(pairs)
    required = ("AccessKeyId", "SignatureMethod", "SignatureVersion", "Timestamp", "SignatureNonce", "Action")
    missing = [name for name in required if not params.get(name)]
    if missing:
        raise ImmError.incomplete_signature(f"The signed query lacks {', '.join(missing)}.")
    if params["SignatureMethod"] != LEGACY_ALGORITHM or params["SignatureVersion"] != "1.0":
        raise ImmError.incomplete_signature(
            f"Only SignatureMethod={LEGACY_ALGORITHM} with SignatureVersion=1.0 is supported in the query."
        )
    if not _ACCESS_KEY_ID.fullmatch(params["AccessKeyId"]):
        raise ImmError.incomplete_signature("The AccessKeyId parameter is malformed.")
    date = _parse_date(params["Timestamp"], "Timestamp")
    nonce = _check_nonce_format(params["SignatureNonce"], "SignatureNonce")
    secret = _secret_of(params["AccessKeyId"], lookup_secret)
    expected = legacy_signature([*pairs, *request.form_pairs()], secret, request.method)
    if not _same(expected, params["Signature"]):
        raise ImmError.signature_mismatch("The request signature does not match our calculation.")
    _check_fresh(date, now, "Timestamp")
    _check_unused(nonce, date, nonces)
    return Verified(params["AccessKeyId"], params["Action"], LEGACY_ALGORITHM)


# --- shared checks ----------------------------------------------------------------------------------


def _secret_of(access_key_id: str, lookup_secret: SecretLookup) -> str:
    secret = lookup_secret(access_key_id)
    if not secret:
        raise ImmError.access_key_not_found(access_key_id)
    return secret


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def _parse_date(text: str, name: str) -> datetime:
    try:
        return datetime.strptime(text, DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ImmError.timestamp_format(
            f"The {name} {text[:64]!r} is not a UTC time like 2026-01-31T12:00:00Z."
        ) from None


def _check_nonce_format(nonce: str, name: str) -> str:
    if not _NONCE.fullmatch(nonce):
        raise ImmError.incomplete_signature(f"The {name} must be 1 to 128 printable ASCII characters.")
    return nonce


def _check_fresh(date: datetime, now: datetime, name: str) -> None:
    if abs(now - date) > MAX_CLOCK_SKEW:
        raise ImmError.timestamp_expired(
            f"The {name} {format_date(date)} is more than {int(MAX_CLOCK_SKEW.total_seconds() // 60)} "
            f"minutes away from the server time {format_date(now)}."
        )


def _check_unused(nonce: str, date: datetime, nonces: NonceStore) -> None:
    if nonces.seen_before(nonce, date + MAX_CLOCK_SKEW):
        raise ImmError.nonce_used(nonce)


# --- signing (our CLI, clients and tests) -----------------------------------------------------------


def encode_query(params: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """The URL query as the SDK writes it (``urlencode``: space is ``+``)."""
    return urlencode(list(params.items()) if isinstance(params, Mapping) else list(params))


def sign(
    *,
    access_key_id: str,
    secret: str,
    action: str,
    host: str,
    query: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    method: str = "POST",
    path: str = "/",
    date: datetime | None = None,
    nonce: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers of an ACS3-signed request, ``authorization`` included; send the query with ``encode_query``."""
    pairs = list(query.items()) if isinstance(query, Mapping) else list(query)
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": API_VERSION,
        "x-acs-date": format_date(date or datetime.now(UTC)),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "x-acs-content-sha256": sha256_hex(body),
    }
    headers.update({key.lower(): value for key, value in (extra_headers or {}).items()})
    names = sorted(headers)
    canonical = canonical_request(method.upper(), path, pairs, headers.items(), names, sha256_hex(body))
    signature = acs3_signature(secret, acs3_string_to_sign(canonical))
    headers["authorization"] = (
        f"{ACS3_ALGORITHM} Credential={access_key_id},SignedHeaders={';'.join(names)},Signature={signature}"
    )
    return headers


def sign_legacy(
    *,
    access_key_id: str,
    secret: str,
    action: str,
    query: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    method: str = "POST",
    date: datetime | None = None,
    nonce: str | None = None,
) -> list[tuple[str, str]]:
    """The query pairs of a legacy-signed request (protocol parameters and ``Signature`` included)."""
    pairs = [
        ("Action", action),
        ("Format", "json"),
        ("Version", API_VERSION),
        ("Timestamp", format_date(date or datetime.now(UTC))),
        ("SignatureNonce", nonce or uuid.uuid4().hex),
        *(query.items() if isinstance(query, Mapping) else query),
        ("SignatureMethod", LEGACY_ALGORITHM),
        ("SignatureVersion", "1.0"),
        ("AccessKeyId", access_key_id),
    ]
    return [*pairs, ("Signature", legacy_signature(pairs, secret, method))]
