"""The binding runner: a background service that keeps every binding it holds in sync.

Each tick (half a second, or at once when woken) it

1. claims free bindings and, every third of a lease, renews its leases (``leases``): in a scale-out
   deployment every server runs a runner, and each binding is held by exactly one of them; a dead
   runner's bindings are taken over when their lease expires (no balancing: the first to look takes them);
2. scans a held binding (``sync.scan``) when its folder reported a change (watchdog, settled for a moment
   so a burst of writes makes one pass) or when ``Settings.binding_scan_seconds`` have passed since its
   last pass -- the periodic listing that catches what a watch cannot see (buckets, network mounts, a
   platform without inotify);
3. ends full scans whose images are all analysed (``sync.settle``) and starts the automatic clustering of
   their datasets when it is due (``autocluster.maybe_cluster``).

Stopping releases the leases, so another server (or the next start) takes over at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from immray.bindings import leases, sync
from immray.bindings.autocluster import maybe_cluster
from immray.bindings.locations import BoundFolder, bind_location
from immray.services.database import Database
from immray.settings import Settings
from immray.sources import SourceRefused, sources_for
from immray.store import Binding

log = logging.getLogger("immray.bindings")

TICK_SECONDS = 0.5
SETTLE_SECONDS = 0.3  # a watched change is scanned once the folder has been still this long


@dataclass
class _Held:
    uri: str
    dataset_id: int
    next_scan: float = 0.0  # monotonic; 0 = at once
    changed_at: float | None = None  # monotonic time of the last watched change not yet scanned
    watch: Any = None
    incremental: bool = False


@dataclass
class _State:
    held: dict[int, _Held] = field(default_factory=dict)
    last_lease_round: float = float("-inf")


class BindingRunner:
    name = "binding runner"

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._sources = sources_for(settings)
        self._owner = f"bindings@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease_seconds = settings.task_lease_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # guards _state.held's changed_at (set by watchdog's thread)
        self._state = _State()
        self._thread: threading.Thread | None = None
        self._observer: Any = None
        self._watching = settings.binding_watch

    # --- the service -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="immray-bindings", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
        held = list(self._state.held)
        try:
            leases.release(self._db, held, owner=self._owner)
        except Exception:
            log.exception("releasing the bindings' leases failed")

    def wake(self) -> None:
        self._wake.set()

    @property
    def owner(self) -> str:
        """The name this runner writes into the leases of the bindings it holds."""
        return self._owner

    @property
    def held(self) -> set[int]:
        """The ids of the bindings this runner holds now."""
        return set(self._state.held)

    # --- the loop ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:
                log.exception("the binding runner's round failed; trying again")
                self._stop.wait(2.0)
            self._wake.wait(TICK_SECONDS)
            self._wake.clear()

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._state.last_lease_round >= min(self._lease_seconds / 3, 5.0):
            self._renew()
            self._state.last_lease_round = now
        # Every tick: a new binding starts syncing at once (a read, unless a binding is free).
        for binding_id in leases.claim_free(self._db, owner=self._owner, lease_seconds=self._lease_seconds):
            self._take(binding_id)
        datasets = set()
        for binding_id, held in list(self._state.held.items()):
            if self._stop.is_set():
                return
            with self._lock:
                changed_at = held.changed_at
            watched_due = changed_at is not None and now - changed_at >= SETTLE_SECONDS
            if watched_due or now >= held.next_scan:
                with self._lock:
                    held.changed_at = None
                held.next_scan = time.monotonic() + self._settings.binding_scan_seconds
                result = sync.scan(
                    self._db,
                    self._sources,
                    self._settings,
                    binding_id,
                    owner=self._owner,
                    lease_seconds=self._lease_seconds,
                )
                if result is None and not self._still_ours(binding_id):
                    self._drop(binding_id)
                    continue
            if not held.incremental:
                held.incremental = sync.settle(self._db, binding_id, owner=self._owner)
            datasets.add(held.dataset_id)
        for dataset_id in sorted(datasets):
            maybe_cluster(self._db, self._settings, dataset_id)

    def _renew(self) -> None:
        kept = leases.renew(self._db, self._state.held, owner=self._owner, lease_seconds=self._lease_seconds)
        for binding_id in set(self._state.held) - kept:
            self._drop(binding_id)

    def _still_ours(self, binding_id: int) -> bool:
        with self._db.read() as session:
            row = session.get(Binding, binding_id)
            return row is not None and row.lease_owner == self._owner

    def _take(self, binding_id: int) -> None:
        with self._db.read() as session:
            row = session.get(Binding, binding_id)
            if row is None:
                return
            held = _Held(row.uri, row.dataset_id)
        self._state.held[binding_id] = held
        log.info("binding %s: held by %s", held.uri, self._owner)
        if not self._watching:
            return
        try:
            location = bind_location(self._sources, held.uri, must_exist=False)
        except SourceRefused:
            return  # the scan reports it (Retrying, with the Reason)
        if isinstance(location, BoundFolder):
            if self._observer is None:  # started with the first folder held, once
                self._observer = _start_observer()
                if self._observer is None:  # no watch on this platform: periodic listing only
                    self._watching = False
                    return
            held.watch = _watch(self._observer, location.path, lambda: self._changed(binding_id))

    def _drop(self, binding_id: int) -> None:
        held = self._state.held.pop(binding_id, None)
        if held is None:
            return
        log.info("binding %s: no longer held (deleted or taken over)", held.uri)
        if held.watch is not None and self._observer is not None:
            with contextlib.suppress(Exception):  # the watch died with its folder
                self._observer.unschedule(held.watch)

    def _changed(self, binding_id: int) -> None:
        """Called on watchdog's thread for every event under a held folder."""
        held = self._state.held.get(binding_id)
        if held is None:
            return
        with self._lock:
            held.changed_at = time.monotonic()
        self._wake.set()


def _start_observer() -> Any:
    """watchdog's observer (inotify, FSEvents, ReadDirectoryChangesW, ...), or None where none works."""
    try:
        from watchdog.observers import Observer

        observer = Observer()
        observer.daemon = True
        observer.start()
        return observer
    except Exception as exc:  # no watch on this platform: periodic listing only
        log.warning("folders are not watched (%s); they are listed every scan interval", exc)
        return None


def _watch(observer: Any, path: str, on_change: Any) -> Any:
    from watchdog.events import FileSystemEventHandler

    class _Handler(FileSystemEventHandler):
        def on_any_event(self, event: Any) -> None:
            if event.event_type not in ("opened", "closed_no_write"):
                on_change()

    try:
        return observer.schedule(_Handler(), path, recursive=True)
    except Exception as exc:  # too many watches, folder gone: the periodic listing still runs
        log.warning("cannot watch %s (%s); it is listed every scan interval", path, exc)
        return None
