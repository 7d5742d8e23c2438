"""Every log line through structlog: readable text for people, JSON lines for machines (``IMMRAY_LOG_FORMAT``).

:func:`configure_logging` puts one handler on the root logger of the process (the ``immray serve`` driver,
each Serve replica, each dataset actor call it), writing to the process's current ``sys.stderr`` with
structlog's ``ProcessorFormatter``. Both kinds of records go through it:

- structlog's loggers (``get_logger(__name__).info("photo analysed", faces=3)``, the way for new code);
- the standard library's (``logging.getLogger("immray.jobs").info("...", extra={"task_id": ...})``: most of
  immray, and uvicorn's when it logs to the root logger), whose ``extra=`` fields become fields too
  (``structlog.stdlib.ExtraAdder``).

Either gets the context bound for the request or job being served (:func:`bound`, :func:`bind`; on
``structlog.contextvars``): the API binds ``request_id`` and ``action`` for each IMM request
(``api.dispatch``), the job runner ``job``, ``task_id``, ``file_id`` and ``dataset_id`` for each job
(``jobs.runner``). Context variables follow asyncio tasks and the threads Starlette hands work to
(``run_in_threadpool`` copies the context), not a ``ThreadPoolExecutor``'s threads: bind inside the job.

``IMMRAY_LOG_FORMAT=json``: one JSON object per line, with the keys ``time`` (UTC, ISO 8601, ms),
``level``, ``logger``, ``message``, ``process``, then the bound and ``extra=`` fields (and ``exception``,
the traceback, when there is one)::

    {"time": "2026-01-02T03:04:05.678+00:00", "level": "info", "logger": "immray.api",
     "message": "request handled", "process": 4242, "action": "CreateProject",
     "request_id": "5D1F...", "status": 200, "duration_ms": 12.3}

``text`` (the default): structlog's console renderer, coloured on a terminal.

Ray Serve's own logger (``ray.serve``, which does not propagate) keeps the handlers Serve gave it. In a
Serve replica (``configure_logging(..., serve_logs=True)``) each line also goes, rendered as above, to those
handlers, so the replica's Serve log file (``logs/serve/replica_<app>_<deployment>_<id>.log``, shown by the
dashboard's Serve view) carries it, in Serve's text or JSON encoding, with the bound fields as record
attributes; elsewhere (the driver, the dataset actors) the lines go to the process's stderr, which Ray keeps
in the worker's log file and the dashboard shows per actor.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import structlog

LOG_FORMATS = ("text", "json")
SERVE_LOGGER = "ray.serve"  # Ray Serve's logger in a replica: its handlers write the replica's log file
FIRST_KEYS = ("time", "level", "logger", "message", "process")
# Record attributes that are no field: set by other formatters on the shared record (message, asctime),
# Python's asyncio task name, uvicorn's coloured copy of its message.
_NOT_FIELDS = frozenset({"message", "asctime", "taskName", "color_message"})


# --- the processors --------------------------------------------------------------------------------------


def _drop_non_fields(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """After ``ExtraAdder``: drop what a record carries besides its ``extra=`` fields."""
    for key in [key for key in event_dict if key in _NOT_FIELDS or key.startswith("_")]:
        if key not in ("_record", "_from_structlog"):
            del event_dict[key]
    return event_dict


def _record_fields(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """time, level, logger and process, from the ``logging.LogRecord`` either kind of record became."""
    record: logging.LogRecord | None = event_dict.get("_record")
    if record is None:  # not through the formatter (structlog used without configure_logging)
        created, level, name, process = datetime.now(UTC).timestamp(), method, "", None
    else:
        created, level, name, process = record.created, record.levelname, record.name, record.process
    event_dict["time"] = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    event_dict["level"] = level.lower()
    event_dict["logger"] = name
    event_dict["process"] = process
    return event_dict


def _first_keys_first(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    ordered = {key: event_dict.pop(key) for key in FIRST_KEYS if key in event_dict}
    ordered.update(sorted(event_dict.items()))
    return ordered


# Run on every record: in structlog's chain for structlog's loggers (at the call, in the caller's context),
# in the formatter's foreign_pre_chain for the standard library's (at the handler, in the same thread).
_CONTEXT = structlog.contextvars.merge_contextvars
_FOREIGN_PRE_CHAIN = (_CONTEXT, structlog.stdlib.ExtraAdder(), _drop_non_fields)


def _renderer_chain(log_format: str, colors: bool) -> list[Any]:
    if log_format == "json":
        return [
            _record_fields,
            structlog.processors.EventRenamer("message"),
            structlog.processors.format_exc_info,  # exc_info -> "exception": the traceback as text
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _first_keys_first,
            structlog.processors.JSONRenderer(ensure_ascii=False, default=str),
        ]
    return [
        _record_fields,
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.dev.ConsoleRenderer(
            colors=colors,
            timestamp_key="time",
            # no locals in tracebacks: a request's secrets would end up in the log
            exception_formatter=structlog.dev.plain_traceback,
        ),
    ]


def formatter(log_format: str, *, colors: bool = False) -> logging.Formatter:
    """The formatter of ``log_format`` ("text" or "json") for a handler of the standard library."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format is one of {LOG_FORMATS}, not {log_format!r}")
    return structlog.stdlib.ProcessorFormatter(
        processors=_renderer_chain(log_format, colors),
        foreign_pre_chain=list(_FOREIGN_PRE_CHAIN),
    )


# --- the configuration -----------------------------------------------------------------------------------


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each record (Ray Serve may redirect it after we start, and a
    test's capture replaces it), not as it was when the handler was made."""

    immray_handler = True

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _ServeLogForwarder(logging.Handler):
    """In a Serve replica: every record, rendered by our formatter, also to Serve's own handlers (its
    replica log file). The bound fields ride along as attributes, for Serve's JSON encoding."""

    immray_handler = True

    def emit(self, record: logging.LogRecord) -> None:
        # Serve's file handlers only: its stream handler writes to the stderr we write to already.
        handlers = [
            handler
            for handler in logging.getLogger(SERVE_LOGGER).handlers
            if isinstance(handler, logging.handlers.MemoryHandler | logging.FileHandler)
        ]
        if not handlers:
            return
        try:
            fields = {**structlog.contextvars.get_contextvars(), **record.__dict__}
            forwarded = logging.makeLogRecord(
                {**fields, "msg": self.format(record), "args": (), "exc_info": None, "exc_text": None}
            )
            for handler in handlers:
                if forwarded.levelno >= handler.level:
                    handler.handle(forwarded)
        except Exception:  # a log line must never fail the work it describes
            self.handleError(record)


def _configure_structlog() -> None:
    structlog.configure(
        processors=[
            _CONTEXT,
            structlog.stdlib.filter_by_level,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


# Libraries whose INFO lines tell an operator nothing: faiss's loader logs every SIMD build it could not load
# ("Could not load library with AVX512 support due to: ModuleNotFoundError ..."), at every start.
CHATTY_AT_INFO = ("faiss.loader",)


def configure_logging(log_format: str, level: str | int = "info", *, serve_logs: bool = False) -> None:
    """Send every record of this process (immray's, structlog's, uvicorn's: whatever reaches the root
    logger) to stderr in ``log_format``, at ``level`` and above, and with ``serve_logs`` (a Serve replica)
    to Serve's log file of the replica too. Idempotent: a second call replaces the handlers of the first;
    other handlers, the root's and Ray Serve's on ``ray.serve``, stay."""
    handler = _StderrHandler(sys.stderr)
    colors = log_format == "text" and _is_terminal(sys.stderr)
    handler.setFormatter(formatter(log_format, colors=colors))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "immray_handler", False):
            root.removeHandler(old)
    root.addHandler(handler)
    if serve_logs:
        forwarder = _ServeLogForwarder()
        forwarder.setFormatter(formatter(log_format))
        root.addHandler(forwarder)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in CHATTY_AT_INFO:  # at debug, everything is asked for
        logging.getLogger(name).setLevel(logging.WARNING if root.level >= logging.INFO else logging.NOTSET)
    _configure_structlog()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def get_logger(name: str | None = None, **fields: Any) -> Any:
    """A structlog logger writing through the standard library (``logging.getLogger(name)``), so its lines
    go where :func:`configure_logging` sends them, even when it is made before that call."""
    if not structlog.is_configured():
        _configure_structlog()
    return structlog.stdlib.get_logger(name, **fields)


# --- the context of a request or job ---------------------------------------------------------------------


def bind(**fields: Any) -> None:
    """Add ``fields`` to every line logged from now on in this context (asyncio task or thread); None
    values are left out. Prefer :func:`bound`, which also takes them away."""
    structlog.contextvars.bind_contextvars(**_given(fields))


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """``fields`` (None values left out) on every line logged inside the ``with``; on leaving it, the
    context is what it was, fields bound inside with :func:`bind` included."""
    before = structlog.contextvars.get_contextvars()
    structlog.contextvars.bind_contextvars(**_given(fields))
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**before)


def bind_request(request_id: str, action: str | None = None, **fields: Any) -> None:
    """The IMM request being served: its ``request_id``, and its ``action`` once known."""
    bind(request_id=request_id, action=action, **fields)


def clear() -> None:
    """Forget every bound field of this context."""
    structlog.contextvars.clear_contextvars()


def _given(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}
