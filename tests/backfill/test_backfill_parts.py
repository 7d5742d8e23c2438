"""The parts of a backfill that need no Ray: the pool a Serve config sizes, the listing's fingerprints
against the ones indexing records, the job's refusals and the command's errors (one line, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from immray.bindings.locations import bind_location, list_images
from immray.cli import main
from immray.jobs.backfill_client import entrypoint, parse_env
from immray.jobs.backfill_plan import listed_fingerprint
from immray.jobs.backfill_pool import PoolSpec, parse_actors, pool_from_config
from immray.settings import Settings
from immray.sources import Sources
from ray_testkit import free_port

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_the_local_config_sizes_the_pool_like_its_analysis_deployment():
    pool = pool_from_config(yaml.safe_load((CONFIGS / "serve.local.yaml").read_text()))
    assert pool == PoolSpec(min_actors=2, max_actors=2, batch_size=8, num_cpus=1, num_gpus=0)
    assert pool.concurrency == 2


def test_the_cluster_config_names_an_autoscaling_pool_on_gpus():
    pool = pool_from_config(yaml.safe_load((CONFIGS / "serve.cluster.yaml").read_text()))
    assert pool == PoolSpec(min_actors=1, max_actors=4, batch_size=64, num_cpus=4, num_gpus=1)
    assert pool.concurrency == (1, 4)
    smaller = pool_from_config(
        yaml.safe_load((CONFIGS / "serve.cluster.yaml").read_text()), num_gpus=0, min_actors=2, max_actors=2
    )
    assert (smaller.num_gpus, smaller.concurrency) == (0, 2)


def test_pool_options_round_trip_through_the_job_command_line():
    from immray.jobs.backfill import parse_args

    pool = PoolSpec(min_actors=1, max_actors=3, batch_size=16, num_cpus=0.5, num_gpus=1)
    command = entrypoint("file:///photos/", "p/d", pool, python="python3", tag="backfill-x")
    words = command.split()
    assert words[:3] == ["python3", "-m", "immray.jobs.backfill"]
    assert parse_args(words[3:]).pool == pool
    assert parse_actors("4") == (4, 4) and parse_actors("2-5") == (2, 5)
    with pytest.raises(ValueError):
        parse_actors("many")
    with pytest.raises(ValueError):
        PoolSpec(min_actors=3, max_actors=2)
    assert parse_env(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}
    with pytest.raises(ValueError):
        parse_env(["NOEQUALS"])


def test_a_listed_file_has_the_fingerprint_indexing_records(tmp_path, sample_photo):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.jpg").write_bytes(sample_photo("portrait").read_bytes())
    (tmp_path / "b.png").write_bytes(sample_photo("astronaut").read_bytes())
    (tmp_path / "notes.txt").write_text("not a photo")
    settings = Settings(data_dir=tmp_path / "data", allowed_roots=[tmp_path])
    sources = Sources.from_settings(settings)
    listing = list_images(bind_location(sources, tmp_path.as_uri() + "/"), sources, settings)
    assert len(listing) == 2
    for uri, signature in listing.items():
        assert listed_fingerprint(uri, signature) == sources.stat(sources.check(uri)).fingerprint
    # An object's listing signature (ETag:size:time) gives the fingerprint s3 reads record.
    assert listed_fingerprint("s3://b/k.jpg", "abc:12:2024-01-01T00:00:00+00:00") == "s3:12:abc"
    assert listed_fingerprint("s3://b/k.jpg", ":12:2024") is None


def run_job(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "immray.jobs.backfill", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_job_refuses_a_location_outside_the_roots_with_one_line(tmp_path):
    env = {
        "IMMRAY_DATA_DIR": str(tmp_path / "data"),
        "IMMRAY_ALLOWED_ROOTS": f'["{tmp_path / "allowed"}"]',
    }
    (tmp_path / "allowed").mkdir()
    (tmp_path / "elsewhere").mkdir()
    done = run_job([str(tmp_path / "elsewhere"), "--dataset", "photos/family"], env)
    assert done.returncode == 2
    assert "is refused: the path is not under an allowed root" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    bad = run_job([str(tmp_path / "allowed"), "--dataset", "no-slash"], env)
    assert bad.returncode == 2 and "--dataset: PROJECT/DATASET" in bad.stderr


def test_the_command_says_what_is_missing_and_when_the_cluster_is_unreachable():
    runner = CliRunner()
    missing = runner.invoke(main, ["backfill", "/photos"])
    assert missing.exit_code == 2 and "give LOCATION and --dataset P/D" in missing.output
    address = f"http://127.0.0.1:{free_port()}"
    down = runner.invoke(main, ["backfill", "--list", "--address", address])
    assert down.exit_code == 1 and f"cannot reach the Ray dashboard at {address}" in down.output
    assert down.exception is None or isinstance(down.exception, SystemExit)
    badenv = runner.invoke(main, ["backfill", "/p", "--dataset", "p/d", "--env", "X", "--address", address])
    assert badenv.exit_code == 2 and "--env takes NAME=VALUE" in badenv.output
