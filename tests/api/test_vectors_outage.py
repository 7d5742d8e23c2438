"""Milvus away for a while (its server killed, then started again on the same data and address), on a real
Serve application: photos indexed meanwhile end Indexed with their faces kept, SearchImageFigureCluster
still answers (from the store), DeleteDataset answers ServiceUnavailable and deletes nothing, a clustering
task waits Running instead of failing and ends Succeeded once Milvus is back, with every face clustered and every vector written; while it is away `immray vectors`
says so in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alibabacloud_imm20200930 import models as imm
from alibabacloud_tea_openapi.exceptions import ServerException
from live_indexing import index_and_wait, indexing_server, new_dataset
from people_photos import GROUP, PORTRAITS, make_photos
from people_testkit import all_people, cluster, faces, start_clustering, wait_task

from milvus_testkit import free_port, lite_server

AWAY_SECONDS = 8  # the clustering task is seen waiting this long


def _vectors_check(settings) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "IMMRAY_DATABASE_URL": settings.resolved_database_url,
        "IMMRAY_MILVUS_URI": settings.milvus_uri,
        "IMMRAY_DATA_DIR": str(settings.data_dir),
    }
    command = [str(Path(sys.executable).parent / "immray"), "vectors", "check"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)


def test_work_waits_for_milvus_and_goes_on_when_it_is_back(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    photos = make_photos(folder, [copy.name for copy in (*GROUP, *PORTRAITS)])
    milvus_dir, port = tmp_path_factory.mktemp("milvus"), free_port()
    milvus = lite_server(milvus_dir, port=port)
    uri = milvus.__enter__()
    try:
        with indexing_server(
            request,
            tmp_path_factory.mktemp("immray"),
            "sqlite",
            [folder],
            milvus_uri=uri,
            min_face_px=80,
            task_poll_seconds=0.1,
        ) as live:
            client = live.client()
            project, dataset = new_dataset(client)
            first = [photos[copy.name].as_uri() for copy in GROUP]
            later = [photos[copy.name].as_uri() for copy in PORTRAITS]
            index_and_wait(client, project, dataset, first)
            cluster(client, project, dataset)
            before = {p.object_id for p in all_people(client, project, dataset)}
            assert len(before) == 6

            milvus.__exit__(None, None, None)  # Milvus goes away
            milvus = None
            files = index_and_wait(client, project, dataset, later)
            assert {f.object_status for f in files.values()} == {"Indexed"}, files
            assert all(f.figure_count == 1 for f in files.values())
            found = client.search_image_figure_cluster(
                imm.SearchImageFigureClusterRequest(
                    project_name=project, dataset_name=dataset, source_uri=first[0]
                )
            ).body.clusters
            assert len(found) == 6 and {c.cluster_id for c in found} == before
            checked = _vectors_check(live.settings)
            assert checked.returncode == 1 and "cannot reach Milvus" in checked.stderr, checked
            assert "Traceback" not in checked.stderr
            with pytest.raises(ServerException) as refused:  # rather than leave vectors no dataset owns
                client.delete_dataset(imm.DeleteDatasetRequest(project_name=project, dataset_name=dataset))
            assert (refused.value.code, refused.value.status_code) == ("ServiceUnavailable", 503)
            task_id = start_clustering(client, project, dataset)  # the dataset is still whole
            time.sleep(AWAY_SECONDS)
            waiting = client.get_task(
                imm.GetTaskRequest(project_name=project, task_type="FaceClustering", task_id=task_id)
            ).body
            assert waiting.status == "Running", waiting

            milvus = lite_server(milvus_dir, port=port)  # back, on the same data and address
            milvus.__enter__()
            done = wait_task(client, project, task_id)
            assert done.status == "Succeeded", done
            people = all_people(client, project, dataset)
            assert len(people) == 7 and before < {p.object_id for p in people}  # the portrait's person
            ids = {p.object_id for p in people}
            placed = faces(client, project, dataset, first + later)
            assert all(f.figure_cluster_id in ids for uri in later for f in placed[uri])  # none lost
            assert sum(p.face_count for p in people) == sum(
                f.figure_cluster_id in ids for found in placed.values() for f in found
            )
            checked = _vectors_check(live.settings)  # the vectors written while away were repaired
            assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        if milvus is not None:
            milvus.__exit__(None, None, None)
