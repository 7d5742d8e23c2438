"""What a binding's sync pass costs without the face analysis: listing a folder of N photos, recording them
as Pending (the full scan's first pass), and the pass over the unchanged tree that every scan interval
makes afterwards (one listing, nothing submitted), then a pass after a few changes.

Prints figures, asserts nothing. Run:
``python -m immray.bench.bindings_scan [--photos 5000] [--database-url postgresql://...]``
(default: a SQLite file in a temporary directory). The photos are tiny placeholder files: no job backend
runs, so nothing is analysed and the pass's own cost is what is measured.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from immray.bindings import leases, service, sync
from immray.jobs.catalog import load_jobs
from immray.services.database import Database
from immray.settings import Settings
from immray.sources import sources_for
from immray.store import Dataset, File, Project, upgrade


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=5000)
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    args = parser.parse_args()
    load_jobs()  # the index-file job is known; no backend runs it
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        for i in range(args.photos):
            folder = root / f"{i // 500:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"p{i:06d}.jpg").write_bytes(b"\xff\xd8placeholder")
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        settings = Settings(data_dir=Path(tmp), database_url=url, allowed_roots=[root])
        db = Database.connect(url)
        sources = sources_for(settings)
        with db.write() as session:
            session.add(Dataset(project=Project(name="bench"), name="photos", dataset_max_file_count=None))
        service.create_binding(db, sources, "bench", "photos", root.as_uri())
        (binding_id,) = leases.claim_free(db, owner="bench", lease_seconds=600)

        def timed(label: str) -> None:
            started = time.perf_counter()
            result = sync.scan(db, sources, settings, binding_id, owner="bench")
            seconds = time.perf_counter() - started
            print(
                f"{label:<28} {seconds:8.2f} s  listed {result.listed}, submitted {result.submitted}, "
                f"deleted {result.deleted}  ({result.listed / seconds:,.0f} photos/s listed)"
            )

        print(f"{args.photos} photos, {db.engine.dialect.name}")
        timed("full scan (first pass)")
        with db.read() as session:
            pending = session.scalar(select(func.count(File.id)))
        print(f"{'':<28} {pending} files recorded Pending")
        timed("unchanged tree")
        for path in sorted(root.rglob("*.jpg"))[:10]:
            path.unlink()
        for i in range(10):
            (root / f"new{i}.jpg").write_bytes(b"\xff\xd8new")
        timed("10 added, 10 deleted")
        db.close()


if __name__ == "__main__":
    main()
