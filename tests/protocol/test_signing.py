"""Signature verification against the official SDK's captured requests, and our own signer."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_capture import ACCESS_KEY_ID, SECRET, Captured, load_captures

from immray.protocol import HttpRequest, ImmError, MemoryNonceStore, sign, verify
from immray.protocol.signing import (
    ACS3_ALGORITHM,
    MAX_CLOCK_SKEW,
    acs3_signature,
    acs3_string_to_sign,
    canonical_request,
    encode_query,
    parse_authorization,
    parse_query,
    sha256_hex,
    sign_legacy,
)

CAPTURES = load_captures()
ACS3 = [c for c in CAPTURES if not c.legacy]
LEGACY = [c for c in CAPTURES if c.legacy]
KEYS = {ACCESS_KEY_ID: SECRET}


def captured_time(captured: Captured) -> datetime:
    request = captured.request
    text = request.header("x-acs-date") or dict(parse_query(request.query))["Timestamp"]
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def check(request: HttpRequest, now: datetime, keys=None, nonces=None):
    return verify(
        request, (keys or KEYS).get, nonces if nonces is not None else MemoryNonceStore(lambda: now), now=now
    )


def code_of(request: HttpRequest, now: datetime, **options) -> str:
    with pytest.raises(ImmError) as caught:
        check(request, now, **options)
    return caught.value.code


def with_header(request: HttpRequest, name: str, value: str) -> HttpRequest:
    headers = tuple((k, value if k.lower() == name else v) for k, v in request.headers)
    assert headers != request.headers or request.header(name) == value
    return replace(request, headers=headers)


def flip(text: str, index: int) -> str:
    """``text`` with one character changed (a hex/alphanumeric one stays in its alphabet)."""
    old = text[index]
    new = "0" if old != "0" else "1"
    return text[:index] + new + text[index + 1 :]


def test_the_capture_holds_every_kind_of_request():
    assert len(ACS3) == 5 and len(LEGACY) == 1
    assert {c.request.header("x-acs-action") for c in ACS3} >= {
        "CreateFigureClusteringTask",
        "BatchIndexFileMeta",
    }


@pytest.mark.parametrize("captured", ACS3, ids=lambda c: c.title)
def test_canonical_request_matches_the_capture_byte_for_byte(captured: Captured):
    request = captured.request
    auth = parse_authorization(request.header("authorization"))
    rebuilt = canonical_request(
        request.method,
        request.path,
        parse_query(request.query),
        request.headers,
        auth.signed_headers,
        sha256_hex(b""),
    )
    assert rebuilt == captured.canonical_request


@pytest.mark.parametrize("captured", CAPTURES, ids=lambda c: c.title)
def test_every_captured_request_verifies(captured: Captured):
    verified = check(captured.request, captured_time(captured))
    assert verified.access_key_id == ACCESS_KEY_ID
    expected_action = captured.request.header("x-acs-action")
    assert verified.action == expected_action


@pytest.mark.parametrize("captured", ACS3, ids=lambda c: c.title)
def test_one_changed_byte_in_the_query_fails(captured: Captured):
    request = captured.request
    # the last character of the query is inside the last parameter's value
    tampered = replace(request, query=request.query[:-1] + ("X" if request.query[-1] != "X" else "Y"))
    assert code_of(tampered, captured_time(captured)) == "SignatureDoesNotMatch"


@pytest.mark.parametrize("captured", ACS3, ids=lambda c: c.title)
@pytest.mark.parametrize("header", ["host", "x-acs-action", "user-agent", "x-acs-credentials-provider"])
def test_one_changed_byte_in_a_signed_header_fails(captured: Captured, header: str):
    request = captured.request
    value = request.header(header)
    assert code_of(with_header(request, header, flip(value, len(value) - 1)), captured_time(captured)) == (
        "SignatureDoesNotMatch"
    )


@pytest.mark.parametrize("captured", ACS3, ids=lambda c: c.title)
def test_one_changed_byte_in_the_signature_fails(captured: Captured):
    request = captured.request
    authorization = request.header("authorization")
    for index in (len(authorization) - 1, len(authorization) - 40):
        tampered = with_header(request, "authorization", flip(authorization, index))
        assert code_of(tampered, captured_time(captured)) == "SignatureDoesNotMatch"


@pytest.mark.parametrize("captured", ACS3, ids=lambda c: c.title)
def test_unsigned_headers_may_change(captured: Captured):
    request = with_header(captured.request, "accept-encoding", "gzip")
    request = replace(request, headers=(*request.headers, ("X-Forwarded-For", "10.0.0.1")))
    assert check(request, captured_time(captured)).access_key_id == ACCESS_KEY_ID


@pytest.mark.parametrize("captured", ACS3, ids=lambda c: c.title)
def test_a_body_that_is_not_the_hashed_one_fails(captured: Captured):
    request = replace(captured.request, body=b"x")
    assert code_of(request, captured_time(captured)) == "SignatureDoesNotMatch"


def test_legacy_request_fails_with_one_changed_byte():
    captured = LEGACY[0]
    now = captured_time(captured)
    query = captured.request.query
    changed_value = query.replace("ObjectId=x", "ObjectId=y")
    changed_signature = query.replace("Signature=zoc1", "Signature=zoc2")
    assert changed_value != query and changed_signature != query
    for tampered in (changed_value, changed_signature):
        assert code_of(replace(captured.request, query=tampered), now) == "SignatureDoesNotMatch"


def test_wrong_secret_and_unknown_key():
    captured = ACS3[0]
    now = captured_time(captured)
    assert code_of(captured.request, now, keys={ACCESS_KEY_ID: SECRET + "x"}) == "SignatureDoesNotMatch"
    with pytest.raises(ImmError) as caught:
        check(captured.request, now, keys={"someoneElse": SECRET})
    assert (caught.value.code, caught.value.status) == ("InvalidAccessKeyId.NotFound", 404)
    assert code_of(LEGACY[0].request, captured_time(LEGACY[0]), keys={"someoneElse": SECRET}) == (
        "InvalidAccessKeyId.NotFound"
    )


@pytest.mark.parametrize("captured", CAPTURES, ids=lambda c: c.title)
def test_date_more_than_fifteen_minutes_off_is_expired(captured: Captured):
    date = captured_time(captured)
    second = timedelta(seconds=1)
    for now in (date + MAX_CLOCK_SKEW + second, date - MAX_CLOCK_SKEW - second):
        with pytest.raises(ImmError) as caught:
            check(captured.request, now)
        assert (caught.value.code, caught.value.status) == ("InvalidTimeStamp.Expired", 400)
    for now in (date + MAX_CLOCK_SKEW, date - MAX_CLOCK_SKEW):
        check(captured.request, now)


@pytest.mark.parametrize("captured", CAPTURES, ids=lambda c: c.title)
def test_replayed_nonce_is_refused(captured: Captured):
    now = captured_time(captured)
    nonces = MemoryNonceStore(lambda: now)
    check(captured.request, now, nonces=nonces)
    with pytest.raises(ImmError) as caught:
        check(captured.request, now, nonces=nonces)
    assert (caught.value.code, caught.value.status) == ("SignatureNonceUsed", 400)


def test_a_forged_request_does_not_burn_the_nonce_of_the_real_one():
    captured = ACS3[0]
    now = captured_time(captured)
    nonces = MemoryNonceStore(lambda: now)
    forged = replace(captured.request, query=captured.request.query + "X")
    assert code_of(forged, now, nonces=nonces) == "SignatureDoesNotMatch"
    check(captured.request, now, nonces=nonces)


def test_unsigned_and_malformed_authorization_is_incomplete():
    request = ACS3[0].request
    now = captured_time(ACS3[0])
    bare = replace(request, headers=tuple(h for h in request.headers if h[0].lower() != "authorization"))
    assert code_of(bare, now) == "IncompleteSignature"
    for bad in (
        "ACS3-HMAC-SHA256",
        "ACS3-HMAC-SHA256 Credential=testAccessKeyId,SignedHeaders=host",
        "Bearer abc",
        f"ACS3-HMAC-SHA256 Credential={'a' * 65},SignedHeaders=host,Signature=00",
        "ACS3-HMAC-SM3 Credential=testAccessKeyId,SignedHeaders=host,Signature=00",
        "",
    ):
        assert code_of(with_header(request, "authorization", bad), now) == "IncompleteSignature", bad


def _signed_without(header: str, now: datetime) -> HttpRequest:
    """A correctly signed request whose SignedHeaders leave out ``header``."""
    headers = sign(access_key_id=ACCESS_KEY_ID, secret=SECRET, action="GetTask", host="h:1", date=now)
    del headers["authorization"]
    names = sorted(name for name in headers if name != header)
    canonical = canonical_request("POST", "/", [], headers.items(), names, sha256_hex(b""))
    signature = acs3_signature(SECRET, acs3_string_to_sign(canonical))
    authorization = (
        f"{ACS3_ALGORITHM} Credential={ACCESS_KEY_ID},SignedHeaders={';'.join(names)},Signature={signature}"
    )
    return HttpRequest("POST", "/", "", (*headers.items(), ("authorization", authorization)))


@pytest.mark.parametrize("header", ["host", "x-acs-action", "x-acs-date", "x-acs-signature-nonce"])
def test_headers_that_guard_against_replay_must_be_signed(header: str):
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert code_of(_signed_without(header, now), now) == "IncompleteSignature"
    assert check(_signed_without("x-acs-version", now), now).action == "GetTask"


def test_a_guarding_header_sent_twice_is_refused():
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    headers = sign(access_key_id=ACCESS_KEY_ID, secret=SECRET, action="GetTask", host="h", date=now)
    request = HttpRequest("POST", "/", "", (*headers.items(), ("x-acs-action", "DeleteProject")))
    assert code_of(request, now) == "IncompleteSignature"


def test_malformed_date_and_nonce():
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for date in ("2026-01-02 03:04:05", "yesterday", "2026-01-02T03:04:05+08:00"):
        headers = sign(access_key_id=ACCESS_KEY_ID, secret=SECRET, action="GetTask", host="h", date=now)
        headers["x-acs-date"] = date
        with pytest.raises(ImmError) as caught:
            check(HttpRequest("POST", "/", "", tuple(headers.items())), now)
        assert caught.value.code == "InvalidTimeStamp.Format"
    headers = sign(
        access_key_id=ACCESS_KEY_ID, secret=SECRET, action="GetTask", host="h", date=now, nonce="a b"
    )
    assert code_of(HttpRequest("POST", "/", "", tuple(headers.items())), now) == "IncompleteSignature"


query_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    params=st.dictionaries(st.from_regex(r"[A-Z][A-Za-z0-9.]{0,20}", fullmatch=True), query_text, max_size=6),
    body=st.binary(max_size=64),
)
def test_sign_then_verify_round_trips(params: dict[str, str], body: bytes):
    now = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    headers = sign(
        access_key_id="AK1",
        secret="s3cr3t",
        action="SimpleQuery",
        host="127.0.0.1:9",
        query=params,
        body=body,
        date=now,
    )
    request = HttpRequest("POST", "/", encode_query(params), tuple(headers.items()), body)
    assert check(request, now, keys={"AK1": "s3cr3t"}).action == "SimpleQuery"
    if params:
        key = sorted(params)[0]
        changed = {**params, key: params[key] + "!"}
        assert code_of(replace(request, query=encode_query(changed)), now, keys={"AK1": "s3cr3t"}) == (
            "SignatureDoesNotMatch"
        )


@settings(max_examples=100, deadline=None)
@given(
    params=st.dictionaries(st.from_regex(r"[A-Z][A-Za-z0-9]{0,12}", fullmatch=True), query_text, max_size=5)
)
def test_legacy_sign_then_verify_round_trips(params: dict[str, str]):
    params = {
        k: v for k, v in params.items() if k not in ("Action", "Signature", "Timestamp", "Version", "Format")
    }
    now = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    pairs = sign_legacy(access_key_id="AK1", secret="s3cr3t", action="GetTask", query=params, date=now)
    request = HttpRequest("POST", "/", encode_query(pairs), ())
    assert check(request, now, keys={"AK1": "s3cr3t"}).action == "GetTask"


def test_legacy_stale_timestamp_and_missing_parts():
    now = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    stale = sign_legacy(access_key_id="AK1", secret="s", action="GetTask", date=now - timedelta(minutes=16))
    assert code_of(HttpRequest("POST", "/", encode_query(stale), ()), now, keys={"AK1": "s"}) == (
        "InvalidTimeStamp.Expired"
    )
    fresh = sign_legacy(access_key_id="AK1", secret="s", action="GetTask", date=now)
    without_nonce = [(k, v) for k, v in fresh if k != "SignatureNonce"]
    assert code_of(HttpRequest("POST", "/", encode_query(without_nonce), ()), now, keys={"AK1": "s"}) == (
        "IncompleteSignature"
    )


def test_nonce_store_forgets_after_expiry():
    moment = [datetime(2026, 1, 1, tzinfo=UTC)]
    store = MemoryNonceStore(lambda: moment[0])
    expires = moment[0] + timedelta(minutes=15)
    assert store.seen_before("n1", expires) is False
    assert store.seen_before("n1", expires) is True
    assert store.seen_before("n2", expires) is False
    moment[0] = expires
    assert store.seen_before("n1", expires + timedelta(minutes=15)) is False
    assert store.count() == 1
