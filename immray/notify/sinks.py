"""Where a topic's messages go: a Redis stream, a RabbitMQ exchange or queue, or an HTTP(S) webhook.

Each sink's ``send`` returns only once the other side took the message (Redis answered XADD, the broker
confirmed the publish, the webhook answered 2xx) and raises :class:`DeliveryError` otherwise; the
dispatcher then retries later. Error texts name the sink by its URL without credentials.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import quote

from immray.notify.envelope import encode
from immray.settings import NotifyTopic

SIGNATURE_HEADER = "X-Immray-Signature"
MESSAGE_ID_HEADER = "X-Immray-Message-Id"
TOPIC_HEADER = "X-Immray-Topic"


class DeliveryError(Exception):
    """A message was not taken; the text says why, without secrets."""


class Sink(Protocol):
    def send(self, topic: str, message: Mapping[str, str]) -> None: ...

    def close(self) -> None: ...


def sign_body(secret: str, body: bytes) -> str:
    """The webhook signature header value: ``sha256=<hex HMAC-SHA256 of the body>``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def open_sink(topic: NotifyTopic) -> Sink:
    scheme = topic.scheme
    if scheme in ("redis", "rediss", "unix"):
        return RedisStreamSink(topic)
    if scheme in ("amqp", "amqps"):
        return RabbitMqSink(topic)
    return WebhookSink(topic)


class RedisStreamSink:
    """XADD to a stream; the envelope's fields become the entry's fields (all strings)."""

    def __init__(self, topic: NotifyTopic) -> None:
        import redis

        self._topic = topic
        self._client = redis.Redis.from_url(
            topic.url, socket_timeout=topic.timeout_seconds, socket_connect_timeout=topic.timeout_seconds
        )
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    def send(self, topic: str, message: Mapping[str, str]) -> None:
        try:
            self._client.xadd(self._topic.stream or "", dict(message))
        except self._errors as exc:
            raise DeliveryError(f"Redis {self._topic.display_url}: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        self._client.close()


class RabbitMqSink:
    """A persistent, mandatory publish with publisher confirms, to an exchange or (via the default
    exchange) straight to a queue. The exchange or queue must exist: an unroutable message is an error.

    The connection is kept between messages; the broker may close an idle one, so a publish that finds it
    gone reconnects once before it counts as failed.
    """

    def __init__(self, topic: NotifyTopic) -> None:
        import pika

        self._pika = pika
        self._topic = topic
        self._connection: pika.BlockingConnection | None = None
        self._channel = None

    def _open(self):
        pika = self._pika
        parameters = pika.URLParameters(self._topic.url)
        parameters.socket_timeout = self._topic.timeout_seconds
        parameters.blocked_connection_timeout = self._topic.timeout_seconds
        parameters.connection_attempts = 1
        self._connection = pika.BlockingConnection(parameters)
        channel = self._connection.channel()
        channel.confirm_delivery()
        self._channel = channel
        return channel

    def send(self, topic: str, message: Mapping[str, str]) -> None:
        pika = self._pika
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message.get("id"),
            type=message.get("type"),
        )
        body = encode(message)
        reused = self._channel is not None and self._channel.is_open
        try:
            self._publish(body, properties)
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.close()
            if not reused:
                raise self._failed(exc) from None
            try:  # the broker may have closed the idle connection: once more on a new one
                self._publish(body, properties)
            except (pika.exceptions.AMQPError, OSError) as again:
                self.close()
                raise self._failed(again) from None

    def _publish(self, body: bytes, properties) -> None:
        if self._topic.exchange is not None:
            exchange, routing_key = self._topic.exchange, self._topic.routing_key
        else:
            exchange, routing_key = "", self._topic.queue or ""
        channel = self._channel if self._channel is not None and self._channel.is_open else self._open()
        try:
            channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
        except self._pika.exceptions.UnroutableError:
            raise DeliveryError(
                f"RabbitMQ {self._topic.display_url}: nothing is bound to receive it "
                f"(exchange {exchange!r}, routing key {routing_key!r})"
            ) from None

    def _failed(self, exc: BaseException) -> DeliveryError:
        return DeliveryError(f"RabbitMQ {self._topic.display_url}: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(
                Exception
            ):  # a broken connection may fail to close; it is dropped anyway
                connection.close()


class WebhookSink:
    """POST the envelope as JSON, signed: ``X-Immray-Signature: sha256=<hex HMAC-SHA256(secret, body)>``.

    Receivers verify the signature over the raw body and drop duplicates by ``X-Immray-Message-Id``
    (the envelope's ``id``). Any 2xx is success; redirects are not followed.
    """

    def __init__(self, topic: NotifyTopic) -> None:
        import httpx

        self._httpx = httpx
        self._topic = topic
        self._secret = topic.secret.get_secret_value() if topic.secret else ""
        self._client = httpx.Client(timeout=topic.timeout_seconds, follow_redirects=False)

    def send(self, topic: str, message: Mapping[str, str]) -> None:
        body = encode(message)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign_body(self._secret, body),
            MESSAGE_ID_HEADER: message.get("id", ""),
            TOPIC_HEADER: quote(topic, safe=""),
            "User-Agent": "immray-notify",
        }
        try:
            response = self._client.post(self._topic.url, content=body, headers=headers)
        except self._httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {self._topic.display_url}: {type(exc).__name__}: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(
                f"webhook {self._topic.display_url} answered HTTP {response.status_code}: "
                f"{response.text[:200]!r}"
            )

    def close(self) -> None:
        self._client.close()
