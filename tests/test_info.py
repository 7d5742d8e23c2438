"""`immray info` tells which dlib build runs and which detector is configured (accurate unless set);
CI insists on the fast OpenBLAS build. A bad setting is a one-line error naming it."""

import json
import os

import dlib
import pytest
from click.testing import CliRunner

from immray.cli import main
from immray.faces.config import DETECTORS
from immray.settings import Settings, get_settings


def test_info_reports_the_running_dlib_and_pipeline():
    result = CliRunner().invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output)
    assert facts["dlib"].startswith(dlib.__version__)
    assert facts["dlib_blas"] is bool(dlib.DLIB_USE_BLAS)
    assert facts["embedder"].endswith("(128-d)")
    assert facts["detector"]


def test_the_server_detects_faces_in_accurate_mode_unless_told_otherwise():
    assert Settings.model_fields["detector"].default == "accurate"
    assert {Settings(detector=name).detector for name in DETECTORS} == set(DETECTORS)
    with pytest.raises(ValueError, match="must be one of accurate, hog, cnn, not 'fast'"):
        Settings(detector="fast")  # a dataset's mode, not a detector


def test_a_bad_setting_is_a_one_line_error_naming_it(monkeypatch):
    monkeypatch.setenv("IMMRAY_DETECTOR", "yolo")
    get_settings.cache_clear()
    try:
        results = [CliRunner().invoke(main, command) for command in (["info"], ["keys", "list"])]
    finally:
        get_settings.cache_clear()
    for result in results:
        assert result.exit_code == 1, result.output
        assert result.output == (
            "Error: invalid setting IMMRAY_DETECTOR: must be one of accurate, hog, cnn, not 'yolo'\n"
        )


@pytest.mark.skipif(
    os.environ.get("IMMRAY_REQUIRE_FAST_DLIB") != "1", reason="only where the fast build is required"
)
def test_the_fast_dlib_build_is_installed():
    assert dlib.DLIB_USE_BLAS, (
        "deploy/local/install_dlib.sh fell back to dlib-bin: see its warning in the setup output"
    )


@pytest.mark.parametrize(
    ("value", "embedder"), [(None, "dlib-resnet-v1+mirror"), ("false", "dlib-resnet-v1")]
)
def test_mirrored_descriptors_are_the_default_and_a_setting(monkeypatch, value, embedder):
    if value is not None:
        monkeypatch.setenv("IMMRAY_MIRROR", value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["info", "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["embedder"] == f"{embedder} (128-d)"
