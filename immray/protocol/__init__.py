"""IMM's wire contract and nothing else: signatures, parameter decoding, the error type.

Pure code: no HTTP framework and no database, so the API server, the CLI's client and the tests share it.
"""

from immray.protocol.errors import ImmError
from immray.protocol.nonces import MemoryNonceStore, NonceStore
from immray.protocol.signing import API_VERSION, HttpRequest, SecretLookup, Verified, sign, verify

__all__ = [
    "API_VERSION",
    "HttpRequest",
    "ImmError",
    "MemoryNonceStore",
    "NonceStore",
    "SecretLookup",
    "Verified",
    "sign",
    "verify",
]
