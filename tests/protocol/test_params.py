"""Parameter specs: values as the SDK sends them decode; bad ones fail with an error naming the parameter."""

from __future__ import annotations

import json
import re

import pytest
from wire_capture import load_captures

from immray.protocol import ImmError
from immray.protocol.params import RESOURCE_NAME, Bool, Enum, Int, Json, Str, collect, parse_params
from immray.protocol.signing import parse_query


def error_of(spec, raw: dict[str, str]) -> ImmError:
    with pytest.raises(ImmError) as caught:
        parse_params([spec], raw)
    return caught.value


def test_required_parameter_missing_or_empty():
    for raw in ({}, {"ProjectName": ""}):
        error = error_of(Str("ProjectName", required=True), raw)
        assert (error.code, error.status) == ("InvalidArgument", 400)
        assert error.message == "The parameter ProjectName is required but not provided."


def test_optional_parameters_take_their_default():
    specs = [
        Str("NextToken", default=""),
        Int("MaxResults", low=0, high=100, default=100),
        Bool("WithTotalCount"),
    ]
    assert parse_params(specs, {"Unrelated": "x"}) == {
        "NextToken": "",
        "MaxResults": 100,
        "WithTotalCount": None,
    }


def test_strings_length_bytes_and_pattern():
    name = Str("ProjectName", pattern=RESOURCE_NAME)
    assert parse_params([name], {"ProjectName": "_p-1"}) == {"ProjectName": "_p-1"}
    for bad in ("1abc", "a b", "a" * 129, "é"):
        assert "ProjectName" in error_of(name, {"ProjectName": bad}).message
    user_data = Str("UserData", max_bytes=2048)
    assert parse_params([user_data], {"UserData": "中" * 682})["UserData"] == "中" * 682  # 2046 bytes
    assert "2048 bytes" in error_of(user_data, {"UserData": "中" * 683}).message
    assert "at most 3" in error_of(Str("S", max_length=3), {"S": "abcd"}).message
    assert "at least 2" in error_of(Str("S", min_length=2), {"S": "a"}).message


def test_integers_are_decimal_and_range_checked():
    spec = Int("MaxResults", low=0, high=100)
    assert parse_params([spec], {"MaxResults": "10"}) == {"MaxResults": 10}
    assert parse_params([spec], {"MaxResults": "0"}) == {"MaxResults": 0}
    for bad in ("abc", "1_0", " 1", "1.5", "0x10", "1e2", "9" * 40):
        error = error_of(spec, {"MaxResults": bad})
        assert error.code == "InvalidArgument" and "MaxResults must be an integer" in error.message
    for out in ("101", "-1"):
        assert "from 0 to 100" in error_of(spec, {"MaxResults": out}).message


@pytest.mark.parametrize(
    ("text", "value"), [("True", True), ("true", True), ("False", False), ("false", False)]
)
def test_booleans_any_case(text: str, value: bool):
    assert parse_params([Bool("WithTotalCount")], {"WithTotalCount": text}) == {"WithTotalCount": value}
    assert parse_params([Bool("WithTotalCount")], {"WithTotalCount": text.upper()}) == {
        "WithTotalCount": value
    }


def test_booleans_refuse_other_words():
    for bad in ("yes", "1", "0", "t"):
        error = error_of(Bool("WithTotalCount"), {"WithTotalCount": bad})
        assert error.code == "InvalidArgument" and "WithTotalCount" in error.message


def test_enums():
    order = Enum("Order", ("asc", "desc"), ignore_case=True, default="asc")
    assert parse_params([order], {"Order": "DESC"}) == {"Order": "desc"}
    assert parse_params([order], {}) == {"Order": "asc"}
    sort = Enum("Sort", ("ImageCount", "FaceCount"))
    assert "must be one of ImageCount, FaceCount" in error_of(sort, {"Sort": "imagecount"}).message


def test_json_parameters_decode_and_check_their_type():
    files = Json("Files", list, required=True, items=dict, max_items=100)
    value = [{"URI": "oss://b/a.jpg"}]
    assert parse_params([files], {"Files": json.dumps(value)}) == {"Files": value}
    for bad in ("[{", "not json", "[NaN]", "[1,]", "[" * 100_000 + "]" * 100_000):
        error = error_of(files, {"Files": bad})
        assert (error.code, error.status, error.message) == ("InvalidJSON", 400, "Array parsing error, Files")
    assert "must be a JSON array" in error_of(files, {"Files": '{"URI":"x"}'}).message
    assert "wrong type" in error_of(files, {"Files": '["oss://b/a.jpg"]'}).message
    tags = Json("Tags", dict)
    assert parse_params([tags], {"Tags": '{"env":"test","n":1}'}) == {"Tags": {"env": "test", "n": 1}}
    assert "must be a JSON object" in error_of(tags, {"Tags": "[]"}).message


def test_json_item_count_limit_and_item_types():
    ids = Json("ObjectIds", list, items=str, max_items=100, min_items=1)
    hundred = [f"Cluster-{i}" for i in range(100)]
    assert parse_params([ids], {"ObjectIds": json.dumps(hundred)}) == {"ObjectIds": hundred}
    error = error_of(ids, {"ObjectIds": json.dumps([*hundred, "one-more"])})
    assert (error.code, error.status) == ("LimitExceeded", 400) and "ObjectIds" in error.message
    assert "at least 1" in error_of(ids, {"ObjectIds": "[]"}).message
    assert "wrong type" in error_of(ids, {"ObjectIds": '["a", 2]'}).message
    counts = Json("Counts", dict, items=int)
    assert "wrong type" in error_of(counts, {"Counts": '{"a": true}'}).message


def test_a_parameter_given_twice_is_refused():
    assert collect([("A", "1"), ("B", "2")]) == {"A": "1", "B": "2"}
    with pytest.raises(ImmError) as caught:
        collect([("A", "1"), ("A", "2")])
    assert caught.value.code == "InvalidArgument" and "A is given more than once" in caught.value.message


def test_captured_sdk_requests_decode():
    by_title = {c.title: c.request for c in load_captures()}
    query = collect(parse_query(by_title["QueryFigureClusters"].query))
    specs = [
        Str("ProjectName", required=True, pattern=RESOURCE_NAME),
        Int("MaxResults", low=0, high=100),
        Bool("WithTotalCount", default=False),
        Json("CreateTimeRange", dict),
        Str("CustomLabels"),
        Enum("Order", ("asc", "desc")),
    ]
    values = parse_params(specs, query)
    assert values == {
        "ProjectName": "p1",
        "MaxResults": 10,
        "WithTotalCount": True,
        "CreateTimeRange": {"End": "2030-01-01T00:00:00Z", "Start": "2020-01-01T00:00:00Z"},
        "CustomLabels": "k='v'",
        "Order": "asc",
    }
    batch = collect(parse_query(by_title["BatchIndexFileMeta"].query))
    files = parse_params([Json("Files", list, items=dict, max_items=100)], batch)["Files"]
    assert [f["URI"] for f in files] == ["oss://bucket/a.jpg", "oss://bucket/b b.jpg"]
    task = collect(parse_query(by_title["CreateFigureClusteringTask"].query))
    assert parse_params([Str("UserData", max_bytes=2048)], task) == {"UserData": '{"trace":"abc 中文 &=+"}'}


def test_resource_name_rule():
    assert RESOURCE_NAME.fullmatch("a" * 128) and not RESOURCE_NAME.fullmatch("a" * 129)
    assert isinstance(RESOURCE_NAME, re.Pattern)
