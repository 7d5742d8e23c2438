"""The outbox dispatcher: a background thread that delivers due messages and reschedules failed ones.

Delivery is at least once: a message is marked delivered only after its sink took it, and a dispatcher
that dies in between leaves the row to be claimed again after ``VISIBILITY_SECONDS``. Receivers drop
duplicates by the envelope ``id``. Any number of dispatchers may run against one database (see
``outbox.claim_due``). A failed attempt is retried with exponential backoff; after
``Settings.notify_max_attempts`` the row stays in the outbox, undelivered, with its last error.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from immray.notify import outbox
from immray.notify.sinks import DeliveryError, Sink, open_sink
from immray.services.database import Database
from immray.settings import NotifyTopic, Settings
from immray.store import utcnow

log = logging.getLogger("immray.notify")

BATCH = 50
PURGE_EVERY_SECONDS = 3600.0
# Longer than any one delivery can take (a sink's timeout, with one reconnect): a claimed row whose
# dispatcher vanished is claimed again after this.
VISIBILITY_SECONDS = 120.0


class OutboxDispatcher:
    """``start()``/``stop()`` run it in a thread; ``run_once()`` delivers what is due now (tests, CLI)."""

    name = "outbox dispatcher"

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        open_sink: Callable[[NotifyTopic], Sink] = open_sink,
        batch: int = BATCH,
    ) -> None:
        self._db = db
        self._settings = settings
        self._open_sink = open_sink
        self._batch = batch
        self._sinks: dict[str, Sink] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_purge: float | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="immray-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for sink in self._sinks.values():
            sink.close()
        self._sinks.clear()

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll (e.g. right after a task ended)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._purge_if_due()
                busy = self.run_once() == self._batch
            except Exception:  # the database may be away for a moment; the loop must outlive that
                log.exception("the outbox dispatcher failed; it tries again")
                busy = False
            if not busy:
                self._wake.wait(self._settings.notify_poll_seconds)
                self._wake.clear()

    def _purge_if_due(self) -> None:
        if self._last_purge is not None and time.monotonic() - self._last_purge < PURGE_EVERY_SECONDS:
            return
        self._last_purge = time.monotonic()
        before = utcnow() - timedelta(days=self._settings.task_retention_days)
        with self._db.write() as session:
            purged = outbox.purge_outbox(
                session, before=before, max_attempts=self._settings.notify_max_attempts
            )
        if purged:
            log.info("purged %d old outbox message(s)", purged)

    # --- one round ------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Claim the messages due now and try each once; returns how many were tried.

        The outcomes are recorded together after the round (one transaction, not one per message). A round
        that runs long (sinks timing out) stops trying new messages halfway through the claim's visibility
        timeout, so no other dispatcher can claim a message this one is still about to send; the untried
        ones are handed back uncounted.
        """
        settings = self._settings
        with self._db.write() as session:
            claimed = outbox.claim_due(
                session,
                limit=self._batch,
                max_attempts=settings.notify_max_attempts,
                visibility_seconds=VISIBILITY_SECONDS,
            )
        began = time.monotonic()
        outcomes: list[tuple[outbox.ClaimedMessage, str | None]] = []
        untried: list[int] = []
        for message in claimed:
            if self._stopping.is_set() or time.monotonic() - began > VISIBILITY_SECONDS / 2:
                untried.append(message.id)
            else:
                outcomes.append((message, self._deliver(message)))
        if not claimed:
            return 0
        retries: dict[int, float] = {}
        with self._db.write() as session:
            outbox.mark_delivered(session, [message.id for message, error in outcomes if error is None])
            for message, error in outcomes:
                if error is not None:
                    retries[message.id] = outbox.retry_delay(
                        message.attempts,
                        base=settings.notify_backoff_seconds,
                        cap=settings.notify_backoff_max_seconds,
                    )
                    retry_at = utcnow() + timedelta(seconds=retries[message.id])
                    outbox.mark_failed(session, message.id, error, retry_at)
            outbox.release(session, untried)
        for message, error in outcomes:
            if error is None:
                continue
            if message.attempts >= settings.notify_max_attempts:
                log.error(
                    "notification %s to topic %s given up after %d attempts: %s",
                    message.message_id,
                    message.topic,
                    message.attempts,
                    error,
                )
            else:
                log.warning(
                    "notification %s to topic %s failed (attempt %d), retried in %.1f s: %s",
                    message.message_id,
                    message.topic,
                    message.attempts,
                    retries[message.id],
                    error,
                )
        return len(outcomes)

    def _deliver(self, message: outbox.ClaimedMessage) -> str | None:
        """None when the sink took the message, else why not."""
        topic = self._settings.notify_topics.get(message.topic)
        if topic is None:
            return f"the topic {message.topic!r} is no longer mapped to a sink (IMMRAY_NOTIFY_TOPICS)"
        try:
            sink = self._sinks.get(message.topic)
            if sink is None:
                sink = self._sinks[message.topic] = self._open_sink(topic)
            sink.send(message.topic, message.payload)
            return None
        except DeliveryError as exc:
            return str(exc)
        except Exception as exc:  # a sink's bug or an odd library error must not stop the others
            log.exception("sink of topic %s failed", message.topic)
            broken = self._sinks.pop(message.topic, None)
            if broken is not None:
                with contextlib.suppress(Exception):
                    broken.close()
            return f"{type(exc).__name__}: {exc}"[:500]
