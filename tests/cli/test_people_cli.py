"""`immray cluster`, `immray people` and `immray export` against a live server, after
`immray index`, all signed with the key saved in the data directory (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner
from live_immray import BACKENDS, new_postgres_database, unique  # noqa: F401  (fixture)
from live_indexing import indexing_server
from people_photos import GROUP, make_photos

from immray.cli import main
from immray.credentials import Credentials, save_credentials
from immray.settings import Settings


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("roots")
    make_photos(root / "library", [copy.name for copy in GROUP])
    with indexing_server(
        request, tmp_path_factory.mktemp("server"), request.param, [root], min_face_px=80
    ) as live:
        live.root = root
        yield live


@pytest.fixture()
def data_dir(tmp_path, server):
    """A CLI data directory holding the server's admin key, as `immray serve` saves it."""
    save_credentials(
        Settings(data_dir=tmp_path).credentials_path,
        Credentials(server.admin.access_key_id, server.admin.secret, server.address),
    )
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_index_cluster_list_and_export_the_people(server, data_dir, tmp_path):
    where = ["--project", unique("cli"), "--dataset", unique("people"), "--data-dir", str(data_dir)]
    library = server.root / "library"
    uris = sorted((library / copy.name).as_uri() for copy in GROUP)
    assert run("index", str(library), *where).exit_code == 0

    clustered = run("cluster", *where)
    assert clustered.exit_code == 0, clustered.output
    assert "Clustered" in clustered.output and "FaceClustering-" in clustered.output

    table = run("people", *where)
    assert table.exit_code == 0, table.output
    rows = [line for line in table.output.splitlines() if "Cluster-" in line]
    assert len(rows) == 6 and "6 people" in table.output
    for row in rows:
        cells = [cell.strip() for cell in row.strip("│┃ ").split("│")]
        name, faces, photos, cover = cells[:4]
        assert (name, faces, photos) == ("-", "4", "4"), row
        assert cover.startswith("file://") and cover in uris

    exported = run("export", *where)
    assert exported.exit_code == 0, exported.output
    document = json.loads(exported.output)
    people = document["People"]
    assert len(people) == 6 and all(len(p["Photos"]) == p["ImageCount"] == 4 for p in people)
    assert {uri for p in people for uri in p["Photos"]} == set(uris)
    assert all(p["CoverURI"] in p["Photos"] for p in people)

    target = tmp_path / "people.csv"
    assert run("export", *where, "--format", "csv", "--output", str(target)).exit_code == 0
    lines = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(lines) == 24 and {line["ClusterId"] for line in lines} == {p["ClusterId"] for p in people}
    assert {(line["ClusterId"], line["URI"]) for line in lines} == {
        (p["ClusterId"], uri) for p in people for uri in p["Photos"]
    }


def test_errors_are_one_clear_line(server, data_dir, tmp_path):
    missing = run(
        "cluster", "--project", unique("nobody"), "--dataset", "photos", "--data-dir", str(data_dir)
    )
    assert (
        missing.exit_code == 1 and "ResourceNotFound" in missing.output and "Traceback" not in missing.output
    )
    keyless = run("people", "--data-dir", str(tmp_path / "elsewhere"))
    assert keyless.exit_code == 1 and "no access key" in keyless.output
    away = run("export", "--data-dir", str(data_dir), "--endpoint", "127.0.0.1:9")
    assert away.exit_code == 1 and "cannot reach" in away.output
