"""The WorkflowParameters registry: validation, defaults in force, typed reads, and how a later knob is added."""

from __future__ import annotations

import pytest

from facegroup.protocol.errors import ImmError
from facegroup.services import workflow_parameters as wp


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
