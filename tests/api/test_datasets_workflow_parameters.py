"""The WorkflowParameters registry: validation, defaults in force, typed reads, how a later knob is added, and the
FaceDetectionMode knob (which detector a dataset's photos are analysed with)."""

from __future__ import annotations

import pytest

from immray.protocol.errors import ImmError
from immray.services import workflow_parameters as wp
from immray.services.analysis import analyzer_config
from immray.settings import Settings


def test_validated_pairs_are_sorted_strings():
    checked = wp.validate([{"Name": "FigureClusterMinFaces", "Value": 7}])
    assert checked == [{"Name": "FigureClusterMinFaces", "Value": "7"}]
    assert wp.validate([]) == []


def test_values_in_force_fill_in_defaults_and_drop_retired_names():
    defaults = [{"Name": name, "Value": spec.default} for name, spec in wp.known().items()]
    assert wp.in_force(None) == defaults
    assert {"Name": "FigureClusterMinFaces", "Value": "3"} in defaults
    stored = [{"Name": "FigureClusterMinFaces", "Value": "9"}, {"Name": "RetiredKnob", "Value": "x"}]
    expected = [
        {**item, "Value": "9"} if item["Name"] == "FigureClusterMinFaces" else item for item in defaults
    ]
    assert wp.in_force(stored) == expected


def test_typed_reads():
    assert wp.setting(None, "FigureClusterMinFaces") == 3
    assert wp.setting([{"Name": "FigureClusterMinFaces", "Value": "12"}], "FigureClusterMinFaces") == 12
    # a value stored before a rule tightened falls back to the default instead of failing a task
    assert wp.setting([{"Name": "FigureClusterMinFaces", "Value": "500"}], "FigureClusterMinFaces") == 3


@pytest.mark.parametrize(
    "raw", [{"Name": "x"}, "FigureClusterMinFaces=3", [1], [{"Name": True, "Value": "1"}]]
)
def test_shapes_that_are_not_name_value_pairs(raw):
    with pytest.raises(ImmError) as caught:
        wp.validate(raw)
    assert caught.value.code == "InvalidArgument" and "WorkflowParameters" in caught.value.message


def test_a_later_feature_registers_its_knob(monkeypatch):
    monkeypatch.setattr(wp, "_REGISTRY", dict(wp._REGISTRY))
    wp.register(wp.WorkflowParameter("FaceDetector", "hog", wp.choice("hog", "cnn"), "detector"))
    wp.register(wp.WorkflowParameter("AutoTagging", "false", wp.boolean, "tag after indexing"))
    names = [p["Name"] for p in wp.in_force(None)]
    assert names == sorted(names) and {"AutoTagging", "FaceDetector", "FigureClusterMinFaces"} <= set(names)
    assert wp.validate([{"Name": "AutoTagging", "Value": "True"}, {"Name": "FaceDetector", "Value": "cnn"}])
    assert wp.setting([{"Name": "AutoTagging", "Value": "TRUE"}], "AutoTagging") is True
    with pytest.raises(ImmError, match="must be one of hog, cnn"):
        wp.validate([{"Name": "FaceDetector", "Value": "mtcnn"}])
    with pytest.raises(ValueError, match="registered twice"):
        wp.register(wp.WorkflowParameter("FaceDetector", "hog", wp.choice("hog"), "again"))
    with pytest.raises(ValueError):  # a default its own rule refuses is caught when the knob is declared
        wp.WorkflowParameter("Broken", "0", wp.integer(1, 5), "bad default")


def test_face_detection_mode_defaults_to_the_servers_detector():
    assert wp.setting(None, "FaceDetectionMode") == "default"
    assert {"Name": "FaceDetectionMode", "Value": "default"} in wp.in_force(None)
    for mode in wp.FACE_DETECTION_MODES:
        assert wp.validate([{"Name": "FaceDetectionMode", "Value": mode}])
        assert wp.setting([{"Name": "FaceDetectionMode", "Value": mode}], "FaceDetectionMode") == mode
    for bad in ("hog", "cnn", "Fast", ""):  # a mode, not a detector's name; exact words
        with pytest.raises(
            ImmError, match="FaceDetectionMode must be one of default, accurate, fast"
        ) as caught:
            wp.validate([{"Name": "FaceDetectionMode", "Value": bad}])
        assert caught.value.code == "InvalidArgument"


@pytest.mark.parametrize(
    ("server", "mode", "detector"),
    [
        ("accurate", "default", "accurate"),
        ("hog", "default", "hog"),
        ("cnn", None, "cnn"),
        ("accurate", "fast", "fast"),
        ("hog", "accurate", "accurate"),
        ("cnn", "fast", "fast"),
    ],
)
def test_each_mode_selects_a_detector_and_keeps_the_servers_other_knobs(server, mode, detector):
    settings = Settings(detector=server, min_face_px=60, detect_max_side=1024, max_image_pixels=10**6)
    config = analyzer_config(settings, mode)
    assert config.detector == detector
    assert (config.min_face_px, config.detect_max_side, config.max_image_pixels) == (60, 1024, 10**6)
    assert {analyzer_config(settings, m).detector for m in wp.FACE_DETECTION_MODES} <= {
        "accurate",
        "fast",
        "hog",
        "cnn",
    }
    with pytest.raises(ValueError, match="detection mode"):
        analyzer_config(settings, "hog")
