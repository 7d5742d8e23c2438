"""The CLI's own access key: saved by `immray serve` on first start, read by commands that call the API.

One small JSON file (``<data_dir>/credentials.json``), readable by its owner only, as the IMM SDK's
``Config`` takes it: AccessKeyId, AccessKeySecret and the Endpoint the server listens on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

FILE_MODE = 0o600


class CredentialsError(Exception):
    """The credentials file is missing fields, is not JSON, or cannot be written."""


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: str
    endpoint: str  # host:port, as the SDK's Config(endpoint=...) takes it

    def __repr__(self) -> str:  # never print the secret by accident
        return f"Credentials({self.access_key_id}, endpoint={self.endpoint})"

    def to_json(self) -> dict[str, str]:
        return {
            "AccessKeyId": self.access_key_id,
            "AccessKeySecret": self.access_key_secret,
            "Endpoint": self.endpoint,
            "Protocol": "http",
        }


def save_credentials(path: Path, credentials: Credentials) -> None:
    """Write ``path`` with mode 0600; the secret never exists in a file anyone else can read, even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(credentials.to_json(), out, indent=2)
            out.write("\n")
        os.chmod(partial, FILE_MODE)  # in case a umask or an ACL widened it
        os.replace(partial, path)
    except OSError as exc:
        raise CredentialsError(f"cannot save the credentials to {path}: {exc.strerror or exc}") from None


def load_credentials(path: Path) -> Credentials | None:
    """The saved credentials, or None when there is no file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"cannot read the credentials in {path}: {exc}") from None
    try:
        return Credentials(data["AccessKeyId"], data["AccessKeySecret"], data["Endpoint"])
    except (KeyError, TypeError):
        raise CredentialsError(
            f"{path} lacks AccessKeyId, AccessKeySecret or Endpoint; delete it and create a key with "
            "`immray keys create --admin`"
        ) from None
