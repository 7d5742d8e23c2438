"""How fast the web page's people grid answers with many people, through the real server over HTTP.

    nice python -m immray.bench.web_people [--people 10000] [--repeats 20] \
        [--database-url postgresql+psycopg://.../scratch]

A dataset of ``--people`` people (one photo and one face each, face counts 1..7, every third one named)
is written straight into a fresh SQLite file (or the given, empty, scratch database); every photo is a hard
link to the portrait sample, so covers are real crops. The whole server (``build_app``, no background
workers) listens on a free port, a session signs in with the one-time link, and the script times: the
first people page (sorted by face count, and by name), walking 40 pages deep with NextToken, one person's
page, and the first page's 48 cover thumbnails cold (cropped and written to disk), warm (read from disk)
and revalidated (304 by ETag). Figures are wall-clock milliseconds on this machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from html import unescape
from pathlib import Path

import httpx
import numpy as np

from immray.api.bootstrap import build_app
from immray.api.server import bound_socket, build_server
from immray.policy import ADMIN_POLICY
from immray.samples import sample_path
from immray.services import access_keys
from immray.services.database import Database
from immray.settings import Settings
from immray.store import Dataset, Figure, FigureCluster, File, Project
from immray.store.models import ClusterState
from immray.web import sign_in_link

NEXT = re.compile(r'id="next" href="([^"]+)"')
COVER = re.compile(r'<img class="cover" loading="lazy" alt="" src="([^"]+)"')


def seed(db: Database, photos: Path, people: int) -> tuple[str, str]:
    source = photos / "portrait.jpg"
    shutil.copy(sample_path("portrait"), source)
    zero = np.zeros(128, dtype=np.float32)
    with db.write() as session:
        dataset = Dataset(project=Project(name="bench"), name="people", workflow_parameters=[])
        session.add(dataset)
        session.flush()
        for start in range(0, people, 1000):
            for i in range(start, min(start + 1000, people)):
                path = photos / f"p{i:06d}.jpg"
                os.link(source, path)
                file = File(
                    dataset_id=dataset.id,
                    uri=path.as_uri(),
                    object_status="Indexed",
                    image_width=112,
                    image_height=112,
                )
                cluster = FigureCluster(
                    dataset_id=dataset.id,
                    name=f"Person {i}" if i % 3 == 0 else "",
                    face_count=1 + i % 7,
                    image_count=1 + i % 7,
                )
                figure = Figure(
                    dataset_id=dataset.id,
                    file=file,
                    left=24,
                    top=20,
                    width=64,
                    height=72,
                    cluster=cluster,
                    cluster_state=ClusterState.CLUSTERED.value,
                    cluster_confidence=0.9,
                )
                figure.set_vector(zero, model="bench")
                session.add_all([file, cluster, figure])
            session.flush()
        for cluster in session.query(FigureCluster).filter_by(dataset_id=dataset.id):
            cluster.cover_figure_id = cluster.figures[0].id
    return "bench", "people"


def timed(client: httpx.Client, url: str, **options) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    answer = client.get(url, **options)
    elapsed = (time.perf_counter() - started) * 1000
    assert answer.status_code in (200, 304), (url, answer.status_code, answer.text[:300])
    return elapsed, answer


def summary(samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return f"median {statistics.median(samples):.1f} ms, p95 {p95:.1f} ms (n={len(samples)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--database-url", help="an EMPTY scratch database (default: a fresh SQLite file)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="immray-web-bench-"))
    try:
        photos = work / "photos"
        photos.mkdir()
        url = args.database_url or f"sqlite:///{work / 'immray.db'}"
        db = Database.connect(url, migrate=True)
        started = time.perf_counter()
        project, dataset = seed(db, photos, args.people)
        print(
            f"seeded {args.people} people in {time.perf_counter() - started:.1f}s ({db.engine.dialect.name})"
        )
        admin = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
        settings = Settings(data_dir=work, database_url=url, allowed_roots=[photos])
        app = build_app(settings, db=db, services=lambda context: [])
        sock = bound_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        server = build_server(app, "127.0.0.1", port, log_level="warning")
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=120) as client:
            client.get(sign_in_link(app, base, admin.info.access_key_id))
            people = f"/ui/p/{project}/d/{dataset}/people"

            first = [timed(client, people)[0] for _ in range(args.repeats)]
            _, page = timed(client, people)
            assert f"{args.people} people" in page.text
            print(
                f"people page 1 (48 people, FaceCount desc, with TotalCount): {summary(first)}, {len(page.content)} bytes"
            )
            by_name = [timed(client, people + "?sort=Name&order=asc")[0] for _ in range(args.repeats)]
            print(f"people page 1 sorted by Name: {summary(by_name)}")

            deep, url_next = [], people
            for _ in range(40):
                elapsed, answer = timed(client, url_next)
                deep.append(elapsed)
                found = NEXT.search(answer.text)
                if not found:
                    break
                url_next = unescape(found.group(1))
            print(f"walking {len(deep)} pages deep with NextToken: {summary(deep)}")

            person = re.search(r'class="card person" href="([^"]+)"', page.text).group(1)
            print(f"one person's page: {summary([timed(client, person)[0] for _ in range(args.repeats)])}")

            covers = [unescape(src) for src in COVER.findall(page.text)]
            cold = [timed(client, src)[0] for src in covers]
            warm = [timed(client, src)[0] for src in covers]
            etags = [client.get(src).headers["etag"] for src in covers]
            revalidated = [
                timed(client, src, headers={"If-None-Match": etag})[0]
                for src, etag in zip(covers, etags, strict=True)
            ]
            print(
                f"{len(covers)} cover thumbnails, cold (crop + write): {summary(cold)}, total {sum(cold):.0f} ms"
            )
            print(f"  warm (from disk): {summary(warm)}; revalidated (304): {summary(revalidated)}")
        server.should_exit = True
        thread.join(timeout=10)
        db.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
