"""The web page in a real browser against a live server with real photos (the group sample's copies: six
people, four faces each): sign in with the link, the people grid with covers, rename (seen by the SDK),
merge and undo, a face taken out (kept out by the next clustering task), the API explorer, a key limited to
another dataset. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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


def test_a_face_moved_to_another_person_then_the_move_undone(page, site):
    other, person = sorted(site.people(), key=lambda p: p.object_id)[-2:]
    page.goto(f"{site.people_url()}/{person.object_id}")
    face = page.locator(".face").first
    figure_id = face.get_attribute("data-figure")
    uri = face.locator("input[name=uri]").first.input_value()
    face.locator("input[name=target]").fill(other.object_id)
    with page.expect_navigation():
        face.locator("button.move").click()
    site.wait_idle()
    client = site.live.client()
    assert {f.figure_id: f for f in faces(client, site.project, site.dataset, [uri])[uri]}[
        figure_id
    ].figure_cluster_id == other.object_id
    with page.expect_navigation():
        page.click("#undo")
    site.wait_idle()
    assert {f.figure_id: f for f in faces(client, site.project, site.dataset, [uri])[uri]}[
        figure_id
    ].figure_cluster_id == person.object_id
    assert page.locator("#undo").count() == 0  # nothing left to undo


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
