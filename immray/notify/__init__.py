"""Notifications: IMM's message envelope, the outbox it is written to, and the sinks that deliver it.

A task's message is written to the ``outbox`` table in the same transaction as the task's result, then
delivered at least once by :class:`~immray.notify.dispatcher.OutboxDispatcher` to the sink the operator
mapped its MNS/RocketMQ TopicName to (``Settings.notify_topics``): a Redis stream, a RabbitMQ exchange or
queue, or a signed HTTP(S) webhook. Importing this package loads no sink client; the dispatcher does.
"""

from immray.notify.envelope import envelope, event_type_of
from immray.notify.outbox import enqueue
from immray.notify.requests import notification_topics, validate_notification

__all__ = ["enqueue", "envelope", "event_type_of", "notification_topics", "validate_notification"]
