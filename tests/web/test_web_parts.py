"""The web page's parts without a browser: sessions and sign-in links, face crops, the explorer's forms."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from PIL import Image

from immray.api.handlers import all_actions
from immray.samples import sample_path
from immray.web.explorer import catalog, sdk_snippet, snake, typed_value
from immray.web.session import Sessions
from immray.web.thumbnails import FACE_PX, Box, ThumbnailCache, face_crop, photo_preview
from immray.web.times import duration, exact, readable


def test_a_link_signs_in_once_and_a_cookie_is_only_good_with_its_signature():
    sessions = Sessions()
    token = sessions.new_link_token("KEY1")
    assert sessions.redeem(token) == "KEY1"
    assert sessions.redeem(token) is None
    assert sessions.redeem("made-up") is None

    cookie = sessions.new_cookie("KEY1")
    session = sessions.read(cookie)
    assert session is not None and session.access_key_id == "KEY1"
    assert session.csrf_ok(session.csrf) and not session.csrf_ok("") and not session.csrf_ok(None)
    assert sessions.read(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")) is None
    assert Sessions().read(cookie) is None  # another server's secret
    assert sessions.read("") is None and sessions.read("garbage") is None


def test_face_crops_are_square_jpegs_even_at_the_photo_edge(tmp_path):
    photo = sample_path("group").read_bytes()
    with Image.open(io.BytesIO(photo)) as image:
        width, height = image.size
    for box in (Box(500, 100, 90, 110), Box(0, 0, 80, 80), Box(width - 40, height - 40, 80, 80)):
        crop = Image.open(io.BytesIO(face_crop(photo, box)))
        assert crop.format == "JPEG" and crop.size == (FACE_PX, FACE_PX)
    preview = Image.open(io.BytesIO(photo_preview(photo, 400)))
    assert max(preview.size) == 400

    cache = ThumbnailCache(tmp_path)
    path = cache.path_of("p", "d", "figure-1", FACE_PX)
    assert path != cache.path_of("p", "other", "figure-1", FACE_PX)  # datasets never share a crop
    cache.store(path, b"jpeg")
    assert path.read_bytes() == b"jpeg" and not list(tmp_path.rglob("*.part"))
    assert cache.etag_of(path) == cache.etag_of(cache.path_of("p", "d", "figure-1", FACE_PX))


def test_a_face_at_the_photo_edge_is_cropped_inside_the_photo_without_a_black_band():
    white = io.BytesIO()
    Image.new("RGB", (400, 300), "white").save(white, format="PNG")
    for box in (Box(0, 0, 80, 80), Box(340, 230, 60, 70), Box(150, 0, 100, 290), Box(0, 100, 60, 60)):
        crop = Image.open(io.BytesIO(face_crop(white.getvalue(), box))).convert("L")
        assert crop.size == (FACE_PX, FACE_PX)
        assert crop.getextrema()[0] > 200, box  # all photo: no black beyond its edge


def test_times_read_as_people_read_them():
    now = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)
    assert readable("2026-12-05T14:03:09.123456Z", now) == "today 14:03 UTC"
    assert readable("2026-12-03T09:12:00Z", now) == "3 Dec 09:12 UTC"
    assert readable("2025-12-03T09:12:00+08:00", now) == "3 Dec 2025 01:12 UTC"
    assert readable(None) == "" and readable("") == ""
    assert exact("2026-12-05T14:03:09.123456Z") == "2026-12-05 14:03:09.123456 UTC"
    start = "2026-12-05T14:00:00Z"
    assert duration(start, "2026-12-05T14:00:00.4Z") == "0.4 s"
    assert duration(start, "2026-12-05T14:00:12Z") == "12 s"
    assert duration(start, "2026-12-05T14:03:04Z") == "3 min 4 s"
    assert duration(start, "2026-12-05T16:05:00Z") == "2 h 5 min"
    assert duration(start, None, now) == "1 h 0 min"  # still running
    assert duration(None, None) == ""


def test_the_explorer_lists_every_action_with_its_parameters(tmp_path):
    from immray.api.bootstrap import build_context
    from immray.services.database import Database
    from immray.settings import Settings

    url = f"sqlite:///{tmp_path / 'f.db'}"
    db = Database.connect(url, migrate=True)
    try:
        actions = all_actions(build_context(Settings(data_dir=tmp_path, database_url=url), db))
        listed = catalog(actions)
        assert [action.name for action, _ in listed] == sorted(action.name for action in actions)
        fields = dict(listed)[actions.get("QueryFigureClusters")]
        kinds = {field.name: field.kind for field in fields}
        assert kinds["ProjectName"] == "text" and kinds["MaxResults"] == "number"
        assert kinds["WithTotalCount"] == "boolean" and kinds["CreateTimeRange"] == "json"
        assert "FaceCount" in next(f for f in fields if f.name == "Sort").choices
    finally:
        db.close()
    field = {f.name: f for f in fields}
    assert typed_value(field["MaxResults"], "10") == 10
    assert typed_value(field["WithTotalCount"], "true") is True
    assert typed_value(field["CreateTimeRange"], '{"Start": "x"}') == {"Start": "x"}
    assert typed_value(field["CreateTimeRange"], "{bad") == "{bad"  # the server names the error
    assert snake("CreateFigureClustersMergingTask") == "create_figure_clusters_merging_task"
    snippet = sdk_snippet("GetDataset", {"ProjectName": "p", "WithStatistics": True}, "h:1", "KEY")
    compile(snippet, "snippet", "exec")
    assert '"WithStatistics": True' in snippet and "client.get_dataset(request)" in snippet
