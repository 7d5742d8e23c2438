"""`immray index DIR` against a live server, signed with the key saved in the data directory."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner
from live_immray import unique
from live_indexing import get_files, indexing_server

from immray.cli import main
from immray.client import ApiError, ImmClient, connect
from immray.credentials import Credentials, save_credentials
from immray.folder_index import find_photos
from immray.settings import Settings
from photo_testkit import write_photo_set


@pytest.fixture(scope="module")
def photos(tmp_path_factory, sample_photo):
    found = write_photo_set(tmp_path_factory.mktemp("roots") / "library", sample_photo)
    shutil.copyfile(found.bad["truncated.jpg"], found.root / "photos" / "broken.jpg")
    (found.root / "photos" / "readme.txt").write_text("not a photo: skipped by suffix")
    hidden = found.root / "photos" / ".thumbnails"
    hidden.mkdir()
    shutil.copyfile(found.good["portrait.png"], hidden / "t.png")
    return found


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, photos):
    with indexing_server(request, tmp_path_factory.mktemp("server"), "sqlite", [photos.root]) as live:
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


def test_index_creates_the_dataset_indexes_every_photo_and_waits(server, photos, data_dir):
    project, dataset = unique("cli"), unique("photos")
    folder = photos.root / "photos"
    result = run(
        "index",
        str(folder),
        "--project",
        project,
        "--dataset",
        dataset,
        "--data-dir",
        str(data_dir),
        "--batch-size",
        "4",
    )
    expected = find_photos(folder)
    assert len(expected) == len(photos.good) + 1  # the photos and broken.jpg; not readme.txt, not .thumbnails
    uris = [path.as_uri() for path in expected]
    files = get_files(server.client(), project, dataset, uris)
    assert set(files) == set(uris) and all(f.object_status != "Pending" for f in files.values())
    faces = sum(f.figure_count or 0 for f in files.values())
    failed = [uri for uri, f in files.items() if f.object_status == "Failed"]
    assert failed == [(folder / "broken.jpg").as_uri()]
    assert result.exit_code == 1  # a photo failed
    assert (
        f"{project}/{dataset}: {len(uris)} photo(s), {len(uris) - 1} indexed, 1 failed, 0 pending; {faces} face(s)"
        in result.output
    )
    assert "broken.jpg: [InvalidImage] truncated JPEG" in result.output

    again = run(
        "index",
        str(photos.root / "photos" / ".." / "photos"),
        "--project",
        project,
        "--dataset",
        dataset,
        "--data-dir",
        str(data_dir),
    )
    assert f"{len(uris) - 1} indexed, 1 failed" in again.output


def test_a_folder_the_server_may_not_read_is_a_clear_error(photos, data_dir, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.copyfile(photos.good["portrait.png"], elsewhere / "p.png")
    result = run("index", str(elsewhere), "--data-dir", str(data_dir))
    assert result.exit_code == 1 and "InvalidArgument" in result.output and "--root" in result.output
    assert "Traceback" not in result.output


def test_without_a_key_or_a_server_the_cli_says_what_to_do(photos, tmp_path):
    result = run("index", str(photos.root / "photos"), "--data-dir", str(tmp_path / "empty"))
    assert result.exit_code == 1 and "no access key" in result.output and "immray serve" in result.output
    save_credentials(Settings(data_dir=tmp_path).credentials_path, Credentials("id", "secret", "127.0.0.1:9"))
    result = run("index", str(photos.root / "photos"), "--data-dir", str(tmp_path))
    assert result.exit_code == 1 and "cannot reach" in result.output


def test_the_client_signs_with_the_saved_key_and_reports_imm_errors(server, data_dir):
    with connect(Settings(data_dir=data_dir)) as client:
        project = unique("c")
        assert client.call("CreateProject", {"ProjectName": project})["Project"]["ProjectName"] == project
        with pytest.raises(ApiError) as caught:
            client.call("GetProject", {"ProjectName": unique("missing")})
        assert (
            caught.value.code == "ResourceNotFound" and caught.value.status == 404 and caught.value.request_id
        )
    with (
        ImmClient(server.address, server.admin.access_key_id, "wrong-secret") as wrong,
        pytest.raises(ApiError) as bad,
    ):
        wrong.call("ListProjects")
    assert bad.value.code == "SignatureDoesNotMatch"


def test_find_photos_follows_symlinked_folders_once_and_skips_hidden_and_other_files(tmp_path):
    (tmp_path / "a" / ".cache").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    for name in ("a/x.JPG", "a/y.heic", "a/notes.txt", "a/.hidden.jpg", "a/.cache/t.jpg", "outside/z.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "a" / "linked").symlink_to(tmp_path / "outside")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")
    found = find_photos(tmp_path / "a")
    assert [path.relative_to(tmp_path / "a").as_posix() for path in found] == [
        "linked/z.png",
        "x.JPG",
        "y.heic",
    ]
