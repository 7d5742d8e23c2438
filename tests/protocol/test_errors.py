"""The error type: IMM's codes with the statuses the spec decides, and IMM's body."""

from __future__ import annotations

import pytest

from immray.protocol import ImmError


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (ImmError.invalid_argument("x"), "InvalidArgument", 400),
        (ImmError.missing_parameter("ProjectName"), "InvalidArgument", 400),
        (ImmError.invalid_json("Files"), "InvalidJSON", 400),
        (ImmError.resource_not_found("project", "p1"), "ResourceNotFound", 404),
        (ImmError.resource_already_exists("dataset", "d1"), "ResourceAlreadyExists", 409),
        (ImmError.operation_conflict("MetaLockVersion"), "OperationConflict", 409),
        (ImmError.limit_exceeded("x"), "LimitExceeded", 400),
        (ImmError.forbidden("x"), "Forbidden", 403),
        (ImmError.internal_error("R1"), "InternalError", 500),
        (ImmError.unsupported_action("CreateStory"), "UnsupportedAction", 400),
        (ImmError.incomplete_signature("x"), "IncompleteSignature", 400),
        (ImmError.access_key_not_found("AK"), "InvalidAccessKeyId.NotFound", 404),
        (ImmError.signature_mismatch("x"), "SignatureDoesNotMatch", 400),
        (ImmError.timestamp_expired("x"), "InvalidTimeStamp.Expired", 400),
        (ImmError.nonce_used("n"), "SignatureNonceUsed", 400),
    ],
)
def test_codes_and_statuses(error: ImmError, code: str, status: int):
    assert (error.code, error.status) == (code, status)
    assert error.message


def test_body_is_imm_shaped():
    error = ImmError.resource_not_found("project", "p1")
    assert error.body("REQ-1", "immray") == {
        "RequestId": "REQ-1",
        "HostId": "immray",
        "Code": "ResourceNotFound",
        "Message": "The specified resource project p1 is not found.",
        "Recommend": "",
    }
    assert ImmError("X", "m", 418, recommend="see docs").body("R", "H")["Recommend"] == "see docs"


def test_messages_say_what_is_wrong():
    assert ImmError.missing_parameter("ProjectName").message == (
        "The parameter ProjectName is required but not provided."
    )
    assert ImmError.invalid_json("Files").message == "Array parsing error, Files"
    assert "CreateStory is not supported" in ImmError.unsupported_action("CreateStory").message
    assert "R1" in ImmError.internal_error("R1").message
