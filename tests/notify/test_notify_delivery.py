"""Delivery from the outbox to the real Redis, RabbitMQ and a local HTTP receiver, with retries."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pika
import pytest
import redis
from sqlalchemy import select, update

from immray.notify import enqueue, envelope
from immray.notify.dispatcher import OutboxDispatcher
from immray.notify.outbox import claim_due, purge_outbox
from immray.notify.sinks import RabbitMqSink
from immray.services.database import Database
from immray.settings import NotifyTopic
from immray.store import OutboxMessage, utcnow
from task_testkit import make_settings, wait_for

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
SECRET = "webhook secret"


class Receiver:
    """A local webhook: answers the statuses in ``script`` in turn (then 200) and keeps every request."""

    def __init__(self, script: list[int] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests.append((dict(self.headers), body))
                    status = receiver.script.pop(0) if receiver.script else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def bodies(self) -> list[dict]:
        with self.lock:
            return [json.loads(body) for _, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def rabbit() -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    yield connection.channel()
    connection.close()


def message(topic_note: str = "") -> dict[str, str]:
    return envelope(
        message_id=str(uuid.uuid4()),
        event_type="imm:Task:FigureClustering",
        project_name="p",
        content={"TaskId": f"FaceClustering-{uuid.uuid4()}", "Status": "Succeeded", "Note": topic_note},
        at=utcnow(),
    )


def put(db: Database, topic: str, count: int = 1) -> list[dict[str, str]]:
    sent = [message(topic) for _ in range(count)]
    with db.write() as session:
        for item in sent:
            enqueue(session, topic=topic, message=item)
    return sent


def rows(db: Database) -> list[OutboxMessage]:
    with db.read() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def make_due(db: Database) -> None:
    """Time passes: every pending retry is due now (instead of sleeping through the backoff)."""
    with db.write() as session:
        session.execute(update(OutboxMessage).values(next_attempt_at=utcnow() - timedelta(seconds=1)))


def dispatcher(db, db_url, tmp_path, topics, batch=50, **settings) -> OutboxDispatcher:
    return OutboxDispatcher(
        db, make_settings(db_url, tmp_path, notify_topics=topics, **settings), batch=batch
    )


def test_a_webhook_gets_the_signed_envelope(db, db_url, tmp_path, receiver):
    topics = {"hook": NotifyTopic(url=receiver.url, secret=SECRET)}
    [sent] = put(db, "hook")
    assert dispatcher(db, db_url, tmp_path, topics).run_once() == 1
    [(headers, body)] = receiver.requests
    assert json.loads(body) == sent
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Immray-Signature"] == f"sha256={expected}"
    assert headers["X-Immray-Message-Id"] == sent["id"] and headers["X-Immray-Topic"] == "hook"
    assert headers["Content-Type"].startswith("application/json")
    [row] = rows(db)
    assert row.delivered_at is not None and (row.attempts, row.last_error) == (1, None)


def test_a_failing_webhook_is_retried_with_backoff_until_it_takes_the_message(db, db_url, tmp_path, receiver):
    receiver.script = [500, 500]
    topics = {"hook": NotifyTopic(url=receiver.url, secret=SECRET)}
    slow = dispatcher(db, db_url, tmp_path, topics, notify_backoff_seconds=30, notify_backoff_max_seconds=60)
    [sent] = put(db, "hook")
    assert slow.run_once() == 1
    [row] = rows(db)
    assert row.delivered_at is None and row.attempts == 1 and "HTTP 500" in row.last_error
    assert row.next_attempt_at > utcnow() + timedelta(seconds=20)  # 30 s less jitter
    assert slow.run_once() == 0  # not due yet
    make_due(db)
    assert slow.run_once() == 1 and rows(db)[0].attempts == 2
    make_due(db)
    assert slow.run_once() == 1
    [row] = rows(db)
    assert row.delivered_at is not None and row.attempts == 3 and "HTTP 500" in row.last_error
    assert [body["id"] for body in receiver.bodies()] == [sent["id"]] * 3


def test_the_dispatcher_thread_retries_on_its_own(db, db_url, tmp_path, receiver):
    receiver.script = [500, 503]
    running = dispatcher(db, db_url, tmp_path, {"hook": NotifyTopic(url=receiver.url, secret=SECRET)})
    put(db, "hook")
    running.start()
    try:
        wait_for("delivery", lambda: rows(db)[0].delivered_at)
    finally:
        running.stop()
    assert rows(db)[0].attempts == 3 and len(receiver.requests) == 3


def test_a_redis_stream_gets_the_envelope_as_fields(db, db_url, tmp_path):
    stream = f"immray-test-{uuid.uuid4().hex}"
    topics = {"jobs": NotifyTopic(url="redis://127.0.0.1:6379/0", stream=stream)}
    client = redis.Redis(decode_responses=True)
    try:
        sent = put(db, "jobs", 2)
        assert dispatcher(db, db_url, tmp_path, topics).run_once() == 2
        assert [fields for _, fields in client.xrange(stream)] == sent
    finally:
        client.delete(stream)
    assert all(row.delivered_at is not None for row in rows(db))


def test_a_rabbitmq_queue_gets_a_persistent_json_message(db, db_url, tmp_path, rabbit):
    queue = f"immray-test-{uuid.uuid4().hex}"
    rabbit.queue_declare(queue)
    try:
        [sent] = put(db, "q")
        assert dispatcher(db, db_url, tmp_path, {"q": NotifyTopic(url=AMQP_URL, queue=queue)}).run_once() == 1
        method, properties, body = rabbit.basic_get(queue, auto_ack=True)
        assert json.loads(body) == sent
        assert (properties.message_id, properties.content_type, properties.delivery_mode) == (
            sent["id"],
            "application/json",
            2,
        )
    finally:
        rabbit.queue_delete(queue)


def test_a_rabbitmq_exchange_routes_by_key_and_an_unroutable_message_is_an_error(
    db, db_url, tmp_path, rabbit
):
    exchange, queue = f"immray-test-x-{uuid.uuid4().hex}", f"immray-test-{uuid.uuid4().hex}"
    rabbit.exchange_declare(exchange, exchange_type="direct", auto_delete=True)
    rabbit.queue_declare(queue)
    rabbit.queue_bind(queue, exchange, routing_key="tasks")
    topics = {
        "routed": NotifyTopic(url=AMQP_URL, exchange=exchange, routing_key="tasks"),
        "lost": NotifyTopic(url=AMQP_URL, exchange=exchange, routing_key="nobody"),
    }
    try:
        [routed] = put(db, "routed")
        put(db, "lost")
        assert dispatcher(db, db_url, tmp_path, topics).run_once() == 2
        _, _, body = rabbit.basic_get(queue, auto_ack=True)
        assert json.loads(body) == routed
        delivered, lost = rows(db)
        assert delivered.delivered_at is not None
        assert (
            lost.delivered_at is None
            and "nothing is bound" in lost.last_error
            and "guest" not in lost.last_error
        )
    finally:
        rabbit.queue_delete(queue)
        rabbit.exchange_delete(exchange)


def test_the_rabbitmq_sink_reconnects_when_the_broker_dropped_its_connection(rabbit):
    queue = f"immray-test-{uuid.uuid4().hex}"
    rabbit.queue_declare(queue)
    sink = RabbitMqSink(NotifyTopic(url=AMQP_URL, queue=queue))
    try:
        sink.send("q", message("first"))
        sink._connection.close()  # as the broker does to an idle client
        sink.send("q", message("second"))
        notes = [
            json.loads(json.loads(rabbit.basic_get(queue, auto_ack=True)[2])["content"])["Note"] for _ in "ab"
        ]
        assert notes == ["first", "second"]
    finally:
        sink.close()
        rabbit.queue_delete(queue)


def test_sinks_that_cannot_take_a_message_keep_it_for_later(db, db_url, tmp_path):
    topics = {
        "down": NotifyTopic(url="redis://127.0.0.1:1/0", stream="s", timeout_seconds=2),
        "gone": NotifyTopic(url="amqp://guest:guest@127.0.0.1:1/%2F", queue="q", timeout_seconds=2),
    }
    put(db, "down")
    put(db, "gone")
    put(db, "unmapped")
    assert dispatcher(db, db_url, tmp_path, topics).run_once() == 3
    down, gone, unmapped = rows(db)
    assert all(row.delivered_at is None and row.attempts == 1 for row in (down, gone, unmapped))
    assert "Redis redis://127.0.0.1:1/0" in down.last_error
    assert "RabbitMQ amqp://127.0.0.1:1/%2F" in gone.last_error and "guest" not in gone.last_error
    assert "no longer mapped" in unmapped.last_error


def test_a_message_is_given_up_after_the_last_attempt(db, db_url, tmp_path, receiver):
    receiver.script = [500] * 10
    giving_up = dispatcher(
        db, db_url, tmp_path, {"hook": NotifyTopic(url=receiver.url, secret=SECRET)}, notify_max_attempts=2
    )
    put(db, "hook")
    assert giving_up.run_once() == 1
    make_due(db)
    assert giving_up.run_once() == 1
    make_due(db)
    assert giving_up.run_once() == 0
    [row] = rows(db)
    assert (row.attempts, row.delivered_at) == (2, None) and "HTTP 500" in row.last_error


def test_dispatchers_running_side_by_side_send_each_message_once(db, db_url, tmp_path, receiver):
    topics = {"hook": NotifyTopic(url=receiver.url, secret=SECRET)}
    sent = put(db, "hook", 60)
    others = [Database.connect(db_url) for _ in range(3)]  # as separate processes would: own engines
    try:
        workers = [dispatcher(other, db_url, tmp_path, topics, batch=4) for other in others]
        barrier = threading.Barrier(len(workers))
        counts: list[int] = []

        def drain(worker: OutboxDispatcher) -> None:
            barrier.wait()
            while tried := worker.run_once():
                counts.append(tried)

        threads = [threading.Thread(target=drain, args=(worker,)) for worker in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for other in others:
            other.close()
    received = [body["id"] for body in receiver.bodies()]
    assert sorted(received) == sorted(item["id"] for item in sent)  # every one, none twice
    assert sum(counts) == 60 and all(row.delivered_at is not None for row in rows(db))


def test_old_delivered_and_abandoned_messages_are_purged(db):
    put(db, "a", 4)
    long_ago = utcnow() - timedelta(days=8)
    with db.write() as session:
        first, second, third, fourth = session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id))
        session.execute(update(OutboxMessage).where(OutboxMessage.id == first).values(delivered_at=long_ago))
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id == second).values(attempts=5, created_at=long_ago)
        )
        session.execute(update(OutboxMessage).where(OutboxMessage.id == third).values(delivered_at=utcnow()))
        session.execute(update(OutboxMessage).where(OutboxMessage.id == fourth).values(created_at=long_ago))
    with db.write() as session:
        assert purge_outbox(session, before=utcnow() - timedelta(days=7), max_attempts=5) == 2
    assert [row.id for row in rows(db)] == [third, fourth]  # the pending one waits, however old
    with db.write() as session:
        assert [m.id for m in claim_due(session, limit=10, max_attempts=5, visibility_seconds=60)] == [fourth]


def test_a_stopping_dispatcher_hands_its_claimed_messages_back_uncounted(db, db_url, tmp_path, receiver):
    topics = {"hook": NotifyTopic(url=receiver.url, secret=SECRET)}
    put(db, "hook", 3)
    stopping = dispatcher(db, db_url, tmp_path, topics)
    stopping.stop()
    assert stopping.run_once() == 0 and receiver.requests == []
    assert [(row.attempts, row.delivered_at) for row in rows(db)] == [(0, None)] * 3
    assert dispatcher(db, db_url, tmp_path, topics).run_once() == 3  # due at once, not after a timeout
    assert len(receiver.requests) == 3
