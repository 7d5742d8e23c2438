"""`immray index DIR --watch` against a live server: it binds the folder, shows the full scan and the
changes that follow, and ends when the binding is deleted (the photos stay indexed)."""

from __future__ import annotations

import threading
import time

from alibabacloud_imm20200930 import models as imm
from alibabacloud_tea_openapi.exceptions import ClientException
from binding_kit import files_of, jpeg, truncated_jpeg, wait_files, wait_for, wait_incremental
from click.testing import CliRunner
from live_immray import unique
from live_indexing import indexing_server

from immray.cli import main
from immray.credentials import Credentials, save_credentials
from immray.settings import Settings


def test_index_watch_binds_the_folder_and_follows_it(request, tmp_path):
    root = tmp_path / "root"
    folder = root / "album"
    folder.mkdir(parents=True)
    (folder / "astronaut.jpg").write_bytes(jpeg("astronaut", scale=0.9))
    (folder / "broken.jpg").write_bytes(truncated_jpeg())
    (folder / "notes.txt").write_text("skipped")
    project, dataset = unique("cli"), unique("photos")
    with indexing_server(request, tmp_path / "server", "sqlite", [root], binding_scan_seconds=1.0) as live:
        data_dir = tmp_path / "cli"
        save_credentials(
            Settings(data_dir=data_dir).credentials_path,
            Credentials(live.admin.access_key_id, live.admin.secret, live.address),
        )
        results = []
        args = ["index", str(folder), "--watch", "--project", project, "--dataset", dataset]
        watcher = threading.Thread(
            target=lambda: results.append(
                CliRunner().invoke(main, [*args, "--data-dir", str(data_dir)], catch_exceptions=False)
            )
        )
        watcher.start()
        client = live.client()

        def bound() -> list[imm.Binding] | None:
            try:
                request = imm.ListBindingsRequest(project_name=project, dataset_name=dataset)
                return client.list_bindings(request).body.bindings
            except ClientException:  # the CLI has not made the dataset yet
                return None

        (binding,) = wait_for("the CLI to bind the folder", bound)
        assert binding.uri == folder.as_uri() + "/"
        wait_incremental(client, project, dataset, binding.uri)
        (folder / "portrait.jpg").write_bytes(jpeg("portrait", scale=2.0))
        uris = [(folder / name).as_uri() for name in ("astronaut.jpg", "broken.jpg", "portrait.jpg")]
        wait_files(client, project, dataset, uris)
        time.sleep(2.5)  # the CLI polls every second: let it see the photos done
        client.delete_binding(
            imm.DeleteBindingRequest(project_name=project, dataset_name=dataset, uri=binding.uri)
        )
        watcher.join(30)
        assert not watcher.is_alive()
        assert set(files_of(client, project, dataset, uris)) == set(uris)
        shown = client.get_dataset(imm.GetDatasetRequest(project_name=project, dataset_name=dataset)).body
        assert {p.name: p.value for p in shown.dataset.workflow_parameters}["AutoClustering"] == "true"
    (result,) = results
    assert result.exit_code == 0, result.output
    assert f"watching {folder} -> {project}/{dataset}" in result.output
    assert "in sync: " in result.output  # the full scan ended while it watched
    assert "the binding was deleted" in result.output
    assert "3 photo(s), 2 indexed, 1 failed, 0 pending; 2 face(s)" in result.output
    assert "broken.jpg: [InvalidImage]" in result.output
