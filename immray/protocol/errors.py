"""The one error type of the IMM API: an error code, a message, an HTTP status.

Everything that refuses a request (signature, parameters, handlers, services) raises ``ImmError``; the API
layer turns it into IMM's error body ``{"RequestId","HostId","Code","Message","Recommend"}``, which the
official SDK reads into ``e.code`` / ``e.message``. The constructors below are the codes the product spec
decides, so the same situation always gets the same code and status.
"""

from __future__ import annotations

from typing import Any


class ImmError(Exception):
    """A refused request, as IMM reports it."""

    def __init__(self, code: str, message: str, status: int, recommend: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.recommend = recommend

    def body(self, request_id: str, host_id: str) -> dict[str, Any]:
        """IMM's error body; the SDK copies it whole into the exception's ``data``."""
        return {
            "RequestId": request_id,
            "HostId": host_id,
            "Code": self.code,
            "Message": self.message,
            "Recommend": self.recommend,
        }

    def __repr__(self) -> str:
        return f"ImmError({self.code!r}, {self.message!r}, {self.status})"

    # --- parameters and resources -------------------------------------------------------------

    @classmethod
    def invalid_argument(cls, message: str) -> ImmError:
        return cls("InvalidArgument", message, 400)

    @classmethod
    def missing_parameter(cls, name: str) -> ImmError:
        return cls.invalid_argument(f"The parameter {name} is required but not provided.")

    @classmethod
    def invalid_json(cls, name: str) -> ImmError:
        return cls("InvalidJSON", f"Array parsing error, {name}", 400)

    @classmethod
    def resource_not_found(cls, resource_type: str, name: str = "") -> ImmError:
        which = f" {name}" if name else ""
        return cls("ResourceNotFound", f"The specified resource {resource_type}{which} is not found.", 404)

    @classmethod
    def resource_already_exists(cls, resource_type: str, name: str = "") -> ImmError:
        which = f" {name}" if name else ""
        return cls(
            "ResourceAlreadyExists", f"The specified resource {resource_type}{which} already exists.", 409
        )

    @classmethod
    def operation_conflict(cls, message: str) -> ImmError:
        return cls("OperationConflict", message, 409)

    @classmethod
    def limit_exceeded(cls, message: str) -> ImmError:
        return cls("LimitExceeded", message, 400)

    @classmethod
    def forbidden(cls, message: str) -> ImmError:
        return cls("Forbidden", message, 403)

    @classmethod
    def internal_error(cls, request_id: str = "") -> ImmError:
        see = f" (request id {request_id})" if request_id else ""
        return cls("InternalError", f"The server met an internal error; it is logged{see}.", 500)

    @classmethod
    def unsupported_action(cls, action: str) -> ImmError:
        return cls(
            "UnsupportedAction",
            f"The action {action} is not supported by this server: immray implements IMM 2020-09-30's "
            "face-clustering operations only.",
            400,
        )

    # --- signature -------------------------------------------------------------------------

    @classmethod
    def incomplete_signature(cls, message: str) -> ImmError:
        return cls("IncompleteSignature", message, 400)

    @classmethod
    def access_key_not_found(cls, access_key_id: str) -> ImmError:
        return cls("InvalidAccessKeyId.NotFound", f"Specified access key {access_key_id} is not found.", 404)

    @classmethod
    def signature_mismatch(cls, message: str) -> ImmError:
        return cls("SignatureDoesNotMatch", message, 400)

    @classmethod
    def timestamp_expired(cls, message: str) -> ImmError:
        return cls("InvalidTimeStamp.Expired", message, 400)

    @classmethod
    def timestamp_format(cls, message: str) -> ImmError:
        return cls("InvalidTimeStamp.Format", message, 400)

    @classmethod
    def nonce_used(cls, nonce: str) -> ImmError:
        return cls("SignatureNonceUsed", f"Specified signature nonce {nonce} was used already.", 400)
