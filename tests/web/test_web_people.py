"""The web page in a real browser against a live server with real photos (the group sample's copies: six
people, four faces each): sign in with the link, the people grid with covers, rename (seen by the SDK),
merge and undo, a face taken out (kept out by the next clustering task), a face moved with the picker (by
name, to the suggested nearest person, to a new person), every page on a 390 px phone, local readable times,
the icon, the API explorer, a key limited to another dataset. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alibabacloud_imm20200930 import models as imm
from live_immray import BACKENDS, Key, LiveImmray, database_url_for, unique
from live_indexing import index_and_wait, new_dataset
from people_photos import GROUP, make_photos
from people_testkit import all_people, cluster, faces, photos_of
from ray import serve

from immray.policy import ADMIN_POLICY, dataset_policy
from immray.serve.app import APP_NAME
from immray.services import access_keys
from immray.services.database import Database
from immray.settings import Settings
from photo_testkit import TEST_DETECTOR
from ray_testkit import serve_app

WAIT_SECONDS = 240


@dataclass
class Site:
    live: LiveImmray
    project: str
    dataset: str
    photos: dict[str, Path]

    @property
    def base(self) -> str:
        return f"http://{self.live.address}"

    def people_url(self) -> str:
        return f"{self.base}/ui/p/{self.project}/d/{self.dataset}/people"

    def link(self) -> str:
        # Made by the ingress replica, which keeps the link tokens (as `immray serve` gets its link); asked
        # from a thread of its own, as Playwright's sync API runs an event loop in this one.
        def ask() -> str:
            ingress = serve.get_app_handle(APP_NAME)
            return ingress.sign_in_link.remote(self.base, self.live.admin.access_key_id).result(timeout_s=30)

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(ask).result()

    def people(self) -> list[imm.FigureCluster]:
        return all_people(self.live.client(), self.project, self.dataset)

    def cluster_of(self, uri: str, figure_id: str) -> str:
        """The person a face is in, as GetFileMeta tells."""
        found = faces(self.live.client(), self.project, self.dataset, [uri])[uri]
        return next(f.figure_cluster_id for f in found if f.figure_id == figure_id)

    def rename(self, cluster_id: str, name: str) -> None:
        self.live.client().update_figure_cluster(
            imm.UpdateFigureClusterRequest(
                project_name=self.project,
                dataset_name=self.dataset,
                figure_cluster=imm.FigureClusterForReq(object_id=cluster_id, name=name),
            )
        )

    def wait_idle(self) -> None:
        """Until no task of the project runs (the page starts tasks without telling their ids)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            body = self.live.client().list_tasks(imm.ListTasksRequest(project_name=self.project)).body
            running = [task.task_id for task in body.tasks or [] if task.status == "Running"]
            if not running:
                assert all(task.status == "Succeeded" for task in body.tasks), [
                    (t.task_id, t.status, t.message) for t in body.tasks
                ]
                return
            assert time.monotonic() < deadline, f"still running: {running}"
            time.sleep(0.1)


@pytest.fixture(scope="module", params=BACKENDS)
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("photos")
    photos = make_photos(folder, [copy.name for copy in GROUP])
    data_dir = tmp_path_factory.mktemp("immray")
    url = database_url_for(request, request.param, data_dir)
    settings = Settings(
        data_dir=data_dir,
        database_url=url,
        allowed_roots=[folder],
        min_face_px=80,
        detector=TEST_DETECTOR,  # HOG alone: photo_testkit says why
        task_poll_seconds=0.1,
    )
    db = Database.connect(url, migrate=True)
    admin = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
    try:
        with serve_app(settings) as address:
            live = LiveImmray(address, settings, db, Key(admin.info.access_key_id, admin.secret))
            project, dataset = new_dataset(live.client())
            index_and_wait(live.client(), project, dataset, [path.as_uri() for path in photos.values()])
            cluster(live.client(), project, dataset)
            yield Site(live, project, dataset, photos)
    finally:
        db.close()


@pytest.fixture()
def page(browser, site: Site):
    """A browser page signed in with a fresh one-time link."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(site.link())
    assert page.url.endswith("/ui/projects")
    yield page
    context.close()


def covers_loaded(page) -> list[bool]:
    return page.eval_on_selector_all(
        ".person img.cover", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)"
    )


def test_the_link_signs_in_once_and_the_people_page_shows_everyone_with_covers(browser, site, artifacts):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    link = site.link()
    page.goto(site.people_url())
    assert "/ui/signin" in page.url  # not signed in yet
    page.goto(link)
    page.click(f"a.dataset:text-is('{site.dataset}')")
    page.wait_for_selector(".person")
    people = site.people()
    assert len(people) == 6
    assert page.locator(".person").count() == len(people)
    page.wait_for_load_state("networkidle")
    assert covers_loaded(page) == [True] * len(people)
    assert page.inner_text("#total") == f"{len(people)} people"
    assert page.inner_text("#unassigned").startswith("0 faces")
    shown = {card.get_attribute("data-id") for card in page.locator(".person").all()}
    assert shown == {person.object_id for person in people}
    assert page.locator(".person .unnamed").count() == len(people)
    page.screenshot(path=str(artifacts / f"people-{site.live.backend}.png"), full_page=True)

    # paged and sorted like QueryFigureClusters: pages of 4 by face count ascending, then the rest
    page.goto(site.people_url() + "?size=4&sort=FaceCount&order=asc")
    first = [card.get_attribute("data-id") for card in page.locator(".person").all()]
    with page.expect_navigation():
        page.click("#next")
    rest = [card.get_attribute("data-id") for card in page.locator(".person").all()]
    assert len(first) == 4 and len(rest) == 2 and page.locator("#next").count() == 0
    assert sorted(first + rest) == sorted(p.object_id for p in people)
    counts = {p.object_id: p.face_count for p in people}
    assert [counts[i] for i in first + rest] == sorted(counts[i] for i in first + rest)

    # the link is one-time: a second browser gets the sign-in form
    other = browser.new_context()
    again = other.new_page()
    again.goto(link)
    assert again.locator("text=already used").count() == 1
    other.close()

    # a thumbnail is made once: the second request is answered 304 by its ETag
    cover = page.locator(".person img.cover").first.get_attribute("src")
    first = page.request.get(site.base + cover)
    assert first.status == 200 and first.headers["content-type"] == "image/jpeg"
    assert "max-age" in first.headers["cache-control"]
    second = page.request.get(site.base + cover, headers={"If-None-Match": first.headers["etag"]})
    assert second.status == 304
    assert list((site.live.settings.data_dir / "thumbnails").rglob("*.jpg"))  # made once, kept on disk
    page.locator(".person").first.click()
    photo = page.locator(".face a").first.get_attribute("href")  # the photo behind a face
    answer = page.request.get(site.base + photo)
    assert answer.status == 200 and answer.headers["content-type"] == "image/jpeg"
    context.close()


def test_the_people_page_filters_people_by_their_estimated_age(page, site):
    people = {p.object_id: p for p in site.people()}
    assert all(p.average_age is not None and p.min_age <= p.average_age <= p.max_age for p in people.values())
    # the whole-year bound that splits the six people most evenly (their estimated ages differ)
    ages = [p.average_age for p in people.values()]
    bound = min(
        range(int(min(ages)) + 1, int(max(ages)) + 1), key=lambda b: abs(sum(a >= b for a in ages) - 3)
    )
    older = {i for i, p in people.items() if p.average_age >= bound}
    assert 0 < len(older) < len(people)

    page.goto(site.people_url())
    page.fill("input[name=age_from]", str(bound))
    with page.expect_navigation():
        page.click("button:text-is('Show')")
    shown = {card.get_attribute("data-id") for card in page.locator(".person").all()}
    assert shown == older
    card = page.locator(".person").first
    person = people[card.get_attribute("data-id")]
    assert f"age {int(person.min_age)}–{int(person.max_age)} (est.)" in card.inner_text()
    assert page.input_value("input[name=age_from]") == str(bound)

    # the other side of the bound, one person a page: the next-page links keep the filter
    page.goto(site.people_url() + f"?age_to={bound - 1}&size=1")
    younger = []
    while True:
        younger += [card.get_attribute("data-id") for card in page.locator(".person").all()]
        if page.locator("#next").count() == 0:
            break
        with page.expect_navigation():
            page.click("#next")
    assert sorted(younger) == sorted(set(people) - older)
    # an age no one has shows no one, and says so
    page.goto(site.people_url() + "?age_from=140")
    assert page.locator(".person").count() == 0 and page.locator("#no-match").count() == 1


def test_rename_is_seen_through_the_sdk(page, site, artifacts):
    person = site.people()[0]
    page.goto(f"{site.people_url()}/{person.object_id}")
    assert page.locator(".face").count() == person.face_count
    page.fill("input[name=name]", "Ada Lovelace")
    page.click("#rename")
    page.wait_for_selector("#person-name:text-is('Ada Lovelace')")
    got = site.live.client().get_figure_cluster(
        imm.GetFigureClusterRequest(
            project_name=site.project, dataset_name=site.dataset, object_id=person.object_id
        )
    )
    assert got.body.figure_cluster.name == "Ada Lovelace"
    chosen = page.locator(".face").nth(2).get_attribute("data-figure")
    with page.expect_navigation():
        page.locator(".face").nth(2).locator("button.make-cover").click()
    page.wait_for_selector(f"img.cover[src*='{chosen}']")
    got = site.live.client().get_figure_cluster(
        imm.GetFigureClusterRequest(
            project_name=site.project, dataset_name=site.dataset, object_id=person.object_id
        )
    )
    assert got.body.figure_cluster.cover.figures[0].figure_id == chosen
    with page.expect_navigation():
        page.click("#review")  # least sure first
    confidences = [float(text.split()[-1]) for text in page.locator(".face small").all_inner_texts()]
    assert confidences == sorted(confidences)
    page.screenshot(path=str(artifacts / f"person-{site.live.backend}.png"), full_page=True)


def test_merge_two_people_then_undo(page, site):
    target, source = sorted(site.people(), key=lambda p: p.object_id)[1:3]
    client = site.live.client()
    name = unique("Merged")
    client.update_figure_cluster(
        imm.UpdateFigureClusterRequest(
            project_name=site.project,
            dataset_name=site.dataset,
            figure_cluster=imm.FigureClusterForReq(object_id=source.object_id, name=name),
        )
    )
    page.goto(f"{site.people_url()}/{target.object_id}")
    page.fill("input[name=q]", name[:10].lower())
    page.click("#search")
    with page.expect_navigation():
        page.click(f"form:has(input[value='{source.object_id}']) button.merge")
    site.wait_idle()
    after = {p.object_id: p for p in site.people()}
    assert source.object_id not in after
    assert after[target.object_id].face_count == target.face_count + source.face_count

    page.goto(site.people_url())
    with page.expect_navigation():
        page.click("#undo")
    site.wait_idle()
    people = {p.object_id: p for p in site.people()}
    assert people[target.object_id].face_count == target.face_count  # the merged faces left again
    photos = [file.uri for file in photos_of(client, site.project, site.dataset, target.object_id)]
    assert len(photos) == target.image_count


def test_a_face_taken_out_stays_out_after_the_next_clustering_task(page, site):
    person = sorted(site.people(), key=lambda p: p.object_id)[3]
    page.goto(f"{site.people_url()}/{person.object_id}")
    face = page.locator(".face").first
    figure_id = face.get_attribute("data-figure")
    uri = face.locator("input[name=uri]").first.input_value()
    with page.expect_navigation():
        face.locator("button.not-this-person").click()
    site.wait_idle()
    client = site.live.client()
    found = {f.figure_id: f for f in faces(client, site.project, site.dataset, [uri])[uri]}
    assert found[figure_id].figure_cluster_id != person.object_id
    cluster(client, site.project, site.dataset)  # the next task keeps it out
    found = {f.figure_id: f for f in faces(client, site.project, site.dataset, [uri])[uri]}
    assert found[figure_id].figure_cluster_id != person.object_id
    page.goto(f"{site.people_url()}/{person.object_id}")
    assert page.locator(".face").count() == person.face_count - 1
    assert page.locator(f".face[data-figure='{figure_id}']").count() == 0

    page.goto(f"{site.base}/ui/p/{site.project}/d/{site.dataset}/activity")
    assert "Indexed 5" in page.inner_text("#statuses")
    assert page.locator("#files tbody tr").count() == 5
    done = page.locator("#tasks tbody tr[data-status=Succeeded]").count()
    assert done >= 2
    # a task started elsewhere shows up and ends on the open page, without a reload
    task_id = cluster(client, site.project, site.dataset).task_id
    page.wait_for_selector(f"#tasks tbody tr[data-status=Succeeded]:has-text('{task_id}')")
    assert page.locator("#tasks tbody tr[data-status=Succeeded]").count() == done + 1


def test_a_face_moved_by_picking_a_person_by_name_then_the_move_undone(page, site, artifacts):
    other, person = sorted(site.people(), key=lambda p: p.object_id)[-2:]
    name = unique("Grace Hopper")
    site.rename(other.object_id, name)
    page.goto(f"{site.people_url()}/{person.object_id}")
    face = page.locator(".face").first
    figure_id = face.get_attribute("data-figure")
    uri = face.locator("input[name=uri]").first.input_value()
    with page.expect_navigation():
        face.locator("a.move-face").click()  # the picker: no person id to type
    assert page.locator("h1").inner_text() == "Who is this?"
    page.fill("input[name=q]", name.split()[0].lower()[:5])  # part of the name, any case
    choice = page.locator(f"#matches .match button[data-id='{other.object_id}']")
    choice.wait_for()  # found as one types
    with page.expect_navigation():
        page.click("#find")  # and by the form, as without JavaScript
    assert choice.inner_text().startswith(name)
    assert page.locator(f"#matches button[data-id='{person.object_id}']").count() == 0  # not its own person
    page.screenshot(path=str(artifacts / f"move-picker-search-{site.live.backend}.png"), full_page=True)
    with page.expect_navigation():
        choice.click()
    site.wait_idle()
    assert site.cluster_of(uri, figure_id) == other.object_id
    assert page.locator("#undo").inner_text() == f"Undo face move to {name}"
    with page.expect_navigation():
        page.click("#undo")
    site.wait_idle()
    assert site.cluster_of(uri, figure_id) == person.object_id
    assert page.locator("#undo").count() == 0  # nothing left to undo


def test_a_face_put_in_the_wrong_person_goes_back_to_the_suggested_nearest_one(page, site, artifacts):
    """A face of A moved into B (through the SDK): on B's page its picker suggests A first; one click and the
    face is A's again."""
    right, wrong = sorted(site.people(), key=lambda p: p.object_id)[:2]
    client = site.live.client()
    photo = photos_of(client, site.project, site.dataset, right.object_id)[0]
    figure_id = next(f.figure_id for f in photo.figures if f.figure_cluster_id == right.object_id)
    client.update_file_meta(
        imm.UpdateFileMetaRequest(
            project_name=site.project,
            dataset_name=site.dataset,
            file=imm.InputFile(
                uri=photo.uri,
                figures=[
                    imm.InputFileFigures(
                        figure_id=figure_id, figure_cluster_id=wrong.object_id, figure_type="face"
                    )
                ],
            ),
        )
    )
    cluster(client, site.project, site.dataset)
    assert site.cluster_of(photo.uri, figure_id) == wrong.object_id

    page.goto(f"{site.people_url()}/{wrong.object_id}")
    with page.expect_navigation():
        page.locator(f".face[data-figure='{figure_id}'] a.move-face").click()
    suggested = [b.get_attribute("data-id") for b in page.locator("#nearest .suggested button").all()]
    others = {p.object_id for p in site.people()} - {wrong.object_id}
    assert suggested[0] == right.object_id and wrong.object_id not in suggested
    assert len(suggested) == min(6, len(others)) and set(suggested) <= others
    page.wait_for_load_state("networkidle")
    assert page.eval_on_selector_all("#nearest img.cover", "imgs => imgs.every(i => i.naturalWidth > 0)")
    page.screenshot(path=str(artifacts / f"move-picker-{site.live.backend}.png"), full_page=True)
    with page.expect_navigation():
        page.locator("#nearest .suggested button").first.click()
    site.wait_idle()
    assert site.cluster_of(photo.uri, figure_id) == right.object_id
    counts = {p.object_id: p.face_count for p in site.people()}
    assert counts[right.object_id] == right.face_count and counts[wrong.object_id] == wrong.face_count


def test_a_face_starts_a_new_person_then_the_move_undone(page, site):
    person = sorted(site.people(), key=lambda p: p.object_id)[2]
    before = {p.object_id for p in site.people()}
    page.goto(f"{site.people_url()}/{person.object_id}")
    face = page.locator(".face").first
    figure_id = face.get_attribute("data-figure")
    uri = face.locator("input[name=uri]").first.input_value()
    with page.expect_navigation():
        face.locator("a.move-face").click()
    with page.expect_navigation():
        page.click("#new-person")
    site.wait_idle()
    started = site.cluster_of(uri, figure_id)
    assert started not in before and started.startswith("Cluster-")
    people = {p.object_id: p for p in site.people()}
    assert people[started].face_count == 1 and people[person.object_id].face_count == person.face_count - 1
    with page.expect_navigation():
        page.click("#undo")
    site.wait_idle()
    assert site.cluster_of(uri, figure_id) == person.object_id
    assert {p.object_id for p in site.people()} == before  # the emptied new person is gone


PHONE = {"width": 390, "height": 844}
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_every_page_fits_a_phone_without_sideways_scrolling(browser, site, artifacts):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.goto(f"{site.base}/ui/signin")
    assert fits(page), "sign-in"
    page.goto(site.link())
    person = max(site.people(), key=lambda p: (p.face_count, p.object_id))
    pages = {
        "projects": f"{site.base}/ui/projects",
        "people": site.people_url(),
        "person": f"{site.people_url()}/{person.object_id}",
        "activity": f"{site.base}/ui/p/{site.project}/d/{site.dataset}/activity",
        "explorer": f"{site.base}/ui/explorer?action=QueryFigureClusters",
    }
    for name, url in pages.items():
        page.goto(url)
        page.wait_for_load_state("networkidle")
        assert fits(page), f"{name}: {page.evaluate('document.documentElement.scrollWidth')} px wide"
        key = page.locator("#key-id")  # the key id in the top bar is shown whole
        assert key.inner_text() == site.live.admin.access_key_id
        box = key.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], name
        assert page.evaluate("e => e.scrollWidth <= e.clientWidth", key.element_handle()), name
        if name in ("people", "person"):
            page.screenshot(path=str(artifacts / f"{name}-phone-{site.live.backend}.png"), full_page=True)
        if name == "people":  # the grid reflows: two cards a row, all inside the screen
            boxes = [card.bounding_box() for card in page.locator(".person").all()]
            assert all(b["x"] >= 0 and b["x"] + b["width"] <= PHONE["width"] for b in boxes)
            assert len({round(b["y"]) for b in boxes}) == (len(boxes) + 1) // 2
        if name == "activity":
            page.screenshot(path=str(artifacts / f"activity-phone-{site.live.backend}.png"), full_page=True)
    page.goto(pages["person"])
    with page.expect_navigation():
        page.locator(".face a.move-face").first.click()
    page.wait_for_load_state("networkidle")
    assert fits(page), "move picker"
    page.screenshot(path=str(artifacts / f"move-picker-phone-{site.live.backend}.png"), full_page=True)
    page.goto(pages["explorer"])  # a long JSON response stays inside its box
    page.fill("#p-ProjectName", site.project)
    page.fill("#p-DatasetName", site.dataset)
    with page.expect_navigation():
        page.click("#run")
    assert page.inner_text("#status") == "200" and fits(page), "explorer response"
    context.close()


def expected_time(text: str, zone: ZoneInfo) -> str:
    """What the page should show for an RFC 3339 time, read in ``zone``."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(zone)
    today = datetime.now(zone).date()
    clock = when.strftime("%H:%M")
    if when.date() == today:
        return f"today {clock}"
    if when.date() == today - timedelta(days=1):
        return f"yesterday {clock}"
    year = "" if when.year == today.year else f" {when.year}"
    return f"{when.day} {when.strftime('%b')}{year} {clock}"


def test_the_activity_page_shows_local_readable_times_and_durations(browser, site):
    zone = "Asia/Shanghai"  # not the server's UTC, so the page must convert
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id=zone)
    page = context.new_page()
    page.goto(site.link())
    page.goto(f"{site.base}/ui/p/{site.project}/d/{site.dataset}/activity")
    tasks = (
        site.live.client()
        .list_tasks(
            imm.ListTasksRequest(project_name=site.project, sort="StartTime", order="desc", max_results=20)
        )
        .body.tasks
    )
    for attempt in ("rendered", "refreshed"):
        text = page.inner_text("main")
        assert not ISO_TIME.search(text), (attempt, ISO_TIME.search(text))
        first = page.locator("#tasks tbody tr").first
        assert first.locator("td").first.inner_text() == tasks[0].task_id
        started = first.locator("td[data-label=Started] time")
        assert started.inner_text() == expected_time(tasks[0].start_time, ZoneInfo(zone)), attempt
        exact = started.get_attribute("title")  # the exact value on hover: local, to the microsecond
        local = datetime.fromisoformat(tasks[0].start_time.replace("Z", "+00:00")).astimezone(ZoneInfo(zone))
        assert exact == local.strftime("%Y-%m-%d %H:%M:%S.%f UTC+08:00"), exact
        took = page.locator("#tasks tr[data-status=Succeeded] td.took").all_inner_texts()
        assert took and all(re.fullmatch(r"\d+\.\d s|\d+ s|\d+ min \d+ s|\d+ h \d+ min", t) for t in took)
        # the table refreshes itself every second: mark the rows, wait until they are replaced
        page.eval_on_selector_all("#tasks tbody tr", "rows => rows.forEach(r => r.dataset.old = '1')")
        page.wait_for_function("!document.querySelector('#tasks tbody tr[data-old]')")
    context.close()


def test_every_page_has_an_icon_and_covers_show_no_black_band(page, site):
    failed = []
    page.on("response", lambda answer: failed.append(answer.url) if answer.status >= 400 else None)
    page.goto(site.people_url())
    page.wait_for_load_state("networkidle")
    assert failed == []
    icon = page.locator("link[rel=icon]").get_attribute("href")
    for path in (icon, "/favicon.ico"):
        answer = page.request.get(site.base + path)
        assert answer.status == 200 and answer.headers["content-type"].startswith("image/svg+xml"), path
    # no cover has a black band along an edge (the photo ends there: the crop slides inside instead)
    bands = page.eval_on_selector_all(
        ".person img.cover",
        """imgs => imgs.map(img => {
            const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext('2d'); g.drawImage(img, 0, 0);
            const dark = (x, y, w, h) => {
                const d = g.getImageData(x, y, w, h).data;
                for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 60) return false;
                return true;
            };
            const n = c.width, t = 3;
            return [dark(0, 0, n, t), dark(0, n - t, n, t), dark(0, 0, t, n), dark(n - t, 0, t, n)];
        })""",
    )
    assert bands and not any(any(edges) for edges in bands), bands


def test_the_explorer_runs_an_action_and_shows_its_response_and_snippet(page, site):
    page.goto(f"{site.base}/ui/explorer")
    page.select_option("#action-list", "GetDataset")
    page.wait_for_selector("#explorer-form")
    page.fill("#p-ProjectName", site.project)
    page.fill("#p-DatasetName", site.dataset)
    page.select_option("#p-WithStatistics", "true")
    with page.expect_navigation():
        page.click("#run")
    page.wait_for_selector("#response")
    assert page.inner_text("#status") == "200"
    response = page.inner_text("#response")
    assert f'"DatasetName": "{site.dataset}"' in response and '"FileCount": 5' in response
    snippet = page.inner_text("#snippet")
    assert "client.get_dataset(request)" in snippet
    # the snippet, run as shown with the key's secret filled in, makes the same call
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(snippet.replace('"..."', repr(site.live.admin.secret)), {})
    assert f"'DatasetName': '{site.dataset}'" in printed.getvalue()

    page.fill("#p-DatasetName", "no_such_dataset")
    with page.expect_navigation():
        page.click("#run")
    page.wait_for_selector("#response")
    assert page.inner_text("#status") == "404"
    assert "ResourceNotFound" in page.inner_text("#response")


def test_a_key_limited_to_another_dataset_cannot_see_these_people(browser, site):
    client = site.live.client()
    other = unique("d")
    client.create_dataset(imm.CreateDatasetRequest(project_name=site.project, dataset_name=other))
    key = site.live.new_key(dataset_policy(site.project, other))
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{site.base}/ui/signin")
    page.fill("input[name=access_key_id]", key.access_key_id)
    page.fill("input[name=access_key_secret]", "wrong")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.locator("text=wrong secret").count() == 1
    page.fill("input[name=access_key_id]", key.access_key_id)
    page.fill("input[name=access_key_secret]", key.secret)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url.endswith("/ui/projects")
    assert page.locator(f"a.dataset:text-is('{other}')").count() == 1
    assert page.locator(f"a.dataset:text-is('{site.dataset}')").count() == 0
    answer = page.goto(site.people_url())
    assert answer.status == 403 and "Forbidden" in page.inner_text("h1")
    assert page.locator(".person").count() == 0
    cover = site.people()[0].cover
    thumb = page.request.get(
        f"{site.base}/ui/p/{site.project}/d/{site.dataset}/thumb",
        params={"uri": cover.uri, "figure": cover.figures[0].figure_id},
    )
    assert thumb.status == 403
    # a form without the session's CSRF token is refused
    forged = page.request.post(f"{site.base}/ui/p/{site.project}/d/{other}/cluster", form={"csrf": "x"})
    assert forged.status == 403
    context.close()
