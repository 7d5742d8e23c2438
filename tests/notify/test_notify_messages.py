"""The pure parts of notifications: request checks, the IMM envelope, signatures, backoff, topic config."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from immray.notify import envelope, event_type_of, notification_topics, validate_notification
from immray.notify.outbox import retry_delay
from immray.notify.sinks import sign_body
from immray.protocol.errors import ImmError
from immray.settings import NotifyTopic

TOPICS = {
    "jobs": NotifyTopic(url="redis://127.0.0.1:6379/0", stream="s"),
    "hooks": NotifyTopic(url="https://example.org/hook", secret="k"),
}


def test_known_topics_are_kept_as_given():
    assert validate_notification({"MNS": {"TopicName": "jobs"}}, TOPICS) == {"MNS": {"TopicName": "jobs"}}
    both = {"MNS": {"TopicName": "jobs"}, "RocketMQ": {"InstanceId": "i-1", "TopicName": "hooks"}}
    assert validate_notification(json.dumps(both), TOPICS) == both
    assert notification_topics(both) == ["jobs", "hooks"]
    assert notification_topics({"MNS": {"TopicName": "jobs"}, "RocketMQ": {"TopicName": "jobs"}}) == ["jobs"]
    assert validate_notification(None, TOPICS) is None and validate_notification({}, TOPICS) is None


@pytest.mark.parametrize(
    ("notification", "code", "says"),
    [
        ({"MNS": {"TopicName": "nobody-maps-me"}}, "InvalidArgument", "'nobody-maps-me'"),
        ({"RocketMQ": {"InstanceId": "i", "TopicName": "unknown"}}, "InvalidArgument", "'unknown'"),
        ({"MNS": {}}, "InvalidArgument", "TopicName is required"),
        ({"MNS": "jobs"}, "InvalidArgument", "JSON object"),
        ({"Kafka": {"TopicName": "jobs"}}, "InvalidArgument", "Kafka"),
        ({"MNS": {"TopicName": "jobs", "Endpoint": "x"}}, "InvalidArgument", "Endpoint"),
        ({"ExtendedMessageURI": "oss://b/o"}, "InvalidArgument", "ExtendedMessageURI"),
        ([1], "InvalidArgument", "JSON object"),
        ('{"MNS": ', "InvalidJSON", "Notification"),
    ],
)
def test_bad_notifications_are_refused_at_request_time(notification, code, says):
    with pytest.raises(ImmError) as refused:
        validate_notification(notification, TOPICS)
    assert refused.value.code == code and says in refused.value.message


def test_the_envelope_is_imms():
    at = datetime(2026, 11, 25, 16, 5, 33, 123000, tzinfo=UTC)
    content = {"TaskId": "FaceClustering-1", "Status": "Succeeded", "UserData": "ünïcode"}
    message = envelope(
        message_id="m-1", event_type=event_type_of("FaceClustering"), project_name="p", content=content, at=at
    )
    assert message == {
        "id": "m-1",
        "source": "acs.imm",
        "type": "imm:Task:FigureClustering",
        "subject": "acs:imm:local:immray:p/imm:Task:FigureClustering",
        "time": str(int(at.timestamp() * 1000)),
        "content": '{"TaskId":"FaceClustering-1","Status":"Succeeded","UserData":"ünïcode"}',
    }
    assert event_type_of("FigureClustersMerging") == "imm:Task:FigureClustersMerging"
    with pytest.raises(ValueError):
        envelope(message_id="m", event_type="t", project_name="p", content={}, at=datetime(2026, 1, 1))


def test_the_webhook_signature_is_hmac_sha256_of_the_body():
    body = b'{"id":"m-1"}'
    expected = hmac.new(b"topic secret", body, hashlib.sha256).hexdigest()
    assert sign_body("topic secret", body) == f"sha256={expected}"
    assert sign_body("topic secret", body + b" ") != sign_body("topic secret", body)


def test_retry_delays_double_up_to_the_cap_with_some_jitter():
    rng = random.Random(7)
    delays = [retry_delay(attempt, base=1.0, cap=60.0, rng=rng) for attempt in range(1, 10)]
    ceilings = [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert all(0.8 * ceiling <= delay <= ceiling for delay, ceiling in zip(delays, ceilings, strict=True))
    assert retry_delay(10_000, base=1.0, cap=600.0) <= 600.0


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"url": "redis://127.0.0.1:6379/0"}, "stream"),
        ({"url": "amqp://127.0.0.1/", "exchange": "x", "queue": "q"}, "exactly one"),
        ({"url": "amqp://127.0.0.1/"}, "exactly one"),
        ({"url": "https://example.org/hook"}, "secret"),
        ({"url": "https://example.org/hook", "secret": ""}, "secret"),
        ({"url": "kafka://broker:9092", "stream": "s"}, "unsupported"),
    ],
)
def test_a_topic_that_cannot_work_is_refused_in_the_settings(values, says):
    with pytest.raises(ValidationError, match=says):
        NotifyTopic(**values)


def test_a_topic_url_shows_no_password():
    topic = NotifyTopic(url="amqp://guest:s3cret@127.0.0.1:5672/%2F", queue="q")
    assert topic.display_url == "amqp://127.0.0.1:5672/%2F"
    assert "s3cret" not in repr(topic) and "s3cret" not in str(topic)
    assert "k3y" not in repr(NotifyTopic(url="https://h/x", secret="k3y"))
