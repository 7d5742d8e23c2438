"""A bulk backfill submitted as a real Ray job (Ray's job API on the suite's local Ray, the job's own
driver, Ray Data's actor pool of the real face models) next to a live Serve application on the same
database and Milvus: its photos must be stored exactly as the same photos indexed through the official
SDK, one clustering task must run at the end, and the same backfill submitted again analyses nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from alibabacloud_imm20200930 import models
from live_immray import BACKENDS, new_postgres_database  # noqa: F401  (fixture)
from live_indexing import get_files, index_and_wait, indexing_server, new_dataset

from immray.jobs import backfill_client
from immray.jobs.backfill_pool import PoolSpec
from immray.jobs.backfill_progress import Progress
from photo_testkit import TEST_DETECTOR, write_photo_set
from ray_testkit import start_ray

pytestmark = pytest.mark.slow

JOB_SECONDS = 300
# The suite's FaceAnalysis replicas hold the local Ray's two CPUs: the pool's actor asks for none.
POOL = PoolSpec(min_actors=1, max_actors=1, batch_size=4, num_cpus=0, num_gpus=0)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, sample_photo):
    return write_photo_set(tmp_path_factory.mktemp("backfill-photos"), sample_photo)


@pytest.fixture(scope="module", params=BACKENDS)
def live(request, tmp_path_factory, photos, ray_runtime):
    with indexing_server(request, tmp_path_factory.mktemp("immray"), request.param, [photos.root]) as live:
        yield live


def job_env(live) -> dict[str, str]:
    """What the cluster nodes' environment would say: the server's database, data directory (its
    milvus-lite server is found there), roots, detector and Ray namespace."""
    settings = live.settings
    return {
        "IMMRAY_DATA_DIR": str(settings.data_dir),
        "IMMRAY_DATABASE_URL": settings.resolved_database_url,
        "IMMRAY_ALLOWED_ROOTS": json.dumps([str(root) for root in settings.allowed_roots]),
        "IMMRAY_DETECTOR": TEST_DETECTOR,
        "IMMRAY_RAY_NAMESPACE": settings.ray_namespace,
    }


def run_backfill(live, location: Path, project: str, dataset: str) -> tuple[str, Progress]:
    address = "http://" + start_ray().dashboard_url.removeprefix("http://")
    submission_id = backfill_client.submit(
        address,
        location.as_uri() + "/",
        f"{project}/{dataset}",
        POOL,
        env=job_env(live),
        python=sys.executable,
    )
    seen: list[tuple[str, Progress | None]] = []
    status = backfill_client.follow(
        address, submission_id, lambda s, p: seen.append((s, p)), poll_seconds=0.5, timeout=JOB_SECONDS
    )
    logs = backfill_client.client(address).get_job_logs(submission_id)
    assert status == "SUCCEEDED", logs[-4000:]
    progress = backfill_client.progress_of(address, submission_id)
    assert progress is not None and progress.phase == "done", logs[-4000:]
    listed = [job.submission_id for job in backfill_client.list_backfills(address)]
    assert submission_id in listed
    return submission_id, progress


def file_record(file: models.File) -> dict:
    """What indexing stored about a file, without what differs between two datasets (ids, times)."""
    figures = sorted(
        (
            {
                key: value
                for key, value in figure.to_map().items()
                if key not in ("FigureId", "FigureClusterId", "FigureClusterConfidence", "FigureConfidence")
            }
            for figure in file.figures or []
        ),
        key=lambda f: json.dumps(f, sort_keys=True),
    )
    return {
        "ObjectStatus": file.object_status,
        "Reason": file.reason,
        "ContentType": file.content_type,
        "Size": file.size,
        "ImageWidth": file.image_width,
        "ImageHeight": file.image_height,
        "FigureCount": file.figure_count,
        "Filename": file.filename,
        "Figures": figures,
    }


def test_backfill_job_stores_like_the_api_clusters_and_resumes(live, photos):
    client = live.client()
    uris = photos.uris() + [photos.uri(name) for name in photos.bad]
    api_project, api_dataset = new_dataset(client)
    by_api = index_and_wait(client, api_project, api_dataset, uris)

    project, dataset = new_dataset(client)
    submission_id, first = run_backfill(live, photos.root, project, dataset)
    assert (first.listed, first.total, first.done) == (len(uris), len(uris), len(uris))
    assert first.failed == len(photos.bad) and first.indexed == len(photos.good)
    assert first.faces == sum(file.figure_count or 0 for file in by_api.values())

    by_job = get_files(client, project, dataset, uris)
    assert set(by_job) == set(uris)
    for uri in uris:
        assert file_record(by_job[uri]) == file_record(by_api[uri]), uri

    # One clustering task, tagged with the backfill, ran to its end and put the faces into people.
    tasks = client.list_tasks(
        models.ListTasksRequest(project_name=project, task_types=["FaceClustering"])
    ).body.tasks
    mine = [task for task in tasks if (task.tags or {}).get("Backfill") == submission_id]
    assert len(mine) == 1 and mine[0].status == "Succeeded" and first.task_id == mine[0].task_id
    clustered = get_files(client, project, dataset, uris)
    assert any(figure.figure_cluster_id for file in clustered.values() for figure in file.figures or [])

    # Submitted again: every photo listed is indexed and unchanged (the bad ones are tried again, as
    # re-indexing a Failed file always is), and no face is re-made.
    faces_before = {
        uri: sorted(figure.figure_id for figure in file.figures or []) for uri, file in clustered.items()
    }
    _, second = run_backfill(live, photos.root, project, dataset)
    assert (second.listed, second.skipped) == (len(uris), len(photos.good))
    assert second.total == len(photos.bad) and second.indexed == 0 and second.faces == 0
    after = get_files(client, project, dataset, uris)
    assert {
        uri: sorted(f.figure_id for f in file.figures or []) for uri, file in after.items()
    } == faces_before
