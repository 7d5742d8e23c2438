"""`immray keys create|list|revoke` on the live server's database, and what the SDK sees of the keys."""

from __future__ import annotations

import json
import logging

import pytest
from alibabacloud_imm20200930 import models
from click.testing import CliRunner, Result
from live_immray import Key, LiveImmray, sdk_error, unique

from immray.cli import main
from immray.settings import get_settings


def keys(immray: LiveImmray, *args: str) -> Result:
    """The real command, in-process, against the live server's database (the server keeps running)."""
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(
            main,
            ["keys", "--data-dir", str(immray.settings.data_dir), *args],
            env={"IMMRAY_DATABASE_URL": immray.settings.database_url},
        )
    finally:
        get_settings.cache_clear()


def create_key(immray: LiveImmray, *args: str) -> dict:
    result = keys(immray, "create", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def as_key(created: dict) -> Key:
    return Key(created["AccessKeyId"], created["AccessKeySecret"])


@pytest.fixture(scope="module")
def project(immray: LiveImmray) -> str:
    name = unique("keys")
    client = immray.client()
    client.create_project(models.CreateProjectRequest(project_name=name))
    for dataset in ("mine", "theirs"):
        client.create_dataset(models.CreateDatasetRequest(project_name=name, dataset_name=dataset))
    return name


def test_a_created_key_works_within_its_policy(immray: LiveImmray, project: str):
    created = create_key(immray, "--allow-dataset", f"{project}/mine", "--description", "for the frame")
    assert created["Description"] == "for the frame" and len(created["AccessKeySecret"]) >= 32
    client = immray.client(as_key(created))
    got = client.get_dataset(models.GetDatasetRequest(project_name=project, dataset_name="mine"))
    assert got.body.dataset.dataset_name == "mine"
    error = sdk_error(
        lambda: client.get_dataset(models.GetDatasetRequest(project_name=project, dataset_name="theirs"))
    )
    assert (error.code, error.status_code) == ("Forbidden", 403)


def test_the_text_output_shows_the_secret_once(immray: LiveImmray, project: str):
    result = keys(immray, "create", "--allow-project", project)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    key_id = lines[0].split()[-1]
    secret = lines[1].split()[-1]
    assert result.stdout.count(secret) == 1 and "shown this once" in result.stdout
    assert immray.client(Key(key_id, secret)).get_project(models.GetProjectRequest(project_name=project))


def test_policy_from_a_file_or_inline_and_presets_add_up(immray: LiveImmray, project: str, tmp_path):
    policy = {
        "Version": "1",
        "Statement": [
            {"Effect": "Allow", "Action": ["imm:Get*", "imm:List*"], "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": "imm:*",
                "Resource": f"acs:imm:*:*:project/{project}/dataset/theirs",
            },
        ],
    }
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    from_file = create_key(immray, "--policy", str(path))
    inline = create_key(immray, "--policy", json.dumps(policy), "--allow-dataset", f"{project}/theirs")
    assert from_file["Policy"]["Statement"] == policy["Statement"]
    assert len(inline["Policy"]["Statement"]) == 4  # preset statements + the document's

    for created in (from_file, inline):
        client = immray.client(as_key(created))
        assert client.get_dataset(
            models.GetDatasetRequest(project_name=project, dataset_name="mine")
        ).body.dataset
        # the document's Deny wins over the preset's Allow
        request = models.GetDatasetRequest(project_name=project, dataset_name="theirs")
        assert (
            sdk_error(lambda client=client, request=request: client.get_dataset(request)).code == "Forbidden"
        )


def test_list_never_shows_a_secret(immray: LiveImmray, project: str):
    created = [create_key(immray, "--allow-dataset", f"{project}/mine") for _ in range(2)]
    listed = keys(immray, "list", "--json")
    text = keys(immray, "list")
    assert listed.exit_code == 0 and text.exit_code == 0
    rows = {row["AccessKeyId"]: row for row in json.loads(listed.stdout)}
    for key in created:
        assert rows[key["AccessKeyId"]]["Policy"] == key["Policy"]
        assert rows[key["AccessKeyId"]]["Status"] == "active"
        assert key["AccessKeyId"] in text.stdout
    secrets = [key["AccessKeySecret"] for key in created] + [immray.admin.secret]
    for secret in secrets:
        assert secret not in listed.output and secret not in text.output
    assert rows[immray.admin.access_key_id]["Admin"] is True
    assert all("Secret" not in field for row in rows.values() for field in row)


def test_a_revoked_key_is_an_unknown_key(immray: LiveImmray, project: str):
    doomed, survivor = (as_key(create_key(immray, "--allow-project", project)) for _ in range(2))
    request = models.GetProjectRequest(project_name=project)
    assert immray.client(doomed).get_project(request)

    result = keys(immray, "revoke", doomed.access_key_id)
    assert result.exit_code == 0 and "Revoked" in result.stdout
    error = sdk_error(lambda: immray.client(doomed).get_project(request))
    assert (error.code, error.status_code) == ("InvalidAccessKeyId.NotFound", 404)
    assert immray.client(survivor).get_project(request)  # only that key

    again = keys(immray, "revoke", doomed.access_key_id)
    assert again.exit_code == 0 and "already revoked" in again.stdout
    rows = {row["AccessKeyId"]: row for row in json.loads(keys(immray, "list", "--json").stdout)}
    assert rows[doomed.access_key_id]["Status"] == "revoked" and rows[doomed.access_key_id]["RevokeTime"]
    active = json.loads(keys(immray, "list", "--json", "--active").stdout)
    assert doomed.access_key_id not in {row["AccessKeyId"] for row in active}


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ((), "Say what the key may do"),
        (("--allow-dataset", "nodataset"), "PROJECT/DATASET"),
        (("--allow-dataset", "p/d.x"), "not a project or dataset name"),
        (("--policy", "/no/such/policy.json"), "cannot read"),
        (("--policy", '{"Statement": [{"Effect": "Allow", "Action": "imm:*"}]}'), "Resource"),
        (
            ("--policy", '{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'),
            "imm:<Action>",
        ),
    ],
)
def test_bad_key_requests_are_clear_errors(immray: LiveImmray, args, complaint):
    result = keys(immray, "create", *args)
    assert result.exit_code == 2 and complaint in result.output and "Traceback" not in result.output


def test_revoking_an_unknown_key_fails(immray: LiveImmray):
    result = keys(immray, "revoke", "IRnosuchkey")
    assert result.exit_code == 1 and "There is no access key IRnosuchkey" in result.output


def test_secrets_are_never_logged(immray: LiveImmray, project: str, caplog):
    with caplog.at_level(logging.DEBUG):
        created = create_key(immray, "--allow-project", project)
        key = as_key(created)
        immray.client(key).get_project(models.GetProjectRequest(project_name=project))
        immray.post("GetProject", {"ProjectName": project}, key=key)
        request = models.GetProjectRequest(project_name=project)
        wrong = sdk_error(lambda: immray.client(Key(key.access_key_id, "wrong")).get_project(request))
        assert (wrong.code, wrong.status_code) == ("SignatureDoesNotMatch", 400)
        unknown = sdk_error(lambda: immray.client(Key("IRunknown", key.secret)).get_project(request))
        assert (unknown.code, unknown.status_code) == ("InvalidAccessKeyId.NotFound", 404)
        keys(immray, "revoke", key.access_key_id)
    assert caplog.records  # the server did log (requests, SQL at DEBUG, ...), just never the secret
    assert key.secret not in caplog.text
