"""configure_logging: JSON lines with today's keys plus the bound and extra= fields, text for people, and
the context bound for a request or a job, through stdlib and structlog loggers alike."""

from __future__ import annotations

import io
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from observability_testkit import json_lines

from immray.jobs.runner import JobRunner
from immray.observability import logs

FIRST_KEYS = ["time", "level", "logger", "message", "process"]


def test_json_lines_carry_the_record_extra_and_bound_fields(capsys):
    logs.configure_logging("json", "info")
    plain = logging.getLogger("immray.jobs")
    new = logs.get_logger("immray.new")
    with logs.bound(request_id="REQ-1", action="CreateProject"):
        plain.info("job %s %s", "index-file", "succeeded", extra={"file_id": 7, "outcome": "succeeded"})
        new.info("photo analysed", faces=3, file_id=8)
        structlog.get_logger("immray.other").warning("slow", seconds=1.5)
    plain.info("after the request")
    plain.debug("below the level")

    first, second, third, after = json_lines(capsys.readouterr().err)
    assert list(first)[:5] == FIRST_KEYS
    assert first["message"] == "job index-file succeeded" and "event" not in first
    assert (first["level"], first["logger"]) == ("info", "immray.jobs")
    assert (first["file_id"], first["outcome"]) == (7, "succeeded")
    assert (first["request_id"], first["action"]) == ("REQ-1", "CreateProject")
    assert isinstance(first["process"], int)
    stamp = datetime.fromisoformat(first["time"])
    assert stamp.utcoffset() == timedelta(0) and re.search(r"T\d\d:\d\d:\d\d\.\d{3}\+00:00$", first["time"])
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)

    assert list(second)[:5] == FIRST_KEYS
    assert (second["message"], second["logger"], second["faces"], second["file_id"]) == (
        "photo analysed",
        "immray.new",
        3,
        8,
    )
    assert (second["request_id"], second["action"]) == ("REQ-1", "CreateProject")
    assert (third["level"], third["logger"], third["seconds"], third["request_id"]) == (
        "warning",
        "immray.other",
        1.5,
        "REQ-1",
    )
    assert after["message"] == "after the request"
    assert "request_id" not in after and "action" not in after, "the context ends with the with block"


def test_json_lines_carry_the_traceback(capsys):
    logs.configure_logging("json")
    try:
        raise ValueError("bad photo")
    except ValueError:
        logging.getLogger("immray.jobs").exception("job %s failed", "index-file", extra={"file_id": 7})
        logs.get_logger("immray.new").exception("analysis failed")
    plain, new = json_lines(capsys.readouterr().err)
    for line in (plain, new):
        assert line["level"] == "error"
        assert "Traceback" in line["exception"] and "ValueError: bad photo" in line["exception"]
    assert plain["message"] == "job index-file failed" and plain["file_id"] == 7


def test_text_is_one_readable_line(capsys):
    logs.configure_logging("text")
    with logs.bound(request_id="REQ-2"):
        logging.getLogger("immray.api").info("request %s", "handled", extra={"status": 200})
    (line,) = capsys.readouterr().err.splitlines()
    assert not line.startswith("{") and "\x1b[" not in line, "no JSON, no colours off a terminal"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 \[info\s*\] request handled", line)
    assert "[immray.api]" in line and "request_id=REQ-2" in line and "status=200" in line


def test_faiss_loader_notes_are_kept_out_but_its_warnings_are_not(capsys):
    loader = logging.getLogger("faiss.loader")
    try:
        logs.configure_logging("text")
        loader.info("Could not load library with AVX512 support due to: ModuleNotFoundError")
        loader.warning("faiss could not be loaded at all")
        (line,) = capsys.readouterr().err.splitlines()
        assert "could not be loaded at all" in line
        logs.configure_logging("text", "debug")  # asked for everything: everything
        loader.info("Loading faiss with AVX2 support.")
        assert "AVX2" in capsys.readouterr().err
    finally:
        logs.configure_logging("text")


def test_configuring_again_replaces_only_its_own_handler(capsys):
    elsewhere = io.StringIO()
    other = logging.StreamHandler(elsewhere)
    logging.getLogger().addHandler(other)
    serve_logger = logging.getLogger("ray.serve")
    serve_handler = logging.NullHandler()
    serve_logger.addHandler(serve_handler)
    try:
        logs.configure_logging("text", "warning")
        logs.configure_logging("json", "info")
        logging.getLogger("immray").info("once")
        assert [line["message"] for line in json_lines(capsys.readouterr().err)] == ["once"]
        assert elsewhere.getvalue() == "once\n", "the root's other handlers still get every record"
        assert other in logging.getLogger().handlers and serve_handler in serve_logger.handlers
        assert logging.getLogger().level == logging.INFO
    finally:
        logging.getLogger().removeHandler(other)
        serve_logger.removeHandler(serve_handler)


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="log_format"):
        logs.configure_logging("xml")


def test_bound_puts_the_context_back():
    logs.bind(request_id="outer")
    with logs.bound(request_id="inner", action=None, task_id="t1"):
        logs.bind(dataset_id=3, task_id="t2")
        assert structlog.contextvars.get_contextvars() == {
            "request_id": "inner",
            "task_id": "t2",
            "dataset_id": 3,
        }
    assert structlog.contextvars.get_contextvars() == {"request_id": "outer"}
    logs.clear()
    assert structlog.contextvars.get_contextvars() == {}


def test_a_job_logs_with_its_fields_in_its_own_thread_only(capsys):
    """The runner binds the job's fields for the job's duration, in the pool thread that runs it: another
    thread's lines, and the same thread's next ones, do not carry them."""
    logs.configure_logging("json")
    # An unregistered job: the runner logs and skips it without touching a database.
    runner = JobRunner(db=None, settings=None, owner="w1", submit=lambda *args: None)  # type: ignore[arg-type]
    started, release = threading.Event(), threading.Event()

    def other_thread() -> None:
        started.wait(10)
        logging.getLogger("immray.elsewhere").info("meanwhile")
        release.set()

    with ThreadPoolExecutor(1) as pool, ThreadPoolExecutor(1) as others:
        others.submit(other_thread)

        def job() -> str:
            started.set()
            release.wait(10)
            return runner.run("no-such-job", {"file_id": 7, "dataset_id": 3})

        assert pool.submit(job).result(timeout=30) == "skipped"
        pool.submit(lambda: logging.getLogger("immray.jobs").info("next")).result(timeout=30)

    lines = json_lines(capsys.readouterr().err)
    by_message = {line["message"]: line for line in lines}
    meanwhile, dropped = (
        by_message["meanwhile"],
        by_message["job no-such-job is not registered in this process; submission dropped"],
    )
    assert not {"job", "file_id", "dataset_id"} & set(meanwhile)
    assert (dropped["job"], dropped["file_id"], dropped["dataset_id"]) == ("no-such-job", 7, 3)
    ended = by_message["job no-such-job skipped"]
    assert (ended["job"], ended["file_id"], ended["outcome"], ended["worker"]) == (
        "no-such-job",
        7,
        "skipped",
        "w1",
    )
    assert "task_id" not in ended, "None values are not bound"
    assert not {"job", "file_id", "dataset_id"} & set(by_message["next"])
