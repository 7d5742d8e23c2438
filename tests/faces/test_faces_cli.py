"""`immray analyze` on real files, and the samples command the quick start relies on."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from immray.cli import main


def run_analyze(*paths) -> tuple[int, list[dict]]:
    result = CliRunner().invoke(main, ["analyze", *map(str, paths)])
    return result.exit_code, [json.loads(line) for line in result.stdout.splitlines()]


def test_analyze_prints_imm_figures_for_a_good_file(sample_photo):
    code, records = run_analyze(sample_photo("portrait"))
    assert code == 0
    (record,) = records
    assert record["URI"] == sample_photo("portrait").resolve().as_uri()
    assert (record["ImageWidth"], record["ImageHeight"], record["ContentType"]) == (112, 112, "image/png")
    assert record["FigureCount"] == len(record["Figures"]) == 1
    figure = record["Figures"][0]
    assert figure["FigureType"] == "face"
    assert set(figure["Boundary"]) == {"Left", "Top", "Width", "Height"}
    assert set(figure["HeadPose"]) == {"Pitch", "Roll", "Yaw"}
    assert 0 <= figure["FaceQuality"] <= 1 and 0 <= figure["FigureConfidence"] <= 1


def test_one_bad_file_fails_alone(sample_photo, tmp_path):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(sample_photo("group").read_bytes()[:40000])
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")
    code, records = run_analyze(truncated, sample_photo("portrait"), notes, tmp_path / "missing.jpg")
    assert code != 0
    assert [r.get("Error") for r in records] == [
        "[InvalidImage] truncated JPEG",
        None,
        "[InvalidImage] not an image (unrecognised file format)",
        f"[InvalidArgument] cannot read {tmp_path / 'missing.jpg'}: No such file or directory",
    ]
    assert records[1]["FigureCount"] == 1


def test_samples_command_prints_the_group_photo_path(sample_photo):
    result = subprocess.run(
        [sys.executable, "-m", "immray.samples", "group"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == str(sample_photo("group"))
    unknown = subprocess.run(
        [sys.executable, "-m", "immray.samples", "nobody"], capture_output=True, text=True
    )
    assert unknown.returncode == 2 and "usage" in unknown.stderr


def test_samples_are_fetched_once(sample_photo):
    path = sample_photo("group")
    before = path.stat().st_mtime_ns
    assert sample_photo("group") == path and path.stat().st_mtime_ns == before
