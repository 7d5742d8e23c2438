"""immray's metrics on Ray: recorded in a Ray actor, read back from the node's Prometheus export
(``ray_immray_*``), the way an operator's Prometheus sees them; and no-ops in a process without Ray."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import textwrap
import time

import httpx

SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str, worker_id: str) -> dict[tuple[str, frozenset], float]:
    """The export's ``ray_immray_*`` samples of one Ray worker: (name, its other labels) -> value."""
    found = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if not match or not match["name"].startswith("ray_immray_"):
            continue
        labels = dict(LABEL.findall(match["labels"] or ""))
        if labels.pop("WorkerId", None) != worker_id:
            continue
        # immray's tags; Ray's own labels (SessionName, NodeAddress, otel_scope_*) left out
        kept = frozenset(
            (key, value) for key, value in labels.items() if key[0].islower() and not key.startswith("otel_")
        )
        found[(match["name"], kept)] = float(match["value"])
    return found


def wanted(name: str, **labels: str) -> tuple[str, frozenset]:
    return name, frozenset(labels.items())


def test_metrics_recorded_in_an_actor_reach_the_export(ray_runtime):
    import ray

    @ray.remote(num_cpus=0)  # defined here, so Ray ships it by value; runs beside the suite's Serve replicas
    class Recorder:
        def record(self) -> str:
            from types import SimpleNamespace

            from immray.observability import metrics

            def analyze(data: bytes) -> SimpleNamespace:
                if not data:
                    raise ValueError("not a photo")
                return SimpleNamespace(faces=[None] * len(data))

            counted = metrics.counting_photos(analyze)
            counted(b"abc")
            counted(b"zz")
            counted(b"-")
            with contextlib.suppress(ValueError):
                counted(b"")
            metrics.job_ended("index-file", "succeeded", 0.3)
            metrics.job_ended("face-clustering", "failed", 2.0)
            metrics.job_ended("face-clustering", "skipped", 0.01)
            metrics.api_request_ended("GetProject", 200, 0.02)
            return ray.get_runtime_context().get_worker_id()

    recorder = Recorder.remote()
    try:
        worker_id = ray.get(recorder.record.remote(), timeout=120)
        expected = {
            wanted("ray_immray_photos_analyzed_total", result="analysed"): 3,
            wanted("ray_immray_photos_analyzed_total", result="error"): 1,
            wanted("ray_immray_faces_found_total"): 6,
            wanted("ray_immray_photo_analysis_seconds_count", result="analysed"): 3,
            wanted("ray_immray_jobs_total", job="index-file", outcome="succeeded"): 1,
            wanted("ray_immray_jobs_total", job="face-clustering", outcome="failed"): 1,
            wanted("ray_immray_jobs_total", job="face-clustering", outcome="skipped"): 1,
            wanted("ray_immray_job_duration_seconds_count", job="face-clustering"): 1,  # skipped: not timed
            wanted("ray_immray_job_duration_seconds_bucket", job="face-clustering", le="2.5"): 1,
            wanted("ray_immray_job_duration_seconds_bucket", job="face-clustering", le="1.0"): 0,
            wanted("ray_immray_api_requests_total", action="GetProject", status="200"): 1,
            wanted("ray_immray_api_request_duration_seconds_count", action="GetProject"): 1,
        }
        url = f"http://127.0.0.1:{ray_runtime.metrics_export_port}/metrics"
        deadline = time.monotonic() + 60  # Ray exports every few seconds
        seen: dict = {}
        while time.monotonic() < deadline:
            seen = samples(httpx.get(url, timeout=10).text, worker_id)
            if all(seen.get(key) == value for key, value in expected.items()):
                break
            time.sleep(1)
        assert {key: seen.get(key) for key in expected} == expected
    finally:
        ray.kill(recorder)


def test_without_ray_recording_does_nothing_and_imports_no_ray():
    """A unit test or a CLI command: no Ray in the process, and the metrics stay out of the way."""
    script = textwrap.dedent(
        """
        import sys
        from types import SimpleNamespace
        from immray.observability import metrics

        counted = metrics.counting_photos(lambda data: SimpleNamespace(faces=[1, 2]))
        assert len(counted(b"x").faces) == 2
        metrics.job_ended("index-file", "succeeded", 0.1)
        metrics.api_request_ended("GetProject", 200, 0.01)
        assert "ray" not in sys.modules, "recording imports no Ray"
        import ray
        assert not ray.is_initialized()
        metrics.job_ended("index-file", "failed", 0.1)
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
