"""Checking a request's ``Notification`` parameter before anything is accepted.

IMM sends task messages to the MNS or RocketMQ topic a request names; immray sends them to the sink
the operator mapped that TopicName to. A topic nobody mapped would swallow every message, so it is refused
with InvalidArgument when the request arrives, not discovered when the task ends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from immray.protocol.errors import ImmError
from immray.settings import NotifyTopic

_CHANNELS = ("MNS", "RocketMQ")
_TOPIC_FIELDS = {"MNS": ("TopicName",), "RocketMQ": ("InstanceId", "TopicName")}


def validate_notification(
    notification: Mapping[str, Any] | str | None, topics: Mapping[str, NotifyTopic]
) -> dict[str, Any] | None:
    """The Notification to store with the task (None when none was asked for), or InvalidArgument.

    ``notification`` is the decoded JSON parameter (a JSON string is decoded here); ``topics`` is
    ``Settings.notify_topics``.
    """
    if isinstance(notification, str):
        if not notification.strip():
            return None
        try:
            notification = json.loads(notification)
        except ValueError:
            raise ImmError.invalid_json("Notification") from None
    if notification is None:
        return None
    if not isinstance(notification, Mapping):
        raise ImmError.invalid_argument("The parameter Notification must be a JSON object.")
    unknown = sorted(set(notification) - {*_CHANNELS, "ExtendedMessageURI"})
    if unknown:
        raise ImmError.invalid_argument(
            f"The parameter Notification has unknown field(s) {', '.join(map(str, unknown))[:200]}: "
            "use MNS or RocketMQ."
        )
    if notification.get("ExtendedMessageURI"):
        raise ImmError.invalid_argument(
            "Notification.ExtendedMessageURI is not supported by immray: messages go to the sink mapped "
            "to the MNS or RocketMQ TopicName."
        )
    kept: dict[str, Any] = {}
    for channel in _CHANNELS:
        given = notification.get(channel)
        if given is None:
            continue
        if not isinstance(given, Mapping):
            raise ImmError.invalid_argument(f"Notification.{channel} must be a JSON object.")
        topic = given.get("TopicName")
        if not isinstance(topic, str) or not topic:
            raise ImmError.invalid_argument(f"Notification.{channel}.TopicName is required.")
        if topic not in topics:
            raise ImmError.invalid_argument(
                f"Notification.{channel}.TopicName {topic[:256]!r} is not a topic of this server: the "
                "operator maps topic names to sinks in IMMRAY_NOTIFY_TOPICS."
            )
        extra = sorted(set(given) - set(_TOPIC_FIELDS[channel]))
        if extra:
            raise ImmError.invalid_argument(
                f"Notification.{channel} has unknown field(s) {', '.join(map(str, extra))[:200]}."
            )
        kept[channel] = {name: given[name] for name in _TOPIC_FIELDS[channel] if name in given}
    return kept or None


def notification_topics(notification: Mapping[str, Any] | None) -> list[str]:
    """The topic names a stored Notification sends to, each once, in a stable order."""
    names: list[str] = []
    for channel in _CHANNELS:
        topic = ((notification or {}).get(channel) or {}).get("TopicName")
        if topic and topic not in names:
            names.append(topic)
    return names
