"""IMM's notification envelope (CloudEvents-like), as MNS/RocketMQ subscribers of IMM receive it.

``{"id", "source": "acs.imm", "type": "imm:Task:<Type>", "subject": "acs:imm:<region>:<uid>:<project>/
imm:Task:<Type>", "time": "<epoch ms>", "content": "<JSON string>"}``. ``content`` is a JSON *string*,
as IMM sends it, so code that parses IMM's messages parses these unchanged. A self-hosted server has no
region or account, so the subject names ``local`` and ``immray`` there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

SOURCE = "acs.imm"
REGION = "local"
ACCOUNT = "immray"
# IMM's EventBridge names the clustering event FigureClustering while GetTask's TaskType is FaceClustering.
_EVENT_NAMES = {"FaceClustering": "FigureClustering"}


def event_type_of(task_type: str) -> str:
    """The envelope ``type`` of a task's message, e.g. ``imm:Task:FigureClustering``."""
    return f"imm:Task:{_EVENT_NAMES.get(task_type, task_type)}"


def envelope(
    *, message_id: str, event_type: str, project_name: str, content: Mapping[str, Any], at: datetime
) -> dict[str, str]:
    """The message as sent; every value is a string (Redis stream fields, AMQP and JSON alike)."""
    if at.tzinfo is None:
        raise ValueError("envelope time must be timezone-aware")
    return {
        "id": message_id,
        "source": SOURCE,
        "type": event_type,
        "subject": f"acs:imm:{REGION}:{ACCOUNT}:{project_name}/{event_type}",
        "time": str(int(at.timestamp() * 1000)),
        "content": json.dumps(dict(content), ensure_ascii=False, separators=(",", ":")),
    }


def encode(message: Mapping[str, str]) -> bytes:
    """The envelope as the bytes a webhook or queue receives (compact UTF-8 JSON)."""
    return json.dumps(dict(message), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
