"""`immray info` tells which torch runs, on which device, and which detector and embedder are configured
(accurate unless set). A bad setting is a one-line error naming it."""

import json

import pytest
import torch
from click.testing import CliRunner

from immray.cli import main
from immray.faces.config import DETECTORS
from immray.settings import Settings, get_settings


def test_info_reports_the_running_torch_and_pipeline():
    result = CliRunner().invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output)
    assert facts["torch"] == torch.__version__
    assert facts["cuda_available"] is torch.cuda.is_available()
    assert facts["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert facts["embedder"].endswith("(128-d)")
    assert facts["detector"] == "accurate"


def test_the_server_detects_faces_in_accurate_mode_unless_told_otherwise():
    assert Settings.model_fields["detector"].default == "accurate"
    assert {Settings(detector=name).detector for name in DETECTORS} == set(DETECTORS)
    # the former dlib detectors' names are kept as aliases of the torch modes
    assert Settings(detector="hog").detector == "hog"
    with pytest.raises(ValueError, match="must be one of accurate, fast, hog, cnn, not 'yolo'"):
        Settings(detector="yolo")


def test_the_device_and_the_embedder_are_settings():
    assert Settings().device == "auto" and Settings().embedder == "dlib-resnet-v1"
    with pytest.raises(ValueError, match="must be auto, cpu, cuda or cuda:N, not 'tpu'"):
        Settings(device="tpu")
    with pytest.raises(ValueError, match="embedder must be dlib-resnet-v1 or open_clip:"):
        Settings(embedder="facenet")


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
            "Error: invalid setting IMMRAY_DETECTOR: must be one of accurate, fast, hog, cnn, not 'yolo'\n"
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
