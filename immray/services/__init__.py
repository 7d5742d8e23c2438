"""The use cases: what immray does, independent of how it is asked (HTTP, CLI, a worker).

Each function owns its transaction (one ``with db.write() as session`` or ``db.read()``), takes and returns
plain values and dataclasses, and refuses bad requests with ``immray.protocol.ImmError`` so every caller
reports the same code and message. No HTTP types, no face models here.
"""

from immray.services.database import Database

__all__ = ["Database"]
